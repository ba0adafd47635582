"""A WebRTC leg against a real peer: aiortc's RTCPeerConnection as the
browser (no ICE servers, loopback candidates only) sends a 1 kHz tone
through callbridge's ICE-lite + DTLS-SRTP leg, the relay and a plain RTP leg
to a phone (a UDP socket sending 440 Hz PCMU), and hears the phone's tone
back; numpy's FFT checks both. A peer whose certificate is not the one its
SDP names gets no media, and the call hears its leg failed."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import numpy as np
import pytest

from callbridge.media import LocalMediaEngine, RtpPacket, RtpPortAllocator, g711
from callbridge.media.dtls_srtp import Fingerprint
from callbridge.media.engine import LocalLeg, LocalMediaSession
from callbridge.pbx.anchor import audio_of
from callbridge.pbx.webrtc_sdp import (
    answer_setup,
    offered_mid,
    plain_of,
    webrtc_of,
    webrtc_remote_of,
)
from callbridge.sip.sdp import parse_sdp
from tests.unit.test_media_ports import free_port_range
from tests.webrtc_peer import Browser, tone_level

pytestmark = pytest.mark.integration

BROWSER_TONE = 1000.0
PHONE_TONE = 440.0
TALK = 3.0


class Phone(asyncio.DatagramProtocol):
    """A plain RTP phone: sends a PCMU sine every 20 ms, decodes what comes."""

    def __init__(self, frequency: float) -> None:
        self.frequency = frequency
        self.heard: list[np.ndarray] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.destination: tuple[str, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        packet = RtpPacket.parse(data)
        if packet.payload_type == 0:
            self.heard.append(g711.pcmu_decode(packet.payload))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def start(self, destination: tuple[str, int]) -> None:
        self.destination = destination
        self._task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        ssrc, start = secrets.randbits(32), time.monotonic()
        for n in range(100_000):
            t = (n * 160 + np.arange(160)) / 8000
            samples = (0.5 * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
            packet = RtpPacket(0, n & 0xFFFF, n * 160, ssrc, payload=g711.pcmu_encode(samples))
            assert self.transport is not None and self.destination is not None
            self.transport.sendto(packet.to_bytes(), self.destination)
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.monotonic()))

    def samples(self, last: float) -> np.ndarray:
        heard = np.concatenate(self.heard) if self.heard else np.zeros(0)
        return heard[-int(last * 8000) :]

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


@pytest.fixture
async def engine() -> AsyncIterator[LocalMediaEngine]:
    ports = RtpPortAllocator(free_port_range(4), host="127.0.0.1")
    engine = LocalMediaEngine(ports)
    yield engine
    await engine.close()


@pytest.fixture
async def phone() -> AsyncIterator[Phone]:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Phone(PHONE_TONE), local_addr=("127.0.0.1", 0)
    )
    yield protocol
    protocol.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    peer = Browser(BROWSER_TONE)
    yield peer
    await peer.close()


def phone_answer(offer: bytes, port: int) -> bytes:
    """The phone's answer to the plain offer callbridge made: PCMU and the events."""
    sdp = parse_sdp(offer)
    events = [pt for pt, m in sdp.media[0].rtpmaps.items() if m.encoding == "telephone-event"]
    formats = " ".join(["0", *events[:1]])
    lines = [
        "v=0",
        "o=phone 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        *[f"a=rtpmap:{pt} telephone-event/8000" for pt in events[:1]],
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def phone_offer(port: int) -> bytes:
    lines = [
        "v=0",
        "o=phone 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def candidate_hosts(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def browser_calls(
    session: LocalMediaSession,
    web: LocalLeg,
    plain: LocalLeg,
    browser: Browser,
    phone: Phone,
    *,
    passive: bool = False,
) -> str:
    """The browser offers; callbridge offers the phone plain RTP, and answers
    the browser from the phone's answer. Returns the browser's offer. With
    `passive`, we read its offer as a=setup:passive, so we are the DTLS
    client (aiortc follows our answer's a=setup:active)."""
    offer_text = await browser.offer()
    if passive:
        offer_text = offer_text.replace("a=setup:actpass", "a=setup:passive")
    offer = parse_sdp(offer_text)
    audio = audio_of(offer)
    remote = webrtc_remote_of(offer, audio.index)
    session.set_webrtc_remote(web, remote)
    session.set_remote(web, "127.0.0.1", 9, audio.payload_types)
    plain_offer = plain_of(offer, audio, "127.0.0.1", plain.local_address[1])
    answer = parse_sdp(phone_answer(plain_offer, phone.port))
    answer_audio = audio_of(answer)
    session.set_remote(plain, "127.0.0.1", phone.port, answer_audio.payload_types)
    session.sdp_sent(plain)
    session.connect(web, plain)
    mid, bundle = offered_mid(offer, audio.index)
    assert web.webrtc is not None
    ours = webrtc_of(
        answer,
        answer_audio,
        web.webrtc,
        "127.0.0.1",
        web.local_address[1],
        setup=answer_setup(remote),
        mid=mid,
        bundle=bundle,
    )
    await browser.accept(ours.decode())
    return offer_text


async def browser_called(
    session: LocalMediaSession, web: LocalLeg, plain: LocalLeg, browser: Browser, phone: Phone
) -> str:
    """The phone offers; callbridge offers the browser WebRTC (actpass) and
    takes its answer. Returns the browser's answer."""
    offer = parse_sdp(phone_offer(phone.port))
    audio = audio_of(offer)
    session.set_remote(plain, "127.0.0.1", phone.port, audio.payload_types)
    assert web.webrtc is not None
    ours = webrtc_of(offer, audio, web.webrtc, "127.0.0.1", web.local_address[1], setup="actpass")
    answer_text = await browser.answer(ours.decode())
    answer = parse_sdp(answer_text)
    answer_audio = audio_of(answer)
    session.set_webrtc_remote(web, webrtc_remote_of(answer, answer_audio.index))
    session.set_remote(web, "127.0.0.1", 9, answer_audio.payload_types)
    session.sdp_sent(plain)
    session.connect(web, plain)
    return answer_text


async def talk(browser: Browser, phone: Phone, plain: LocalLeg) -> None:
    phone.start(("127.0.0.1", plain.local_address[1]))
    deadline = time.monotonic() + 10
    while browser.state != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert browser.state == "connected"
    await asyncio.sleep(TALK)


async def browser_calls_passive(*args: Any) -> str:
    return await browser_calls(*args, passive=True)


@pytest.mark.parametrize(
    ("setup", "role"),
    [(browser_calls, "server"), (browser_calls_passive, "client"), (browser_called, "server")],
    ids=["browser-offers", "browser-offers-passive", "browser-answers"],
)
async def test_tones_cross_a_webrtc_leg_both_ways(
    engine: LocalMediaEngine, browser: Browser, phone: Phone, setup: Any, role: str
) -> None:
    session = engine.create_session("call-1")
    web = await session.add_leg("browser", webrtc=True)
    plain = await session.add_leg("phone")

    browser_sdp = await setup(session, web, plain, browser, phone)
    # ICE gathers nothing off this machine, and we offer our own address only.
    assert candidate_hosts(browser_sdp) == {"127.0.0.1"}
    await talk(browser, phone, plain)

    rms, peak, purity = tone_level(phone.samples(last=1.5), BROWSER_TONE)
    assert abs(peak - BROWSER_TONE) < 5 and purity > 0.9 and rms > 5000, (rms, peak, purity)
    rms, peak, purity = tone_level(browser.samples(last=1.5), PHONE_TONE)
    assert abs(peak - PHONE_TONE) < 5 and purity > 0.9 and rms > 5000, (rms, peak, purity)
    # G.711 passed through: what the phone got was the browser's PCMU, relayed.
    stats = web.stats()
    assert stats.rtp.packets_in > TALK * 40 and stats.rtp.dropped == 0
    assert plain.stats().rtp.packets_out >= stats.rtp.packets_in - 1
    assert web.carrier is not None and web.carrier.srtp_failures == 0
    assert web.carrier.dtls is not None and web.carrier.dtls.profile is not None
    assert web.carrier.dtls.role == role
    await session.close()


async def test_a_certificate_not_in_the_sdp_ends_the_leg(
    engine: LocalMediaEngine, browser: Browser, phone: Phone
) -> None:
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    session = engine.create_session(
        "call-2", on_timeout=lambda _: failed.done() or failed.set_result(None)
    )
    web = await session.add_leg("browser", webrtc=True)
    plain = await session.add_leg("phone")
    offer_text = await browser.offer()
    offer = parse_sdp(offer_text)
    audio = audio_of(offer)
    remote = webrtc_remote_of(offer, audio.index)
    # The offer as a man in the middle would rewrite it: another certificate's hash.
    other = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    session.set_webrtc_remote(web, replace(remote, fingerprints=(Fingerprint("sha-256", other),)))
    plain_offer = plain_of(offer, audio, "127.0.0.1", plain.local_address[1])
    answer = parse_sdp(phone_answer(plain_offer, phone.port))
    session.set_remote(plain, "127.0.0.1", phone.port, audio_of(answer).payload_types)
    session.connect(web, plain)
    mid, bundle = offered_mid(offer, audio.index)
    assert web.webrtc is not None
    ours = webrtc_of(
        answer,
        audio_of(answer),
        web.webrtc,
        "127.0.0.1",
        web.local_address[1],
        setup=answer_setup(remote),
        mid=mid,
        bundle=bundle,
    )
    await browser.accept(ours.decode())
    phone.start(("127.0.0.1", plain.local_address[1]))
    await asyncio.wait_for(failed, 10)
    assert web.carrier is not None and web.carrier.failure is not None
    assert "fingerprint" in web.carrier.failure
    await asyncio.sleep(0.5)
    assert phone.heard == [] and web.stats().rtp.packets_in == 0
    await session.close()


async def test_media_from_an_address_ice_did_not_choose_is_dropped(
    engine: LocalMediaEngine, browser: Browser, phone: Phone
) -> None:
    """Once a browser is connected, SRTP, DTLS or STUN from any other socket
    (a stranger spraying the port) reaches neither the relay nor the phone."""
    session = engine.create_session("call-3")
    web = await session.add_leg("browser", webrtc=True)
    plain = await session.add_leg("phone")
    await browser_calls(session, web, plain, browser, phone)
    await talk(browser, phone, plain)
    before = web.stats().rtp.packets_in
    assert web.carrier is not None
    foreign_before = web.carrier.foreign
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.closing(stranger):
        stranger.bind(("127.0.0.1", 0))
        packet = RtpPacket(0, 1, 160, 1234, payload=b"\x00" * 160).to_bytes()
        for first in (packet, b"\x16\xfe\xfd" + bytes(40), b"\x00\x01" + bytes(18)):
            stranger.sendto(first, web.local_address)
        await asyncio.sleep(0.2)
    assert web.carrier.foreign >= foreign_before + 2  # the RTP and the DTLS record
    assert web.carrier.ice.refused >= 1  # the STUN request without our password
    assert web.stats().rtp.foreign == 0  # nothing reached the relay's stream
    assert web.stats().rtp.packets_in >= before
    assert ipaddress.ip_address(web.carrier.destination[0]).is_loopback  # type: ignore[index]
    await session.close()
