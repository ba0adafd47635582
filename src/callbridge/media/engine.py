"""The media engine: per call a graph of legs (an RTP and an RTCP socket each)
joined by relay edges, with symmetric RTP latching and media timeouts.

The graph
---------
A `MediaSession` belongs to one call. Its nodes are legs: `add_leg()` binds a
port pair and returns the address to put in our SDP; `set_remote()` gives the
leg the peer's SDP address; `connect(a, b)` adds the relay edge, after which
every packet received on `a` is sent unchanged out of `b` and the reverse
(PCMU, PCMA, telephone-event alike: SSRC, sequence numbers and timestamps
pass through, and both legs are assumed to use the same payload type numbers).

What later issues add attaches to the same graph, never beside it:

- a **tap** (`Tap`, via `leg.add_tap`) sees every valid RTP packet received on
  a leg, after it has been relayed: the recorder taps both legs of a call (one
  direction each), DTMF detection taps a leg and reads RFC 4733 events with
  `media.dtmf`. A tap must be quick and must not keep the packet's
  buffer beyond the call unless it copies it (it is the bytes object asyncio
  handed us, so keeping it is safe, but it is the tap's memory).
- an **outbound filter** (`leg.set_outbound`) sees what the relay sends out
  of a leg and returns it, rewritten, or None to drop it: DTMF drops the
  telephone-events a peer did not accept and renumbers the relayed stream
  around the events it injects (`media.dtmf.EventInjector`). Only a leg that
  has one pays for it.
- a **source** sends packets into a leg with `leg.send(packet)`: the player
  (music on hold, IVR prompts) disconnects the leg's relay edge and sends its
  own packets on a timer; a conference mixer taps every member leg, decodes
  with `g711`, mixes, and sends each member the mix minus its own voice. A
  leg has at most one relay peer; a mixer replaces edges rather than adding
  them.
- a **WebRTC leg** (`add_leg(webrtc=True)`, `media/webrtc.py`) is the same
  node on another carrier: one UDP port with ICE-lite, DTLS-SRTP and RTCP
  muxed. Its streams send through an `SrtpSender` rather than a UDP
  transport and receive what was decrypted, from the address ICE chose
  (which stands in for latching: only a peer that knows our ICE password
  can be chosen, and the DTLS peer must match the SDP's fingerprint).
  `set_webrtc_remote()` takes the peer's ICE and DTLS parameters; a failed
  handshake ends the session through `on_timeout`, as dead media does.
  `set_transcoding()` gives a WebRTC leg whose browser speaks only Opus a
  transcoder (`media/transcode.py`) at the carrier: the graph still sees
  G.711 from and to it, in the leg's own RTP stream. Every other leg relays
  untouched; `LegStats.transcoded` says which did not.

Symmetric RTP latching (RFC 4961 behaviour for peers behind NAT)
----------------------------------------------------------------
A leg sends to the peer's SDP address until it *latches* onto the address
the peer really sends from. Only proof moves it (issue 11, "RTP bleed"): an
RTP source is accepted (and latched) when

1. it is exactly the SDP address (host and port): sending there is what a
   relay without latching would do anyway, so a spoofed copy gains nothing; or
2. the leg has not latched yet, the latch window is open, and the source has
   sent `LATCH_PACKETS` valid packets in a row with one SSRC, one payload type
   and consecutive sequence numbers. The window opens only when the call
   logic says our SDP has reached this leg's peer *and* we know the peer's
   (`sdp_sent()` after `set_remote()`: our 183/200 to a caller, the callee's
   answer to our offer). When the call logic names the host the peer's SIP
   comes from (`signalling_host`), only that host or the SDP's may prove
   itself, and the window stays open until one does (a phone may be silent
   at first); otherwise it stays open `latch_window` seconds. This is the NAT case: a
   phone behind NAT announces a private address and sends, from the NAT's
   public address that its SIP comes from too, once it has our answer;
   before that nobody can latch, so spraying a ringing call's ports gains
   nothing, and a stranger's host never can.

A packet of a source still proving itself is not relayed; a packet from any
other source breaks the run (that source starts its own). Anything refused
is dropped and counted as `foreign`. Once latched, a leg never moves to
another source but its SDP address: a `set_remote()` with a different
address (a re-INVITE that moves the media) forgets the latch and closes the
window until the next `sdp_sent()`.

RTCP follows its RTP stream's proof, since an RTCP packet carries no stream
to prove: it latches on its SDP address, or on the first RTCP packet from the
host the RTP stream has latched on (a NAT maps the RTCP port on its own).

Where the relay sends is also checked against a `MediaPolicy`: an SDP naming
one of this PBX's own sockets is refused (`OwnDestination`), and an address
outside the allowed networks is never sent to: that leg stays silent until
a source in an allowed network latches.

RTCP is relayed like RTP, unchanged, RTCP port to RTCP port: since RTP passes
through untouched, the endpoints' reports stay true end to end.

Media timeout
-------------
Activity is sampled, not stamped: the per-packet path only counts, and the
engine's single periodic check (every `check_interval` seconds, one timer for
all sessions) notes the time at which a leg's packet count, RTP and RTCP
together, moved. A session is idle for as long as its most silent *joined*
leg whose peer is expected to send (a leg waiting for an answer, or put on
hold with `expect_media(leg, False)`, is not); a leg is joined from its first
`connect` until it closes, so a leg taken out of the relay (hearing music
on hold, say) still counts: a phone that dies on hold ends its call like
one that dies talking. `on_timeout(session)` runs
once when that reaches `rtp_timeout`. RTCP counts because a phone that holds
with `sendonly` and no music sends only RTCP: a held call is not a dead one;
only a leg that should send and sends neither RTP nor RTCP times out. The
clock is injected, so tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from OpenSSL import SSL

from ..logs import log_event
from .dtls_srtp import Certificate
from .errors import MediaError
from .policy import AllowedNetworks, MediaPolicy, OwnDestination, ip_of
from .ports import PortPair, RtpPortAllocator
from .rtp import RTCP_HEADER_SIZE, RTP_HEADER_SIZE
from .transcode import OpusFormats, OpusTranscoder
from .webrtc import SrtpSender, WebRtcLocal, WebRtcRemote, WebRtcTransport

logger = logging.getLogger("callbridge.media")

Address = tuple[str, int]
Clock = Callable[[], float]

DEFAULT_LATCH_WINDOW = 2.0
# Packets in a row (one SSRC, one payload type, consecutive sequence numbers)
# a source behind NAT sends before it latches: 40 ms of a 20 ms stream.
LATCH_PACKETS = 3
DEFAULT_CHECK_INTERVAL = 1.0
_CLOSED = float("-inf")


class Tap(Protocol):
    """Called with each valid RTP packet a leg receives, after the relay."""

    def __call__(self, leg: Leg, packet: bytes) -> None: ...


# What a leg sends its peer of what the relay brings it: the packet (the
# same, or rewritten), or None to drop it. A leg without one (the fast path)
# sends every packet untouched.
OutboundFilter = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one socket of a leg. `foreign`: from a source the latching
    rule refused; `malformed`: not RTP/RTCP; `errors`: failures while relaying."""

    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    malformed: int
    foreign: int
    errors: int

    @property
    def dropped(self) -> int:
        return self.malformed + self.foreign + self.errors


