"""DTLS-SRTP without sockets (media/dtls_srtp.py): two `DtlsSrtp` ends
handshake by passing each other's datagrams, key SRTP, and refuse a peer
whose certificate is not the fingerprint its SDP named, even when the SDP
comes after the handshake."""

from __future__ import annotations

import pytest

from callbridge.media.dtls_srtp import (
    Certificate,
    DtlsError,
    DtlsSrtp,
    Fingerprint,
    SrtpError,
    State,
    fingerprint_of,
)
from callbridge.media.rtp import RtpPacket
from callbridge.media.webrtc import WebRtcRemote, WebRtcTransport


@pytest.fixture(scope="module")
def certificates() -> tuple[Certificate, Certificate]:
    return Certificate.generate(), Certificate.generate()


def handshake(client: DtlsSrtp, server: DtlsSrtp) -> None:
    """Pass datagrams both ways until neither side has anything to send."""
    to_server = client.start()
    for _ in range(10):
        to_client = [out for datagram in to_server for out in server.receive(datagram)]
        to_server = [out for datagram in to_client for out in client.receive(datagram)]
        if not to_server and not to_client:
            return


def test_a_handshake_keys_srtp_both_ways(certificates: tuple[Certificate, Certificate]) -> None:
    ours, theirs = certificates
    server = DtlsSrtp(ours.context(), "server", (theirs.fingerprint,))
    client = DtlsSrtp(theirs.context(), "client", (ours.fingerprint,))
    handshake(client, server)
    assert server.state is State.CONNECTED and client.state is State.CONNECTED
    assert server.profile == client.profile == b"SRTP_AEAD_AES_128_GCM"
    packet = RtpPacket(0, 1, 160, 1234, payload=b"\xff" * 160).to_bytes()
    secret = server.protect(packet)
    assert secret != packet and client.unprotect(secret) == packet
    assert server.unprotect(client.protect(packet)) == packet
    with pytest.raises(SrtpError):  # a forged packet fails authentication
        client.unprotect(secret[:-1] + bytes([secret[-1] ^ 1]))


def test_a_certificate_not_in_the_sdp_fails_the_handshake(
    certificates: tuple[Certificate, Certificate],
) -> None:
    ours, theirs = certificates
    other = fingerprint_of(Certificate.generate().certificate)
    server = DtlsSrtp(ours.context(), "server", (other,))
    client = DtlsSrtp(theirs.context(), "client", (ours.fingerprint,))
    with pytest.raises(DtlsError) as failed:
        handshake(client, server)
    assert "fingerprint" in failed.value.reason and server.state is State.FAILED
    with pytest.raises(AssertionError):
        server.protect(b"\x80" + bytes(11))  # no key was ever made


def test_the_fingerprint_may_come_after_the_handshake(
    certificates: tuple[Certificate, Certificate],
) -> None:
    """The browser's ClientHello can beat its 200 OK: the handshake runs,
    and the leg connects only when the SDP's fingerprint matches."""
    ours, theirs = certificates
    server = DtlsSrtp(ours.context(), "server")
    client = DtlsSrtp(theirs.context(), "client", (ours.fingerprint,))
    handshake(client, server)
    assert server.state is State.HANDSHAKE  # done, but not verified: no SRTP yet
    server.expect((Fingerprint("sha-1", "00:11"), theirs.fingerprint))
    assert server.state is State.CONNECTED


def test_a_late_fingerprint_that_does_not_match_fails(
    certificates: tuple[Certificate, Certificate],
) -> None:
    ours, theirs = certificates
    server = DtlsSrtp(ours.context(), "server")
    client = DtlsSrtp(theirs.context(), "client", (ours.fingerprint,))
    handshake(client, server)
    with pytest.raises(DtlsError):
        server.expect((ours.fingerprint,))
    assert server.state is State.FAILED


@pytest.mark.parametrize("garbage", [b"\x16\xfe\xfd" + bytes(10), b"\x17" * 40, bytes(1)])
def test_garbage_records_fail_or_are_ignored_but_never_raise_anything_else(
    certificates: tuple[Certificate, Certificate], garbage: bytes
) -> None:
    server = DtlsSrtp(certificates[0].context(), "server", (certificates[1].fingerprint,))
    try:
        assert isinstance(server.receive(garbage), list)
    except DtlsError:
        assert server.state is State.FAILED


async def test_an_ice_restart_gives_the_leg_new_credentials_and_keeps_the_certificate(
    certificates: tuple[Certificate, Certificate],
) -> None:
    ours, theirs = certificates
    sink = _Sink()
    transport = WebRtcTransport(
        ours, ours.context(), rtp=sink, rtcp=sink, on_ready=lambda _: True, on_failed=lambda _: None
    )
    first = transport.local
    remote = WebRtcRemote("Brws", "p" * 22, (theirs.fingerprint,), "server")
    transport.set_remote(remote)
    transport.set_remote(remote)  # a re-offer that restarts nothing
    assert transport.local == first
    transport.set_remote(WebRtcRemote("Rstr", "q" * 22, (theirs.fingerprint,), "server"))
    assert transport.local.ice != first.ice and transport.local.fingerprint == first.fingerprint
    assert transport.ice.local == transport.local.ice and transport.ice.remote_ufrag == "Rstr"
    await transport.close()


class _Sink:
    def datagram_received(self, data: bytes, addr: object) -> None:
        pass
