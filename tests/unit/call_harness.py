"""A B2BUA with no sockets: the SIP service, the media engine and the call
records are stand-ins that note what the call did, and time is a fake clock
the test moves by hand. The tests play the phones: they read what was sent
and answer it as a phone would."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.events import EventBus
from callbridge.media.dtls_srtp import Fingerprint
from callbridge.media.errors import MediaError
from callbridge.media.ice_lite import IceCredentials
from callbridge.media.transcode import OpusFormats
from callbridge.media.webrtc import WebRtcLocal, WebRtcRemote
from callbridge.pbx.auth import Authenticator
from callbridge.pbx.b2bua import B2bua, ResponseHandler
from callbridge.pbx.guard import FloodGuard, GuardPolicy
from callbridge.pbx.lines import Line, Lines
from callbridge.pbx.registrar import Binding, MemoryLocation
from callbridge.sip import Request, Response, make_response, parse
from callbridge.sip.digest import (
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    select_challenge,
)
from callbridge.sip.transaction import (
    ClientInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    TransactionError,
    new_branch,
    new_tag,
)
from callbridge.sip.uri import parse_name_addr

REALM = "callbridge"
PBX = "127.0.0.1:5060"
MEDIA_ADDRESS = "127.0.0.1"
PASSWORDS = {"alice": "alice-pass", "bob": "bob-pass"}


def _ha1(username: str) -> dict[str, str]:
    password = PASSWORDS[username]
    return {alg: compute_ha1(username, REALM, password, alg) for alg in ("MD5", "SHA-256")}


ALICE = Line("101", "alice", _ha1("alice"))
BOB = Line("102", "bob", _ha1("bob"))
Peer = tuple[str, str, int]  # transport, host, port


# --- time -------------------------------------------------------------------


class FakeTimer:
    """As asyncio's: cancelled, it lets go of its callback at once."""

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback: Callable[..., object] | None = callback
        self.args = args

    def cancel(self) -> None:
        self.callback, self.args = None, ()

    def fire(self) -> None:
        callback, args = self.callback, self.args
        self.cancel()
        if callback is not None:
            callback(*args)


class FakeClock:
    """Monotonic seconds and the timers due at them; `advance` fires them in order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._due: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(callback, args)
        heapq.heappush(self._due, (self.now + delay, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        while self._due and self._due[0][0] <= until:
            when, _, timer = heapq.heappop(self._due)
            self.now = max(self.now, when)
            timer.fire()
        self.now = until


# --- SIP ----------------------------------------------------------------------


@dataclass
class Sent:
    """A request callbridge sent, and the handler its responses go to."""

    request: Request
    peer: object
    on_response: ResponseHandler | None
    transaction: ClientTransaction | None = None

    def respond(
        self,
        status: int,
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        """Answer as the peer would; returns the response."""
        assert self.on_response is not None, "an ACK has no response"
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/sdp"))
        if 200 <= status < 300 and self.request.method == "INVITE":
            extra.append(("Contact", f"<sip:{_user(self.request)}@{_hostport(self.peer)}>"))
        response = make_response(self.request, status, to_tag=to_tag, headers=extra, body=body)
        if self.transaction is None:
            self.transaction = ClientInviteTransaction(self.request, self.peer, reliable=False)
        self.on_response(self.transaction, response)
        return response


class FakeSip:
    """The SIP service as the B2BUA sees it (`SipPort`), with a fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[Sent] = []
        self.responses: list[tuple[ServerTransaction, Response]] = []

    def time(self) -> float:
        return self.clock.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        return self.clock.call_later(delay, callback, *args)

    def send_request(self, request: Request, peer: object, on_response: ResponseHandler) -> None:
        if "Via" not in request.headers:
            request.headers.prepend("Via", f"SIP/2.0/UDP {PBX};branch={new_branch()};rport")
        self.sent.append(Sent(request, peer, on_response))

    def send_ack(self, ack: Request, peer: object) -> None:
        if "Via" not in ack.headers:
            ack.headers.prepend("Via", f"SIP/2.0/UDP {PBX};branch={new_branch()};rport")
        self.sent.append(Sent(ack, peer, None))

    def respond(self, transaction: ServerTransaction, response: Response) -> None:
        try:
            transaction.respond(response, self.clock.now)
        except TransactionError:
            return
        self.responses.append((transaction, response))

    def contact(self, user: str, peer: object) -> str:
        return f"<sip:{user}@{PBX}>"

    def peer_for(self, binding: Binding) -> object:
        return binding.source

    def next_hop(self, uri: object, flow: object) -> object:
        return flow

    def peer_at(self, transport: str, host: str, port: int) -> object:
        return (transport, host, port)

    def host_of(self, peer: object) -> str | None:
        return peer[1] if isinstance(peer, tuple) else None

    # --- for the tests

    def requests(self, method: str, *, to: object = None) -> list[Sent]:
        return [s for s in self.sent if s.request.method == method and (to is None or s.peer == to)]

    def last_request(self, method: str, *, to: object = None) -> Sent:
        found = self.requests(method, to=to)
        assert found, f"no {method} sent{f' to {to}' if to else ''}: {self.sent}"
        return found[-1]

    def answers_to(self, transaction: ServerTransaction) -> list[int]:
        return [r.status for t, r in self.responses if t is transaction]