@dataclass(frozen=True, slots=True)
class LegStats:
    """A leg's sockets' counters; `transcoded`: packets its transcoder
    decoded from and encoded to a browser (0 on a leg that relays)."""

    rtp: StreamStats
    rtcp: StreamStats
    transcoded: int = 0


class Leg(Protocol):
    """One side of a call's media: a node of the session's graph."""

    @property
    def name(self) -> str: ...

    @property
    def local_address(self) -> Address:
        """The (host, RTP port) to put in our SDP for this leg's peer."""
        ...

    @property
    def remote(self) -> Address | None:
        """Where this leg sends: the latched source, else the SDP address."""
        ...

    @property
    def latched(self) -> bool: ...

    @property
    def payload_types(self) -> Mapping[int, str]: ...

    def stats(self) -> LegStats: ...

    def idle_for(self, now: float) -> float: ...

    def add_tap(self, tap: Tap) -> None: ...

    def remove_tap(self, tap: Tap) -> None: ...

    def send(self, packet: bytes) -> None:
        """Send one RTP packet to the leg's peer (for players and mixers)."""
        ...

    def set_outbound(self, outbound: OutboundFilter | None) -> None:
        """Filter the relayed RTP this leg sends its peer (DTMF: drop events
        the peer did not accept, renumber around injected ones); None: none."""
        ...

    @property
    def webrtc(self) -> WebRtcLocal | None:
        """A WebRTC leg's ICE credentials and DTLS fingerprint (for our SDP); None: plain RTP."""
        ...


