"""The socket of a WebRTC leg: one UDP port carrying ICE, DTLS and SRTP with
RTCP muxed (RFC 7983 demultiplexing), which hands the engine plain RTP and
RTCP and takes plain RTP and RTCP back to encrypt.

The engine's relay never sees the difference: a WebRTC leg's streams send
through an `SrtpSender` instead of a UDP transport, and receive what this
transport decrypted, from the address ICE chose. So relaying, taps
(recorder, DTMF), players and the media timeout treat it like any leg, and
G.711 passes between a browser and a phone decrypted and re-encrypted,
never decoded. A browser that speaks only Opus gets a transcoder
(`media/transcode.py`) at this boundary: what it sends is decoded into the
leg's own G.711 stream, and G.711 towards it is encoded into Opus, so the
engine still sees G.711."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ..logs import log_event
from .dtls_srtp import Certificate, DtlsError, DtlsSrtp, Fingerprint, Role, SrtpError, State
from .ice_lite import Address, IceCredentials, IceLite
from .transcode import OpusTranscoder

logger = logging.getLogger("callbridge.media")


@dataclass(frozen=True, slots=True)
class WebRtcLocal:
    """What our SDP says of a WebRTC leg: ICE credentials and our certificate's fingerprint."""

    ice: IceCredentials
    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class WebRtcRemote:
    """What the peer's SDP said: its ICE username fragment and password, its
    certificate's fingerprints, and the DTLS role that leaves us (`server`
    when it is active, `client` when it is passive)."""

    ufrag: str
    pwd: str
    fingerprints: tuple[Fingerprint, ...]
    role: Role


class PacketSink(Protocol):
    def datagram_received(self, data: bytes, addr: Any) -> None: ...


class SrtpSender:
    """What a WebRTC leg's RTP or RTCP stream sends through, in place of a UDP
    transport: `sendto` encrypts and sends to where ICE chose."""

    __slots__ = ("_on_close", "_owner", "_rtcp")

    def __init__(self, owner: WebRtcTransport, rtcp: bool, on_close: Callable[[], None]) -> None:
        self._owner: WebRtcTransport | None = owner
        self._rtcp = rtcp
        self._on_close: Callable[[], None] | None = on_close

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._owner is not None:
            self._owner.send_media(data, self._rtcp)

    def close(self) -> None:
        self._owner = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