# --- media ----------------------------------------------------------------------


@dataclass(eq=False)
class FakeLeg:
    name: str
    local_address: tuple[str, int]
    remote: tuple[str, int] | None = None
    payload_types: Mapping[int, str] = field(default_factory=dict)
    expected: bool = True
    sdp_went: bool = False
    peer: FakeLeg | None = None
    # What DTMF attaches (pbx/dtmf.py): taps on what the leg receives, a
    # filter on what it sends, and the packets it was given to send.
    taps: list[Any] = field(default_factory=list)
    outbound: Any = None
    sent: list[bytes] = field(default_factory=list)
    # A WebRTC leg's ICE credentials and fingerprint (None: plain RTP), and
    # the browser's parameters the call gave it.
    webrtc: WebRtcLocal | None = None
    webrtc_remote: WebRtcRemote | None = None
    # A browser speaking only Opus: how the leg transcodes (None: it relays).
    transcoding: OpusFormats | None = None

    def add_tap(self, tap: Any) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Any) -> None:
        self.taps.remove(tap)

    def set_outbound(self, outbound: Any) -> None:
        self.outbound = outbound

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)


class FakeSession:
    def __init__(self, engine: FakeMedia, call_id: str, on_timeout: Any) -> None:
        self.engine = engine
        self.call_id = call_id
        self.on_timeout = on_timeout
        self.legs: list[FakeLeg] = []
        self.closed = False

    async def add_leg(self, name: str | None = None, *, webrtc: bool = False) -> FakeLeg:
        if self.engine.ports_left <= 0:
            raise MediaError("no free RTP port pair")
        self.engine.ports_left -= 1
        leg = FakeLeg(name or f"leg-{len(self.legs)}", (MEDIA_ADDRESS, self.engine.next_port()))
        if webrtc:
            leg.webrtc = WebRtcLocal(IceCredentials.generate(), LOCAL_FINGERPRINT)
        self.legs.append(leg)
        return leg

    def set_webrtc_remote(self, leg: FakeLeg, remote: WebRtcRemote) -> None:
        assert leg.webrtc is not None
        leg.webrtc_remote = remote

    def set_transcoding(self, leg: FakeLeg, formats: OpusFormats | None) -> None:
        assert leg.webrtc is not None
        leg.transcoding = formats

    def set_remote(
        self,
        leg: FakeLeg,
        host: str,
        port: int,
        payload_types: Mapping[int, str] = {},
        *,
        rtcp_port: int | None = None,
        signalling_host: str | None = None,
    ) -> None:
        leg.remote, leg.payload_types = (host, port), dict(payload_types)

    def sdp_sent(self, leg: FakeLeg) -> None:
        leg.sdp_went = True

    def connect(self, a: FakeLeg, b: FakeLeg) -> None:
        a.peer, b.peer = b, a

    def disconnect(self, leg: FakeLeg) -> None:
        if leg.peer is not None:
            leg.peer.peer = None
        leg.peer = None

    def expect_media(self, leg: FakeLeg, expected: bool) -> None:
        leg.expected = expected

    def idle_for(self, now: float) -> float:
        return 0.0

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_timeout = None  # as the engine's: nothing of the call is kept
            self.engine.ports_left += len(self.legs)


class FakeMedia:
    def __init__(self, ports: int = 100) -> None:
        self.sessions: dict[str, FakeSession] = {}
        self.ports_left = ports
        self._port = 40000

    def next_port(self) -> int:
        self._port += 2
        return self._port

    def create_session(self, call_id: str, *, on_timeout: Any = None) -> FakeSession:
        session = self.sessions[call_id] = FakeSession(self, call_id, on_timeout)
        return session

    def check_remote(self, host: str, port: int) -> None:
        if (host, port) == ("127.0.0.1", 5060):
            raise MediaError("media address 127.0.0.1:5060 is this PBX's own socket")

    async def close(self) -> None:
        pass


# --- call records ----------------------------------------------------------


@dataclass
class Record:
    id: str
    caller_number: str
    callee_number: str
    direction: str
    status: str = "in_progress"
    answered_at: datetime | None = None
    hangup_side: str | None = None
    hangup_cause: str | None = None
    hold_seconds: int = 0