class MediaSession(Protocol):
    """The media graph of one call."""

    @property
    def call_id(self) -> str: ...

    async def add_leg(self, name: str | None = None, *, webrtc: bool = False) -> Leg: ...

    def set_webrtc_remote(self, leg: Leg, remote: WebRtcRemote) -> None:
        """A WebRTC leg's peer's ICE credentials, fingerprints and our DTLS role."""
        ...

    def set_transcoding(self, leg: Leg, formats: OpusFormats | None) -> None:
        """Transcode a WebRTC leg between the browser's Opus and G.711
        (`formats` names the payload types on both sides); None: relay."""
        ...

    def set_remote(
        self,
        leg: Leg,
        host: str,
        port: int,
        payload_types: Mapping[int, str] = ...,
        *,
        rtcp_port: int | None = None,
        signalling_host: str | None = None,
    ) -> None: ...

    def sdp_sent(self, leg: Leg) -> None:
        """Our SDP has gone out to the leg's peer: the NAT latch window opens
        (if the peer's SDP address is known and the leg has not latched)."""
        ...

    def connect(self, leg_a: Leg, leg_b: Leg) -> None: ...

    def disconnect(self, leg: Leg) -> None: ...

    def expect_media(self, leg: Leg, expected: bool) -> None:
        """Whether the leg's peer is meant to send (not on hold, say): only
        legs that are count towards the media timeout."""
        ...

    def idle_for(self, now: float) -> float: ...

    async def close(self) -> None: ...


TimeoutCallback = Callable[[MediaSession], None]


class MediaEngine(Protocol):
    """Anchors the media of calls: in process today, rtpengine later."""

    def create_session(
        self, call_id: str, *, on_timeout: TimeoutCallback | None = None
    ) -> MediaSession: ...

    def check_remote(self, host: str, port: int) -> None:
        """Raise `MediaError` when an SDP may not name (host, port): one of
        this PBX's own sockets, or not an IP address."""
        ...

    async def close(self) -> None: ...