class WebRtcTransport(asyncio.DatagramProtocol):
    """One WebRTC leg's UDP socket: ICE-lite answers, the DTLS handshake, SRTP.

    `on_ready(address)` runs when media can flow to `address` (DTLS done and
    the peer's certificate matched, or ICE moved a ready leg); it returns
    False when the media policy refuses that address. `on_failed(reason)`
    runs once when the DTLS handshake fails: the leg can never carry media."""

    def __init__(
        self,
        certificate: Certificate,
        context: Any,
        *,
        rtp: PacketSink,
        rtcp: PacketSink,
        on_ready: Callable[[Address], bool],
        on_failed: Callable[[str], None],
        name: str = "",
    ) -> None:
        self.local = WebRtcLocal(IceCredentials.generate(), certificate.fingerprint)
        self.ice = IceLite(self.local.ice)
        self.dtls: DtlsSrtp | None = None
        self.remote: WebRtcRemote | None = None
        self.name = name
        self._context = context
        self._rtp: PacketSink | None = rtp
        self._rtcp: PacketSink | None = rtcp
        self._on_ready: Callable[[Address], bool] | None = on_ready
        self._on_failed: Callable[[str], None] | None = on_failed
        self.transport: asyncio.DatagramTransport | None = None
        self.destination: Address | None = None  # ICE's choice, once media may flow
        self.failure: str | None = None
        # Set only for a browser without G.711: Opus on the wire, G.711 inside.
        self.transcoder: OpusTranscoder | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Counters: what failed SRTP authentication or replayed, and what came
        # from anywhere but ICE's choice.
        self.srtp_failures = 0
        self.foreign = 0

    # --- the peer's SDP ----------------------------------------------------------

    def set_remote(self, remote: WebRtcRemote) -> None:
        """The peer's ICE and DTLS parameters (its offer or its answer)."""
        known = self.remote.fingerprints if self.remote is not None else remote.fingerprints
        connected = self.dtls is not None and self.dtls.state is State.CONNECTED
        if connected and remote.fingerprints != known:
            # A new certificate means a new DTLS association (RFC 5763 §6.7.1):
            # not supported mid-call; the one verified stays.
            log_event(logger, logging.INFO, "media.webrtc_fingerprint_ignored", leg=self.name)
            return
        if self.remote is not None and remote.ufrag != self.remote.ufrag:
            # An ICE restart (RFC 8445 §9): our answer must bring new
            # credentials too. Media keeps flowing to the old address until a
            # check with the new password chooses one.
            self.local = WebRtcLocal(IceCredentials.generate(), self.local.fingerprint)
            self.ice = IceLite(self.local.ice)
            log_event(logger, logging.DEBUG, "media.webrtc_ice_restart", leg=self.name)
        self.remote = remote
        self.ice.set_remote(remote.ufrag)
        if self.dtls is None:
            self._start_dtls(remote.role)
        else:
            self._guard(lambda dtls: dtls.expect(remote.fingerprints))

    # --- asyncio -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        first = data[0]
        try:
            if first < 4:
                self._stun(data, addr)
            elif 20 <= first < 64:
                self._dtls_record(data, addr)
            elif 128 <= first < 192:
                self._srtp(data, addr)
            else:
                self.foreign += 1
        except Exception:
            self.foreign += 1
            logger.exception("media.webrtc_receive_failed leg=%s", self.name)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from an earlier send: the media timeout decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._lost.done():
            self._lost.set_result(None)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.dtls is not None:
            self.dtls.close()
        self._rtp = self._rtcp = None
        self._on_ready = self._on_failed = None
        if self.transport is not None:
            self.transport.close()
            await self._lost

    # --- receiving -----------------------------------------------------------------------

    def _stun(self, data: bytes, addr: Any) -> None:
        address = (addr[0], addr[1])
        result = self.ice.receive(data, address)
        if result.reply is not None and self.transport is not None:
            self.transport.sendto(result.reply, addr)
        dtls = self.dtls
        if not result.selected or dtls is None:
            return
        if dtls.state is State.CONNECTED:
            self._ready(address)  # ICE moved: the media follows
        elif dtls.role == "client" and not dtls.started:
            self._guard(lambda dtls: dtls.start())  # we may speak DTLS once ICE has a path

    def _dtls_record(self, data: bytes, addr: Any) -> None:
        if self.ice.selected is None or (addr[0], addr[1]) != self.ice.selected:
            self.foreign += 1  # DTLS only with the address that passed ICE
            return
        if self.dtls is None:
            # The peer's answer (with its fingerprint) has not reached us but
            # its ClientHello has: we offered actpass and it took active.
            self._start_dtls("server")
        self._guard(lambda dtls: dtls.receive(data))

    def _srtp(self, data: bytes, addr: Any) -> None:
        if addr != self.destination:
            self.foreign += 1
            return
        dtls = self.dtls
        assert dtls is not None
        rtcp = len(data) > 1 and 192 <= data[1] <= 223  # RFC 5761 §4
        try:
            plain = dtls.unprotect_rtcp(data) if rtcp else dtls.unprotect(data)
        except SrtpError:
            self.srtp_failures += 1
            return
        sink = self._rtcp if rtcp else self._rtp
        if sink is None:
            return
        transcoder = self.transcoder
        if transcoder is None or rtcp:
            sink.datagram_received(plain, addr)
            return
        for packet in transcoder.from_browser(plain):
            sink.datagram_received(packet, addr)

    # --- sending ---------------------------------------------------------------------------

    def send_media(self, data: bytes, rtcp: bool) -> None:
        destination, dtls = self.destination, self.dtls
        if destination is None or dtls is None or self.transport is None:
            return
        transcoder = self.transcoder
        if transcoder is not None:
            # The phone's reports are about streams the browser never saw
            # (the transcoder's own): they end here.
            for packet in () if rtcp else transcoder.to_browser(data):
                self._protect_and_send(packet, False, destination, dtls)
            return
        self._protect_and_send(data, rtcp, destination, dtls)

    def _protect_and_send(
        self, data: bytes, rtcp: bool, destination: Address, dtls: DtlsSrtp
    ) -> None:
        assert self.transport is not None
        try:
            packet = dtls.protect_rtcp(data) if rtcp else dtls.protect(data)
        except SrtpError:
            self.srtp_failures += 1
            return
        self.transport.sendto(packet, destination)

    # --- DTLS --------------------------------------------------------------------------------

    def _start_dtls(self, role: Role) -> None:
        fingerprints = self.remote.fingerprints if self.remote is not None else ()
        self.dtls = DtlsSrtp(self._context, role, fingerprints)
        if role == "client" and self.ice.selected is not None:
            self._guard(lambda dtls: dtls.start())

    def _guard(self, step: Callable[[DtlsSrtp], list[bytes]] | Callable[[DtlsSrtp], None]) -> None:
        """Run one DTLS step: send what it produced, notice the handshake's
        end, fail the leg on a DtlsError, and re-arm OpenSSL's timer."""
        dtls = self.dtls
        if dtls is None or self.failure is not None:
            return
        was = dtls.state
        try:
            out = step(dtls) or []
        except DtlsError as error:
            self._fail(error.reason)
            return
        selected = self.ice.selected
        if self.transport is not None and selected is not None:
            for datagram in out:
                self.transport.sendto(datagram, selected)
        if was is not State.CONNECTED and dtls.state is State.CONNECTED and selected is not None:
            log_event(logger, logging.DEBUG, "media.webrtc_connected", leg=self.name)
            self._ready(selected)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dtls = self.dtls
        timeout = None if dtls is None else dtls.timeout()
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(timeout, 0.01), self._retransmit)

    def _retransmit(self) -> None:
        self._timer = None
        self._guard(lambda dtls: dtls.handle_timeout())

    def _ready(self, address: Address) -> None:
        on_ready = self._on_ready
        if on_ready is not None and on_ready(address):
            self.destination = address

    def _fail(self, reason: str) -> None:
        if self.failure is not None:
            return
        self.failure = reason
        self.destination = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log_event(logger, logging.INFO, "media.webrtc_failed", leg=self.name, reason=reason)
        on_failed, self._on_failed = self._on_failed, None
        if on_failed is not None:
            on_failed(reason)