class FakeRecorder:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self._ids = itertools.count(1)

    def begin(self, *, at: datetime, caller_number: str, callee_number: str, **kw: Any) -> str:
        record = Record(
            f"call-{next(self._ids)}", caller_number, callee_number, kw.get("direction", "")
        )
        self.records[record.id] = record
        return record.id

    def answered(self, call_id: str, at: datetime) -> None:
        self.records[call_id].answered_at = at

    def identified(self, call_id: str, **kw: Any) -> None:
        pass

    def ended(
        self,
        call_id: str,
        *,
        at: datetime,
        answered_at: datetime | None,
        status: str,
        hangup_side: str | None,
        hangup_cause: str | None,
        hold_seconds: int = 0,
    ) -> None:
        record = self.records[call_id]
        record.hold_seconds = hold_seconds
        if record.status == "in_progress":
            record.status, record.hangup_side, record.hangup_cause = (
                status,
                hangup_side,
                hangup_cause,
            )

    def only(self) -> Record:
        assert len(self.records) == 1, self.records
        return next(iter(self.records.values()))


# --- the phones ----------------------------------------------------------------


LOCAL_FINGERPRINT = Fingerprint("sha-256", ":".join(["CD"] * 32))
BROWSER_FINGERPRINT = ":".join(["AB"] * 32)


def browser_sdp(
    port: int, *, setup: str = "actpass", host: str = "0.0.0.0", ufrag: str = "Brws"
) -> bytes:
    """A browser's SDP as Chrome writes it: Opus first, G.711, events, ICE, DTLS."""
    return "\r\n".join(
        [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            f"m=audio {port} UDP/TLS/RTP/SAVPF 111 0 8 126",
            f"c=IN IP4 {host}",
            "a=candidate:1 1 udp 2122260223 127.0.0.30 54400 typ host",
            f"a=ice-ufrag:{ufrag}",
            "a=ice-pwd:eRWcM3IyvKfwfRw2d5SD8KJZ",
            f"a=fingerprint:sha-256 {BROWSER_FINGERPRINT}",
            f"a=setup:{setup}",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:126 telephone-event/8000",
            "",
        ]
    ).encode()


def sdp(port: int, *, direction: str = "sendrecv", host: str = "127.0.0.9") -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()


def _user(request: Request) -> str:
    return getattr(request.uri, "user", None) or "device"


def _hostport(peer: object) -> str:
    if isinstance(peer, tuple):
        return f"{peer[1]}:{peer[2]}"
    return "127.0.0.9:5062"


@dataclass
class Dialog:
    """The phone side of the caller's dialog, for its in-dialog requests."""

    call_id: str
    local_tag: str  # the caller's From tag
    remote_tag: str  # ours (callbridge's To tag)
    cseq: int = 1