class _Stream(asyncio.DatagramProtocol):
    """One socket of a leg (RTP or RTCP): receive, latch, relay, count."""

    __slots__ = (
        "_clock",
        "_latch_window",
        "_lost",
        "_policy",
        "bytes_in",
        "bytes_out",
        "candidate",
        "errors",
        "foreign",
        "latch_hosts",
        "latch_until",
        "leg",
        "malformed",
        "min_length",
        "outbound",
        "packets_in",
        "packets_out",
        "peer",
        "proof",
        "remote",
        "sdp_remote",
        "source",
        "taps",
        "transport",
    )

    def __init__(
        self,
        leg: LocalLeg,
        min_length: int,
        clock: Clock,
        latch_window: float,
        policy: MediaPolicy,
        proof: _Stream | None = None,
    ) -> None:
        # None once closed: a leg and its streams refer to each other, and
        # a closed leg must go with its call, not wait for the collector.
        self.leg: LocalLeg | None = leg
        self.min_length = min_length
        self._clock = clock
        self._latch_window = latch_window
        self._policy = policy
        # RTCP's: the RTP stream whose latched host it may latch on.
        self.proof = proof
        # The source proving itself: (address, SSRC, payload type, sequence, count).
        self.candidate: tuple[Any, bytes, int, int, int] | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: _Stream | None = None
        self.taps: tuple[Tap, ...] = ()
        self.outbound: OutboundFilter | None = None
        self.source: Any = None  # the accepted source, as the loop reports it
        self.remote: Any = None  # where we send: the source once latched, else the SDP address
        self.sdp_remote: Address | None = None
        self.latch_hosts: set[str] | None = None  # None: any host may prove itself
        self.latch_until = _CLOSED
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.malformed = self.foreign = self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: Python 3.11's selector transport is not a subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # The hot path: one comparison, a length and version check, one sendto.
        try:
            if addr != self.source and not self._admit(data, addr):
                return
            if len(data) < self.min_length or data[0] & 0xC0 != 0x80:
                self.malformed += 1
                return
            self.packets_in += 1
            self.bytes_in += len(data)
            peer = self.peer
            if peer is not None and (dest := peer.remote) is not None:
                out: bytes | None = data
                if peer.outbound is not None:
                    out = peer.outbound(data)
                if out is not None:
                    peer.transport.sendto(out, dest)  # type: ignore[union-attr]
                    peer.packets_out += 1
                    peer.bytes_out += len(out)
            if self.taps and (leg := self.leg) is not None:
                for tap in self.taps:
                    tap(leg, data)
        except Exception:
            self.errors += 1
            if self.errors == 1:  # once per stream: a broken tap must not flood the log
                logger.exception("media.relay_failed leg=%s", self.leg and self.leg.name)

    def _admit(self, data: bytes, addr: Any) -> bool:
        """Apply the latching rule to a packet from a source not latched (yet)."""
        if len(data) < self.min_length or data[0] & 0xC0 != 0x80:
            self.malformed += 1
            return False
        sdp = self.sdp_remote
        if sdp is not None and addr[0] == sdp[0] and addr[1] == sdp[1]:
            return self._latch(addr)
        if self.source is None:
            if self.proof is not None:
                rtp_source = self.proof.source
                if rtp_source is not None and addr[0] == rtp_source[0]:
                    return self._latch(addr)
            elif self._proven(data, addr):
                return self._latch(addr)
        self.foreign += 1
        return False

    def _proven(self, data: bytes, addr: Any) -> bool:
        """Whether this packet completes its source's run of `LATCH_PACKETS`
        while the window is open; otherwise it starts or extends the run."""
        hosts = self.latch_hosts
        if hosts is not None and addr[0] not in hosts:
            return False  # neither the SDP's host nor the SIP's: never a candidate
        if self._clock() > self.latch_until:
            self.candidate = None
            return False
        ssrc, payload_type = data[8:12], data[1] & 0x7F
        sequence = int.from_bytes(data[2:4], "big")
        count = 1
        run = self.candidate
        if (
            run is not None
            and run[0] == addr
            and run[1] == ssrc
            and run[2] == payload_type
            and (run[3] + 1) & 0xFFFF == sequence
        ):
            count = run[4] + 1
        self.candidate = (addr, ssrc, payload_type, sequence, count)
        return count >= LATCH_PACKETS

    def _latch(self, addr: Any) -> bool:
        self.candidate = None
        if not self._policy.allows((addr[0], addr[1])):
            self.foreign += 1
            return False
        self.source = self.remote = addr
        self.latch_until = _CLOSED
        return True

    def set_remote(self, address: Address, latch_hosts: set[str] | None = None) -> None:
        self.latch_hosts = latch_hosts
        if address == self.sdp_remote and self.source is not None:
            return  # same media address (hold, codec change): keep the latch
        self.sdp_remote = address
        self.remote = address if self._policy.allows(address) else None
        self.source = self.candidate = None
        self.latch_until = _CLOSED

    def open_latch_window(self) -> None:
        if self.source is None and self.sdp_remote is not None:
            self.candidate = None
            # Narrowed to the party's own hosts, the window stays open until
            # it latches: a phone silent at first (VAD, mute, a slow start)
            # must not be deaf for the whole call. Open to any host, it is short.
            narrowed = self.latch_hosts is not None
            self.latch_until = math.inf if narrowed else self._clock() + self._latch_window

    def send(self, data: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(data, self.remote)
            self.packets_out += 1
            self.bytes_out += len(data)

    def stats(self) -> StreamStats:
        return StreamStats(
            self.packets_in,
            self.bytes_in,
            self.packets_out,
            self.bytes_out,
            self.malformed,
            self.foreign,
            self.errors,
        )

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from an earlier sendto: the peer is gone or not
        # yet listening; the media timeout decides, not one ICMP message.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._lost.done():
            self._lost.set_result(None)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            await self._lost
        self.leg = self.peer = None
        self.taps = ()
        self.outbound = None


class LocalLeg:
    """A leg of `LocalMediaSession`: an RTP and an RTCP socket on one port pair."""

    __slots__ = (
        "_pair",
        "_seen",
        "carrier",
        "expected",
        "joined",
        "last_activity",
        "name",
        "payload_types",
        "rtcp",
        "rtp",
        "session",
    )

    def __init__(self, session: LocalMediaSession, name: str, pair: PortPair, now: float) -> None:
        engine = session.engine
        self.session = session
        self.name = name
        self._pair = pair
        window, policy = engine.latch_window, engine.policy
        self.rtp = _Stream(self, RTP_HEADER_SIZE, engine.clock, window, policy)
        self.rtcp = _Stream(self, RTCP_HEADER_SIZE, engine.clock, window, policy, self.rtp)
        self.payload_types: Mapping[int, str] = {}
        self.last_activity = now
        self._seen = 0
        self.expected = True
        self.carrier: WebRtcTransport | None = None
        self.joined = False  # connected once: counts for the media timeout until closed

    async def _open(self, webrtc: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if webrtc:
            await self._open_webrtc(loop)
            return
        await loop.create_datagram_endpoint(lambda: self.rtp, sock=self._pair.rtp)
        await loop.create_datagram_endpoint(lambda: self.rtcp, sock=self._pair.rtcp)

    async def _open_webrtc(self, loop: asyncio.AbstractEventLoop) -> None:
        """ICE, DTLS and SRTP on the RTP port, RTCP muxed (the RTCP port stays
        bound but silent: the pair is the allocator's unit)."""
        engine = self.session.engine
        certificate, context = engine.dtls_identity()
        carrier = self.carrier = WebRtcTransport(
            certificate,
            context,
            rtp=self.rtp,
            rtcp=self.rtcp,
            on_ready=self._webrtc_ready,
            on_failed=self._webrtc_failed,
            name=f"{self.session.call_id}/{self.name}",
        )
        await loop.create_datagram_endpoint(lambda: carrier, sock=self._pair.rtp)
        for stream, rtcp in ((self.rtp, False), (self.rtcp, True)):
            sender = SrtpSender(carrier, rtcp, on_close=partial(stream.connection_lost, None))
            stream.transport = cast(asyncio.DatagramTransport, sender)

    def _webrtc_ready(self, address: Address) -> bool:
        """ICE and DTLS are done: media flows to and from `address` (the
        streams take it as their latched source), unless it is one of our
        own sockets. The allowed networks are not asked: they keep the relay
        from sending to whatever an SDP names (a victim of a reflected
        flood), and this address has proved it wants the media, with a
        connectivity check signed with our ICE password and a DTLS handshake
        with the certificate its SDP named (consent, RFC 7675). A browser on
        a LAN or this very machine needs no private range listed."""
        try:
            self.session.engine.policy.check(*address)
        except (OwnDestination, ValueError):
            return False
        for stream in (self.rtp, self.rtcp):
            stream.source = stream.remote = address
            stream.candidate = None
            stream.latch_until = _CLOSED
        return True

    def _webrtc_failed(self, reason: str) -> None:
        for stream in (self.rtp, self.rtcp):
            stream.source = stream.remote = None
        self.session.media_failed(self, reason)

    @property
    def webrtc(self) -> WebRtcLocal | None:
        return None if self.carrier is None else self.carrier.local

    @property
    def local_address(self) -> Address:
        return (self._pair.host, self._pair.port)

    @property
    def remote(self) -> Address | None:
        remote: Address | None = self.rtp.remote
        return None if remote is None else (remote[0], remote[1])

    @property
    def latched(self) -> bool:
        return self.rtp.source is not None

    @property
    def peer(self) -> LocalLeg | None:
        return None if self.rtp.peer is None else self.rtp.peer.leg

    @property
    def taps(self) -> tuple[Tap, ...]:
        return self.rtp.taps

    def add_tap(self, tap: Tap) -> None:
        self.rtp.taps = (*self.rtp.taps, tap)

    def remove_tap(self, tap: Tap) -> None:
        self.rtp.taps = tuple(t for t in self.rtp.taps if t is not tap)

    def send(self, packet: bytes) -> None:
        self.rtp.send(packet)

    def set_outbound(self, outbound: OutboundFilter | None) -> None:
        self.rtp.outbound = outbound

    def stats(self) -> LegStats:
        transcoder = None if self.carrier is None else self.carrier.transcoder
        transcoded = 0
        if transcoder is not None:
            transcoded = transcoder.packets_decoded + transcoder.packets_encoded
        return LegStats(self.rtp.stats(), self.rtcp.stats(), transcoded)

    def observe(self, now: float) -> None:
        """Note `now` as the last activity if RTP or RTCP arrived since the
        last look: a phone that holds with `sendonly` and plays nothing sends
        only RTCP, and is as alive as one that talks (RFC 3550 §6)."""
        seen = self.rtp.packets_in + self.rtcp.packets_in
        if seen != self._seen:
            self._seen = seen
            self.last_activity = now

    def idle_for(self, now: float) -> float:
        self.observe(now)
        return max(0.0, now - self.last_activity)

    async def _close(self, ports: RtpPortAllocator) -> None:
        try:
            await self.rtp.close()
            await self.rtcp.close()
            if self.carrier is not None:
                await self.carrier.close()
        finally:
            ports.release(self._pair)

    def __repr__(self) -> str:
        return f"<LocalLeg {self.session.call_id}/{self.name} {self.local_address}>"


class LocalMediaSession:
    """The media graph of one call in `LocalMediaEngine`."""

    def __init__(
        self, engine: LocalMediaEngine, call_id: str, on_timeout: TimeoutCallback | None
    ) -> None:
        self.engine = engine
        self.call_id = call_id
        self.on_timeout = on_timeout
        self.legs: dict[str, LocalLeg] = {}
        self.closed = False
        self.timed_out = False

    async def add_leg(self, name: str | None = None, *, webrtc: bool = False) -> LocalLeg:
        self._check_open()
        name = f"leg{len(self.legs) + 1}" if name is None else name
        if name in self.legs:
            raise MediaError(f"call {self.call_id} already has a leg named {name!r}")
        ports = self.engine.ports
        pair = ports.allocate()
        leg = LocalLeg(self, name, pair, self.engine.clock())
        try:
            await leg._open(webrtc)
        except BaseException:
            await leg._close(ports)
            raise
        if self.closed:  # closed while we were binding
            await leg._close(ports)
            raise MediaError(f"call {self.call_id}: media session closed")
        self.legs[name] = leg
        return leg

    def set_remote(
        self,
        leg: Leg,
        host: str,
        port: int,
        payload_types: Mapping[int, str] = {},  # never mutated: copied
        *,
        rtcp_port: int | None = None,
        signalling_host: str | None = None,
    ) -> None:
        """Take the peer's SDP: connection address, media port, payload types
        (number → encoding name) and the RTCP port (`a=rtcp`, default port + 1).
        With `signalling_host` (where the peer's SIP comes from), a NAT latch
        is taken only from that host or the SDP's; without, from any host."""
        own = self._own(leg)
        if own.carrier is not None:
            # ICE chooses where a WebRTC leg sends: its SDP's address is only
            # its default candidate, and no proof of anything.
            own.payload_types = dict(payload_types)
            return
        address = _ip_literal(host)
        rtcp = port + 1 if rtcp_port is None else rtcp_port
        for number in (port, rtcp):
            self.engine.check_remote(address, number)
        hosts = None if signalling_host is None else {address, _ip_literal(signalling_host)}
        if not self.engine.policy.allows((address, port)):
            # A NAT'd phone's private address, or a LAN phone the admin has
            # not allowed: the one line that explains a silent call.
            log_event(
                logger,
                logging.INFO,
                "media.sdp_address_not_allowed",
                call_id=self.call_id,
                leg=own.name,
                host=address,
                setting="CALLBRIDGE_MEDIA_ALLOWED_NETWORKS",
            )
        own.payload_types = dict(payload_types)
        own.rtp.set_remote((address, port), hosts)
        own.rtcp.set_remote((address, rtcp), hosts)

    def set_webrtc_remote(self, leg: Leg, remote: WebRtcRemote) -> None:
        own = self._own(leg)
        if own.carrier is None:
            raise MediaError(f"{own!r} is not a WebRTC leg")
        own.carrier.set_remote(remote)

    def set_transcoding(self, leg: Leg, formats: OpusFormats | None) -> None:
        own = self._own(leg)
        carrier = own.carrier
        if carrier is None:
            raise MediaError(f"{own!r} is not a WebRTC leg")
        current = carrier.transcoder
        if formats is None:
            carrier.transcoder = None
        elif current is None:
            carrier.transcoder = OpusTranscoder(formats)
        elif current.formats != formats:
            current.set_formats(formats)
        else:
            return
        if (current is None) != (formats is None):
            log_event(
                logger,
                logging.INFO,
                "media.webrtc_codec",
                call_id=self.call_id,
                leg=own.name,
                codec="relay" if formats is None else "opus-transcoded",
            )

    def media_failed(self, leg: LocalLeg, reason: str) -> None:
        """A leg can never carry media (its DTLS failed): the call hears of it
        as of a media timeout, at once."""
        if self.closed or self.timed_out:
            return
        self.timed_out = True
        log_event(logger, logging.INFO, "media.leg_failed", call_id=self.call_id, leg=leg.name)
        if self.on_timeout is not None:
            try:
                self.on_timeout(self)
            except Exception:
                logger.exception("media.on_timeout_failed call_id=%s", self.call_id)

    def sdp_sent(self, leg: Leg) -> None:
        """Our SDP has reached the leg's peer: open the NAT latch window of its
        RTP stream (RTCP follows that stream's latch)."""
        self._own(leg).rtp.open_latch_window()

    def connect(self, leg_a: Leg, leg_b: Leg) -> None:
        """Relay between two legs, both ways; each leaves any earlier edge."""
        a, b = self._own(leg_a), self._own(leg_b)
        if a is b:
            raise MediaError(f"call {self.call_id}: cannot connect leg {a.name!r} to itself")
        _unlink(a)
        _unlink(b)
        a.rtp.peer, b.rtp.peer = b.rtp, a.rtp
        a.rtcp.peer, b.rtcp.peer = b.rtcp, a.rtcp
        now = self.engine.clock()
        for leg in (a, b):
            leg.observe(now)
            leg.last_activity = now
            leg.joined = True

    def disconnect(self, leg: Leg) -> None:
        """Remove the leg's relay edge, if any."""
        _unlink(self._own(leg))

    def expect_media(self, leg: Leg, expected: bool) -> None:
        own = self._own(leg)
        if expected and not own.expected:  # silence while not expected does not count
            own.last_activity = self.engine.clock()
        own.expected = expected

    def idle_for(self, now: float) -> float:
        """How long the most silent joined leg that should send has sent nothing."""
        return max(
            (leg.idle_for(now) for leg in self.legs.values() if leg.joined and leg.expected),
            default=0.0,
        )

    async def close(self) -> None:
        """Stop relaying and release every leg's ports; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.engine._forget(self)
        # The call and its legs refer to the session: what it refers to goes
        # now, so a closed call leaves no reference cycle for the collector.
        self.on_timeout = None
        legs = list(self.legs.values())
        self.legs.clear()
        for leg in legs:
            _unlink(leg)
        for leg in legs:
            await leg._close(self.engine.ports)

    def _own(self, leg: Leg) -> LocalLeg:
        self._check_open()
        if not isinstance(leg, LocalLeg) or leg.session is not self:
            raise MediaError(f"{leg!r} is not a leg of call {self.call_id}")
        return leg

    def _check_open(self) -> None:
        if self.closed:
            raise MediaError(f"call {self.call_id}: media session closed")

    def __repr__(self) -> str:
        return f"<LocalMediaSession {self.call_id} legs={list(self.legs)}>"


class LocalMediaEngine:
    """The in-process engine: every leg is a pair of asyncio UDP sockets.

    `rtp_timeout` (seconds, None = never) and `on_timeout(session)` end silent
    calls; `clock` is any monotonic clock in seconds (tests pass a fake one)."""

    def __init__(
        self,
        ports: RtpPortAllocator,
        *,
        rtp_timeout: float | None = None,
        on_timeout: TimeoutCallback | None = None,
        clock: Clock = time.monotonic,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        latch_window: float = DEFAULT_LATCH_WINDOW,
        policy: MediaPolicy | None = None,
    ) -> None:
        self.ports = ports
        # Without a policy every network is allowed; our own ports never are.
        self.policy = policy or MediaPolicy(AllowedNetworks.parse("0.0.0.0/0,::/0"))
        self.policy.add_own(ports.host, range(ports.range.first, ports.range.last + 1))
        self.rtp_timeout = rtp_timeout
        self.on_timeout = on_timeout
        self.clock = clock
        self.check_interval = check_interval
        self.latch_window = latch_window
        self.sessions: dict[str, LocalMediaSession] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._dtls: tuple[Certificate, SSL.Context] | None = None

    def dtls_identity(self) -> tuple[Certificate, SSL.Context]:
        """The certificate every WebRTC leg presents, and its DTLS context:
        made on first use (an ECDSA key: about a millisecond), kept for the run."""
        if self._dtls is None:
            certificate = Certificate.generate()
            self._dtls = (certificate, certificate.context())
        return self._dtls

    def create_session(
        self, call_id: str, *, on_timeout: TimeoutCallback | None = None
    ) -> LocalMediaSession:
        if call_id in self.sessions:
            raise MediaError(f"call {call_id} already has a media session")
        session = LocalMediaSession(self, call_id, on_timeout or self.on_timeout)
        self.sessions[call_id] = session
        if self._timer is None and self.rtp_timeout is not None:
            self._arm()
        return session

    def check_remote(self, host: str, port: int) -> None:
        if not 0 < port < 65536:
            raise MediaError(f"media port {port} is out of range")
        self.policy.check(_ip_literal(host), port)

    def check_timeouts(self, now: float | None = None) -> list[LocalMediaSession]:
        """Sample every leg's activity and report each session that has just
        reached `rtp_timeout` to its `on_timeout`; returns those sessions."""
        now = self.clock() if now is None else now
        timeout = self.rtp_timeout
        expired = []
        for session in list(self.sessions.values()):
            idle = session.idle_for(now)
            if timeout is not None and idle >= timeout and not session.timed_out:
                session.timed_out = True
                expired.append(session)
        for session in expired:
            log_event(logger, logging.INFO, "media.timeout", call_id=session.call_id)
            if session.on_timeout is not None:
                try:
                    session.on_timeout(session)
                except Exception:
                    logger.exception("media.on_timeout_failed call_id=%s", session.call_id)
        return expired

    async def close(self) -> None:
        """Close every session and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for session in list(self.sessions.values()):
            try:
                await session.close()
            except Exception:
                logger.exception("media.close_failed call_id=%s", session.call_id)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.check_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check_timeouts()
        finally:
            if self.sessions:
                self._arm()

    def _forget(self, session: LocalMediaSession) -> None:
        if self.sessions.get(session.call_id) is session:
            del self.sessions[session.call_id]


def _ip_literal(host: str) -> str:
    address = ip_of(host)
    if address is None:
        raise MediaError(f"media address {host!r} is not an IP address")
    return address.compressed


def _unlink(leg: LocalLeg) -> None:
    for stream in (leg.rtp, leg.rtcp):
        if stream.peer is not None:
            stream.peer.peer = None
            stream.peer = None