class World:
    """callbridge's B2BUA with two lines, alice (101) calling bob (102), whose
    devices the tests register and answer for."""

    def __init__(self, *, lines: tuple[Line, ...] = (ALICE, BOB)) -> None:
        self.clock = FakeClock()
        self.sip = FakeSip(self.clock)
        self.media = FakeMedia()
        self.recorder = FakeRecorder()
        self.events = EventBus()
        self.location = MemoryLocation()
        self.lines = Lines.of(lines)
        guard = FloodGuard(GuardPolicy())
        self.auth = Authenticator(DigestServer(REALM, nonce_ttl=300), guard, server_name="cb")
        self.b2bua = B2bua(
            self.sip,  # type: ignore[arg-type]
            authenticator=self.auth,
            location=self.location,
            media=self.media,  # type: ignore[arg-type]
            recorder=self.recorder,  # type: ignore[arg-type]
            events=self.events,
            media_address=MEDIA_ADDRESS,
            lines=lambda: self.lines,
            wallclock=lambda: datetime(2026, 12, 7, tzinfo=UTC) + timedelta(seconds=self.clock.now),
        )
        self._ports = itertools.count(5100)

    def register(self, line: Line, *, host: str = "127.0.0.20", browser: bool = False) -> Peer:
        """A device of `line` at its own address; returns where it is reached.
        A `browser` registers as JsSIP does, with `;transport=ws` in its Contact."""
        peer: Peer = ("udp", host, next(self._ports))
        transport = ";transport=ws" if browser else ""
        contact = parse_name_addr(f"<sip:{line.number}@{host}:{peer[2]}{transport}>")
        binding = Binding(line.number, contact, self.clock.now + 3600, new_tag(), 1, source=peer)
        self.location.replace(line.number, [*self.location.bindings(line.number, 0), binding])
        return peer

    def invite(
        self,
        caller: Line,
        number: str,
        body: bytes | None = None,
        *,
        call_id: str | None = None,
        from_tag: str | None = None,
    ) -> tuple[Request, ServerInviteTransaction, object]:
        """The caller's INVITE with good credentials (after a 407), as the
        B2BUA takes it; returns the request, its transaction and what the
        B2BUA answered at once."""
        call_id = call_id or f"{new_tag()}@127.0.0.10"
        from_tag = from_tag or new_tag()
        first = self._invite_request(caller, number, body, call_id, from_tag, 1, "")
        challenge = self.b2bua.invite(
            first, self._transaction(first), source="127.0.0.10", peer=CALLER, transport="udp"
        )
        assert isinstance(challenge, Response) and challenge.status == 407, challenge
        chosen = select_challenge(
            [parse_challenge(v) for v in challenge.headers.get_all("Proxy-Authenticate")]
        )
        credentials = answer_challenge(
            chosen,
            method="INVITE",
            uri=str(first.uri),
            username=caller.username,
            password=PASSWORDS[caller.username],
        )
        request = self._invite_request(
            caller,
            number,
            body,
            call_id,
            from_tag,
            2,
            f"Proxy-Authorization: {credentials.to_header_value()}\r\n",
        )
        transaction = self._transaction(request)
        answer = self.b2bua.invite(
            request, transaction, source="127.0.0.10", peer=CALLER, transport="udp"
        )
        return request, transaction, answer

    def _invite_request(
        self,
        caller: Line,
        number: str,
        body: bytes | None,
        call_id: str,
        from_tag: str,
        cseq: int,
        extra: str,
    ) -> Request:
        content = body if body is not None else sdp(7000)
        text = (
            f"INVITE sip:{number}@{PBX} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.10:5062;branch={new_branch()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{caller.number}@{PBX}>;tag={from_tag}\r\n"
            f"To: <sip:{number}@{PBX}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:{caller.number}@127.0.0.10:5062>\r\n"
            f"{extra}"
            + ("Content-Type: application/sdp\r\n" if content else "")
            + f"Content-Length: {len(content)}\r\n\r\n"
        )
        message = parse(text.encode() + content)
        assert isinstance(message, Request)
        return message

    def _transaction(self, request: Request) -> ServerInviteTransaction:
        transaction = ServerInviteTransaction(request, CALLER, reliable=False)
        transaction.start(self.clock.now)
        return transaction

    def in_dialog(
        self,
        dialog: Dialog,
        method: str,
        body: bytes = b"",
        cseq: int | None = None,
        content_type: str = "application/sdp",
    ) -> tuple[Request, ServerTransaction, Response | None]:
        """A request of the caller in its dialog with callbridge."""
        dialog.cseq = cseq if cseq is not None else dialog.cseq + 1
        text = (
            f"{method} sip:102@{PBX} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.10:5062;branch={new_branch()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:101@{PBX}>;tag={dialog.local_tag}\r\n"
            f"To: <sip:102@{PBX}>;tag={dialog.remote_tag}\r\n"
            f"Call-ID: {dialog.call_id}\r\n"
            f"CSeq: {dialog.cseq} {method}\r\n"
            "Contact: <sip:101@127.0.0.10:5062>\r\n"
            + (f"Content-Type: {content_type}\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        request = parse(text.encode() + body)
        assert isinstance(request, Request)
        if method == "ACK":
            self.b2bua.ack(request)
            return request, None, None  # type: ignore[return-value]
        kind = ServerInviteTransaction if method == "INVITE" else ServerNonInviteTransaction
        transaction = kind(request, CALLER, reliable=False)
        transaction.start(self.clock.now)
        return request, transaction, self.b2bua.in_dialog(request, transaction)

    def in_dialog_as_callee(
        self,
        dialog: Dialog,
        method: str,
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> tuple[Request, ServerTransaction, Response | None]:
        """A request of a phone we called, in its dialog with callbridge
        (`dialog.local_tag` is the phone's To tag, `remote_tag` our From tag)."""
        dialog.cseq += 1
        text = (
            f"{method} sip:caller@{PBX} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.20:5100;branch={new_branch()};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:phone@127.0.0.20>;tag={dialog.local_tag}\r\n"
            f"To: <sip:caller@{PBX}>;tag={dialog.remote_tag}\r\n"
            f"Call-ID: {dialog.call_id}\r\n"
            f"CSeq: {dialog.cseq} {method}\r\n"
            + (f"Content-Type: {content_type}\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        request = parse(text.encode() + body)
        assert isinstance(request, Request)
        transaction = ServerNonInviteTransaction(request, CALLER, reliable=False)
        transaction.start(self.clock.now)
        return request, transaction, self.b2bua.in_dialog(request, transaction)

    async def settle(self) -> None:
        """Let the call's tasks (binding media ports) run."""
        for _ in range(5):
            await asyncio.sleep(0)


CALLER: Peer = ("udp", "127.0.0.10", 5062)
