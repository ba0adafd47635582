"""The back-to-back user agent: calls between internal lines.

A call has two sides, each its own dialog with its own Call-ID and tags: the
caller's, where we are the UAS, and the callee's, where we are the UAC. While
the callee's line rings there is one fork per registered device; the first
2xx wins, the other forks are cancelled. Every SDP that crosses from one side
to the other is rewritten to point at the call's media session, so RTP flows
through callbridge (`media/`), and the call's record is kept by a
`CallRecorder` from the first INVITE to the last BYE.

The SIP side is reached through `SipPort` (the service owns the sockets and
the transaction layer); timers are the loop's. A call's handlers never block:
the only awaits are binding the media ports, in the call's setup task, and
looking the customer's number up in the CRM, in a task of its own beside it.
What happens to a call goes out as events (`ringing`, `answered`, `held`,
`resumed`, `missed`, `ended`) to the employees whose lines take part.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, auto
from typing import Any, Protocol, TypeVar

from ..crm.identify import Identity
from ..events import EventBus
from ..logs import log_event
from ..media.engine import Leg, MediaEngine, MediaSession
from ..media.errors import MediaError
from ..media.recorder import Recording
from ..numbers import MAX_NUMBER_LENGTH, to_e164
from ..sip import Headers, Request, Response, make_response, parse
from ..sip.dialog import Dialog, DialogError
from ..sip.digest import (
    DigestError,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    select_challenge,
)
from ..sip.headers import reason_value
from ..sip.offer_answer import with_connection
from ..sip.sdp import SdpError, SessionDescription, parse_sdp
from ..sip.transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    ServerTransaction,
    make_cancel,
    new_call_id,
    new_tag,
)
from ..sip.uri import URI, NameAddr, format_hostport, name_addr, parse_name_addr, sip_uri
from . import bounds
from .auth import DROP, Authenticated, Authenticator, Drop, HA1Lookup
from .bounds import ANONYMOUS
from .calls import CallRecorder, talk_seconds
from .dialplan import Dialplan
from .lines import Line, Lines
from .normalize import Field
from .recordings import Recordings
from .registrar import Binding, Location
from .staff import Employees
from .trunks import Trunk

logger = logging.getLogger("callbridge.calls")

K = TypeVar("K")
ResponseHandler = Callable[[ClientTransaction, Response], None]
WallClock = Callable[[], datetime]
# Looks a client's number up in the CRM, read in a region ("RU", "US").
Identify = Callable[[str, str], Awaitable[Identity]]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER"
_SDP_TYPE = ("Content-Type", "application/sdp")
_COMPLETED_ELSEWHERE = reason_value(200, "Call completed elsewhere")
_NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})
_SETUP_DELAY_SAMPLES = 100_000
# How long `ringing` waits for the CRM's answer before it goes out with the
# bare number: the popup must come while the phone rings, not after.
IDENTIFY_DEADLINE = 0.15
DEFAULT_RING_TIMEOUT = 60  # an outgoing call rings as long as the far end lets it
# How long an ended call's dialogs still answer retransmissions (64*T1).
_LINGER = 64 * DEFAULT_TIMERS.T1


class SipPort(Protocol):
    """What the B2BUA needs of the SIP service."""

    def send_request(self, request: Request, peer: object, on_response: ResponseHandler) -> None:
        """Add our top Via and start a client transaction; every response
        (a timeout as 408, a transport failure as 503) goes to `on_response`."""
        ...

    def send_ack(self, ack: Request, peer: object) -> None:
        """Send the ACK of a 2xx (no transaction), with our top Via added
        the first time."""
        ...

    def respond(self, transaction: ServerTransaction, response: Response) -> None: ...

    def contact(self, user: str, peer: object) -> str:
        """Our Contact for a dialog with `peer`, as a header value."""
        ...

    def peer_for(self, binding: Binding) -> object:
        """Where requests to a registered device go (its first Path hop, if
        it registered through a proxy)."""
        ...

    def next_hop(self, uri: URI, flow: object) -> object:
        """Where a request whose first Route is `uri` goes: `flow` when it
        is that hop."""
        ...

    def peer_at(self, transport: str, host: str, port: int) -> object:
        """Where requests to an address go (an external line's server)."""
        ...

    def host_of(self, peer: object) -> str | None:
        """The IP address a peer's SIP comes from (None: not an IP peer)."""
        ...

    def time(self) -> float: ...


class Phase(Enum):
    SETUP = auto()  # authenticated, binding media ports
    RINGING = auto()  # forks sent
    ANSWERED = auto()
    ENDED = auto()


@dataclass(eq=False, slots=True)
class Side:
    """One confirmed side of a call: its dialog, the flow it is reached on,
    and its media leg."""

    role: str  # "caller" or "callee": the hangup side it stands for
    dialog: Dialog
    peer: object
    media: Leg
    reliable: bool
    sdp_sent: bytes = b""
    # Our last 2xx to an INVITE of this side, retransmitted until its ACK.
    unacked: tuple[ServerTransaction, Response] | None = None
    retransmit: asyncio.TimerHandle | None = None
    # Our ACK of this side's 2xx, sent again if the 2xx is.
    ack: Request | None = None


@dataclass(eq=False, slots=True)
class Fork:
    """An INVITE to one device of the callee's line, or to an external line."""

    peer: object
    request: Request
    trunk: Trunk | None = None
    authenticated: bool = False
    transaction: ClientTransaction | None = None
    provisional: bool = False
    final: int | None = None
    # A CANCEL waits for a provisional response (RFC 3261 §9.1).
    cancel_reason: str | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class _Ended:
    """One dialog of an ended call, for as long as it still meets stragglers
    (64*T1): our ACK again for a retransmitted 2xx, 200 for a BYE that
    crossed ours, 481 for any other request. It stands in for the call,
    which can go at once: tens of thousands of ended calls held whole for
    those 32 s made the garbage collector's passes long enough to lose
    requests."""

    # Our ACK of this dialog's 2xx as sent, where it went, and the tag of
    # the 2xx it acknowledges; none for a fork that never answered.
    ack: bytes | None = None
    peer: object = None
    remote_tag: str | None = None

    def answer(self, request: Request, reply: Callable[..., Response]) -> Response:
        return reply(request, 200 if request.method == "BYE" else 481)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one fork of a call goes: a registered device, or an external
    line's server (whose digest challenge is answered with its login)."""

    peer: object
    uri: URI
    from_user: str
    from_host: str
    to_user: str
    trunk: Trunk | None = None
    # Our number as the provider should show it (P-Asserted-Identity).
    asserted_user: str | None = None
    # The proxies the device registered through (its Path), as Route.
    routes: tuple[NameAddr, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """What admission decided about a call: who calls whom, over which
    lines, and what its record says."""

    tag: str
    started: datetime
    direction: str
    caller_number: str
    callee_number: str
    caller_raw: str | None = None
    callee_raw: str | None = None
    caller_line: Line | None = None
    callee_line: Line | None = None
    # The internal line whose employee the record belongs to.
    record_line: Line | None = None
    trunk_in: Trunk | None = None
    trunk_out: Trunk | None = None
    targets: tuple[Target, ...] = ()
    # The customer's number (E.164 when it reads as one) and the region it
    # is read in: the external line's. None for an internal call.
    client_number: str | None = None
    region: str | None = None

    @property
    def employees(self) -> set[int]:
        """The employees whose lines take part: the audience of the call's events."""
        lines = (self.caller_line, self.callee_line)
        return {line.employee_id for line in lines if line and line.employee_id is not None}

    @property
    def recording_choices(self) -> tuple[bool | None, ...]:
        """Whether each line the call involves wants it recorded (None: no choice)."""
        lines = (self.caller_line, self.callee_line, self.trunk_in, self.trunk_out)
        return tuple(line.recording for line in lines if line is not None)

    @property
    def ring_timeout(self) -> int:
        return self.callee_line.ring_timeout if self.callee_line else DEFAULT_RING_TIMEOUT

    @property
    def max_talk_duration(self) -> int:
        """The talk limit of the internal line the call is for (or from, outgoing)."""
        line = self.callee_line or self.caller_line
        return line.max_talk_duration if line else 0


@dataclass(frozen=True, slots=True)
class _Media:
    """The first audio stream of an SDP, as the media engine needs it."""

    index: int
    host: str
    port: int
    rtcp_port: int | None
    payload_types: Mapping[int, str]
    sends: bool
    # The side offering this stream will not hear the other (sendonly,
    # inactive, or the RFC 2543 null address): it put the call on hold.
    holds: bool = False


def _audio_of(sdp: SessionDescription) -> _Media:
    for index, media in enumerate(sdp.media):
        if media.media_type != "audio" or media.is_rejected:
            continue
        connection = sdp.connection_for(media)
        if connection is None:
            raise SdpError("the audio stream has no connection address", status=488)
        rtcp = media.attribute("rtcp")
        payload_types = {
            int(pt): rtpmap.encoding for pt, rtpmap in media.rtpmaps.items() if pt.isdigit()
        }
        direction = sdp.effective_direction(media)
        null = connection.address in _NULL_ADDRESSES
        return _Media(
            index=index,
            host=connection.address,
            port=media.port,
            rtcp_port=int(rtcp.split()[0]) if rtcp and rtcp.split()[0].isdigit() else None,
            payload_types=payload_types,
            sends=direction.sends and not null,
            holds=null or not direction.receives,
        )
    raise SdpError("no audio stream to relay", status=488)


def _checked_audio(sdp: SessionDescription, media: MediaEngine) -> _Media:
    """`_audio_of`, refused (488) when it names a place the relay must never
    send to: one of this PBX's own sockets (issue 11)."""
    audio = _audio_of(sdp)
    if audio.host in _NULL_ADDRESSES:
        return audio
    rtcp = audio.port + 1 if audio.rtcp_port is None else audio.rtcp_port
    try:
        for port in (audio.port, rtcp):
            media.check_remote(audio.host, port)
    except MediaError as error:
        raise SdpError(str(error), status=488) from None
    return audio


def _sdp_of(message: Request | Response) -> SessionDescription | None:
    """The message's SDP body; None when it has none; SdpError when bad."""
    if not message.body:
        return None
    content_type = (message.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise SdpError(f"body of type {content_type or 'unknown'} is not SDP", status=415)
    return parse_sdp(message.body)


class B2bua:
    """Calls between internal lines: the INVITEs that create them and every
    request and response of their dialogs."""

    def __init__(
        self,
        sip: SipPort,
        *,
        authenticator: Authenticator,
        location: Location,
        media: MediaEngine,
        recorder: CallRecorder,
        media_address: str,
        lines: Callable[[], Lines],
        wallclock: WallClock = lambda: datetime.now(UTC),
        user_agent: str = "callbridge",
        events: EventBus | None = None,
        identify: Identify | None = None,
        identify_deadline: float = IDENTIFY_DEADLINE,
        latch_on_signalling_host: bool = True,
        recordings: Recordings | None = None,
    ) -> None:
        self.sip = sip
        self.recordings = recordings
        self.authenticator = authenticator
        self.location = location
        self.media = media
        self.recorder = recorder
        self.media_address = media_address
        self.lines = lines
        # Swapped whole when the configuration changes.
        self.dialplan = Dialplan()
        self.wallclock = wallclock
        self.user_agent = user_agent
        self.events = events
        self.identify = identify
        self.identify_deadline = identify_deadline
        # Behind NAT a leg latches only on its SDP's or its SIP's host (issue 11).
        self.latch_on_signalling_host = latch_on_signalling_host
        # Swapped whole when an employee changes: names, and whose telephony is off.
        self.employees = Employees()
        # (Call-ID, our tag) of every dialog and fork → its call, or what
        # is left of it for a while after it ended.
        self.dialogs: dict[tuple[str, str], Call | _Ended] = {}
        self.by_invite: dict[ServerTransaction, Call] = {}
        self.ringing_or_talking: Counter[str] = Counter()
        # Calls on each external line: all of them, and those we placed.
        self.trunk_calls: Counter[int] = Counter()
        self.trunk_outgoing: Counter[int] = Counter()
        self.calls = 0
        # Every Call object still alive, ended or not: an ended call must go
        # at once (`_Ended` answers for it), so this is the calls in progress.
        self.in_memory: weakref.WeakSet[Call] = weakref.WeakSet()
        self.setup_delays: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # --- requests from the SIP service --------------------------------------

    def invite(
        self,
        request: Request,
        transaction: ServerTransaction,
        *,
        source: str,
        peer: object,
        transport: str,
    ) -> Response | Drop | None:
        """A new INVITE: find who calls (an external line by its address and
        transport, or an internal line by digest), route it, check the
        limits, and start the call. Returns the response to send now, if any."""
        now = self.sip.time()
        tag = new_tag()
        dialplan = self.dialplan
        trunk = dialplan.trunk_for_source(source, transport)
        if trunk is not None:
            admitted = self._provider_admitted(request, trunk, source=source, now=now, tag=tag)
            if admitted is not None:
                return admitted
            plan: Plan | Response = self._from_trunk(request, trunk, dialplan, tag)
        elif dialplan.is_provider_address(source) or self._poses_as_a_provider(request, dialplan):
            # A provider's call from an address that is none of its lines',
            # or from a line's address over another transport than the
            # line's (UDP is trivially spoofed): refused, and counted like a
            # failed authentication.
            if self.authenticator.guard.failed(source, now) is not None:
                return DROP
            log_event(logger, logging.INFO, "call.stranger", src=source, transport=transport)
            return self._reply(request, 403, "Forbidden", to_tag=tag)
        else:
            lines = self.lines()
            outcome = self.authenticator.check(
                request,
                source=source,
                ha1_of=lines.ha1_of,
                algorithms_of=lines.digest_algorithms_of,
                now=now,
                to_tag=tag,
            )
            if not isinstance(outcome, Authenticated):
                return outcome
            plan = self._from_line(request, lines.by_username[outcome.username], dialplan, tag)
        if isinstance(plan, Response):
            return plan
        return self._admit(request, transaction, peer, plan, now)

    def _provider_admitted(
        self, request: Request, trunk: Trunk, *, source: str, now: float, tag: str
    ) -> Response | Drop | None:
        """None when the provider's INVITE may go on; otherwise what to answer:
        a 407 challenge (or DROP) for a line that authenticates its provider's
        calls, a 400 or 414 for a dialled number too long for any rule or record."""
        if trunk.incoming_auth:
            outcome = self.authenticator.check(
                request, source=source, ha1_of=self._ha1_of(trunk), now=now, to_tag=tag
            )
            if not isinstance(outcome, Authenticated):
                return outcome
        # A caller's number too long is no reason to lose the call: it is
        # taken as anonymous once normalized (which no rule sees whole). The
        # line's own user (a registered line's Contact) is no number either.
        own = (trunk.username, trunk.login)
        for header, uri in (("Request-URI", request.uri), ("To", request.to.uri)):
            user = _user_of(uri)
            if len(user) > MAX_NUMBER_LENGTH and user not in own:
                return self._number_too_long(request, header, tag)
        return None

    def _number_too_long(self, request: Request, header: str, tag: str) -> Response:
        # 414 is the status RFC 3261 has for a Request-URI too long to read.
        status = 414 if header == "Request-URI" else 400
        log_event(logger, logging.INFO, "call.refused", status=status, cause="number too long")
        return self._reply(request, status, f"{header} Number Too Long", to_tag=tag)

    def _ha1_of(self, trunk: Trunk) -> HA1Lookup:
        """The HA1 of the line's own login and password (the provider signs
        with what we sign in with); nothing for any other username."""
        realm = self.authenticator.digest.realm

        def ha1_of(username: str, algorithm: str) -> str | None:
            if not trunk.password or username != trunk.auth_username:
                return None
            try:
                return compute_ha1(username, realm, trunk.password, algorithm)
            except DigestError:
                return None  # an algorithm we do not offer

        return ha1_of

    @staticmethod
    def _poses_as_a_provider(request: Request, dialplan: Dialplan) -> bool:
        """An INVITE without credentials to one of our external lines' own
        numbers: what a provider sends, not a phone."""
        if "Proxy-Authorization" in request.headers:
            return False
        own = dialplan.own_numbers
        return _user_of(request.uri) in own or _user_of(request.to.uri) in own

    def _from_line(
        self, request: Request, caller: Line, dialplan: Dialplan, tag: str
    ) -> Plan | Response:
        """A call an internal line dials: another line, or out through the
        outgoing rules."""
        raw = _user_of(request.uri)
        dialled = bounds.number(raw)
        plan = Plan(
            tag=tag,
            started=self.wallclock(),
            direction="internal",
            caller_number=caller.number,
            callee_number=dialled or bounds.printable(raw, bounds.NUMBER_MAX),
            caller_line=caller,
            record_line=caller,
        )
        if dialled is None:
            # No number of ours or a provider's can be this: letters, a
            # control character, or more digits than any number has.
            return self._refuse(request, plan, 404, "Not Found", "failed", "invalid number")
        if caller.disabled or not self.employees.may_use_telephony(caller.employee_id):
            return self._refuse(
                request, plan, 403, "Telephony disabled", "rejected", "telephony disabled"
            )
        callee = self.lines().by_number.get(dialled)
        if callee is not None:
            return replace(plan, callee_line=callee, record_line=callee)
        decision, full = None, False
        for decision in dialplan.router.candidates(
            "outgoing", external_line_id=None, source=caller.number, destination=dialled
        ):
            action = decision.action
            if action.type == "deny":
                return self._refuse(request, plan, 403, "Forbidden", "rejected", "denied by rule")
            if action.type == "internal_line":
                callee = self.lines().by_number.get(decision.destination)
                if callee is not None:
                    return replace(plan, callee_line=callee, record_line=callee)
                continue
            if action.type != "external_line" or not (action.target or "").isdigit():
                continue
            trunk = dialplan.trunks.get(int(action.target or 0))
            if trunk is None or not trunk.active or trunk.address is None:
                continue
            if not self._has_room(trunk, outgoing=True):
                full = True
                continue  # the next rule may take another line
            return self._via_trunk(plan, trunk, decision.destination, dialplan)
        if decision is not None:
            cause = "external lines full" if full else "no usable external line"
            return self._refuse(request, plan, 503, "Service Unavailable", "failed", cause)
        if not _looks_external(dialled):
            return self._refuse(request, plan, 404, "Not Found", "failed", "unknown number")
        return self._refuse(request, plan, 403, "No Route", "rejected", "no outgoing route")

    def _via_trunk(self, plan: Plan, trunk: Trunk, number: str, dialplan: Dialplan) -> Plan:
        def outgoing(value: str, field: Field) -> str:
            return dialplan.normalizer.normalize_number(
                value, direction="outgoing", external_line_id=trunk.id, field=field
            )

        ours = trunk.username or trunk.login
        sent, caller_id = outgoing(number, "request_uri"), outgoing(ours, "from")
        host = format_hostport(trunk.host, trunk.port)
        target = Target(
            peer=self.sip.peer_at(trunk.transport, trunk.address or trunk.host, trunk.port),
            uri=sip_uri(sent, host),
            from_user=caller_id,
            from_host=host,
            to_user=outgoing(number, "to"),
            trunk=trunk,
            asserted_user=outgoing(ours, "pai"),
        )
        return replace(
            plan,
            direction="outgoing",
            callee_number=to_e164(number, trunk.default_region) or number,
            callee_raw=number,
            trunk_out=trunk,
            targets=(target,),
            client_number=to_e164(number, trunk.default_region) or number,
            region=trunk.default_region,
        )

    def _from_trunk(
        self, request: Request, trunk: Trunk, dialplan: Dialplan, tag: str
    ) -> Plan | Response:
        """A call from an external line: normalize its numbers, then the
        incoming rules say which internal line rings."""
        normalizer = dialplan.normalizer
        caller_raw = _user_of(request.from_.uri)
        dialled = _user_of(request.uri)
        if dialled in (trunk.username, trunk.login) and _user_of(request.to.uri):
            dialled = _user_of(request.to.uri)  # a registered line: the DID is in To
        caller = normalizer.normalize_number(
            caller_raw, direction="incoming", external_line_id=trunk.id, field="from"
        )
        destination = normalizer.normalize_number(
            dialled, direction="incoming", external_line_id=trunk.id, field="request_uri"
        )
        # A withheld or garbled caller is still a call: it is taken as anonymous
        # (RFC 3323), what it sent kept, made printable, as its raw number.
        client = bounds.number(to_e164(caller, trunk.default_region) or caller) or ANONYMOUS
        number = bounds.number(destination)
        plan = Plan(
            tag=tag,
            started=self.wallclock(),
            direction="incoming",
            caller_number=client,
            caller_raw=bounds.printable(caller_raw, bounds.RAW_MAX),
            callee_number=number or bounds.printable(destination, bounds.NUMBER_MAX),
            callee_raw=bounds.printable(dialled, bounds.RAW_MAX),
            trunk_in=trunk,
            client_number=client,
            region=trunk.default_region,
        )
        if number is None:
            return self._refuse(request, plan, 404, "Not Found", "failed", "invalid number")
        if not self._has_room(trunk, outgoing=False):
            return self._refuse(request, plan, 503, "Service Unavailable", "failed", "line full")
        decision = dialplan.router.route(
            "incoming",
            external_line_id=trunk.id,
            source=plan.caller_number,
            destination=destination,
        )
        if (
            decision is None
            # The default rule before an admin points it at a line.
            or (decision.rule.is_default and not decision.action.target)
            or decision.action.type in ("ivr", "external_line")
        ):
            return self._refuse(request, plan, 480, "Temporarily Unavailable", "failed", "no route")
        if decision.action.type == "deny":
            return self._refuse(request, plan, 603, "Decline", "rejected", "denied by rule")
        callee = self.lines().by_number.get(decision.destination)
        if callee is None:
            return self._refuse(request, plan, 404, "Not Found", "failed", "unknown internal line")
        return replace(plan, callee_line=callee, record_line=callee, callee_number=callee.number)

    def _has_room(self, trunk: Trunk, *, outgoing: bool) -> bool:
        if self.trunk_calls[trunk.id] >= trunk.total_lines:
            return False
        return not outgoing or self.trunk_outgoing[trunk.id] < trunk.outgoing_lines

    def begin_record(self, plan: Plan, sip_call_id: str) -> str:
        """Begin the record of the call `plan` describes; its id."""
        line = plan.record_line
        return self.recorder.begin(
            at=plan.started,
            direction=plan.direction,
            caller_number=plan.caller_number,
            callee_number=plan.callee_number,
            caller_raw=plan.caller_raw,
            callee_raw=plan.callee_raw,
            internal_line_id=line.id if line else None,
            employee_id=line.employee_id if line else None,
            sip_call_id=sip_call_id,
            client_number=plan.client_number,
        )

    def _refuse(
        self, request: Request, plan: Plan, status: int, reason: str, record: str, cause: str
    ) -> Response:
        """Answer `status` and leave the record of a call that never rang."""
        call_id = self.begin_record(plan, request.call_id)
        # A refused call is in the customer's history too.
        self.identify_client(call_id, plan)
        self.recorder.ended(
            call_id,
            at=plan.started,
            answered_at=None,
            status=record,
            hangup_side="system",
            hangup_cause=cause,
        )
        log_event(logger, logging.INFO, "call.refused", status=status, cause=cause)
        return self._reply(request, status, reason, to_tag=plan.tag)

    def _admit(
        self, request: Request, transaction: ServerTransaction, peer: object, plan: Plan, now: float
    ) -> Response:
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and max_forwards.strip() == "0":
            return self._refuse(request, plan, 483, "Too Many Hops", "failed", "too many hops")
        try:
            # None: a delayed offer (RFC 3261 §13.2.1), which the callee's 2xx makes.
            offer = _sdp_of(request)
            audio = None if offer is None else _checked_audio(offer, self.media)
        except SdpError as error:
            status = error.status if error.status in (415, 488) else 488
            return self._refuse(
                request, plan, status, "Not Acceptable Here", "failed", f"bad SDP: {error.reason}"
            )
        callee = plan.callee_line
        if callee is not None:
            if callee.disabled or not self.employees.may_use_telephony(callee.employee_id):
                return self._refuse(
                    request,
                    plan,
                    480,
                    "Temporarily Unavailable",
                    "rejected",
                    "telephony disabled",
                )
            if self.ringing_or_talking[callee.number] >= callee.max_incoming_calls:
                return self._refuse(request, plan, 486, "Busy Here", "busy", "incoming call limit")
            bindings = self.location.bindings(callee.number, now)
            if not bindings:
                return self._refuse(
                    request, plan, 480, "Temporarily Unavailable", "failed", "no registered device"
                )
            plan = replace(plan, targets=tuple(self._device(b, plan) for b in bindings))
        call = Call(
            self,
            plan=plan,
            invite=request,
            transaction=transaction,
            peer=peer,
            offer=offer,
            audio=audio,
            received_at=now,
        )
        self.by_invite[transaction] = call
        self._reserve(plan)
        self._spawn(call.setup())
        return self._reply(request, 100, to_tag=None)

    def _reserve(self, plan: Plan) -> None:
        """Count an admitted call against its lines' limits (`Call._end` gives it back)."""
        if plan.callee_line is not None:
            self.ringing_or_talking[plan.callee_line.number] += 1
        for trunk in (plan.trunk_in, plan.trunk_out):
            if trunk is not None:
                self.trunk_calls[trunk.id] += 1
        if plan.trunk_out is not None:
            self.trunk_outgoing[plan.trunk_out.id] += 1
        self.calls += 1

    def _device(self, binding: Binding, plan: Plan) -> Target:
        return Target(
            peer=self.sip.peer_for(binding),
            uri=binding.uri.copy(),
            from_user=plan.caller_number,
            from_host=self.media_address,
            to_user=plan.callee_number,
            routes=binding.path,
        )

    def cancel(self, invite: ServerTransaction) -> str | None:
        """The caller cancelled `invite`: returns the To tag for the 200 to
        the CANCEL, or None when no call of ours has this INVITE."""
        call = self.by_invite.get(invite)
        if call is None:
            return None
        call.caller_cancelled()
        return call.tag

    def in_dialog(self, request: Request, transaction: ServerTransaction) -> Response | None:
        """A request with a To tag (not ACK, CANCEL or OPTIONS): ours to
        answer, now (the response) or later (None)."""
        call = self.dialogs.get((request.call_id, request.to.tag or ""))
        if isinstance(call, _Ended):
            return call.answer(request, self._reply)
        side = None if call is None else call.side_of(request.call_id)
        if call is None or side is None:
            return self._reply(request, 481)
        refused = side.dialog.receive_request(request)
        if refused is not None:
            return refused
        return call.request(side, request, transaction)

    def ack(self, request: Request) -> None:
        """An ACK outside any transaction: for a 2xx of ours."""
        call = self.dialogs.get((request.call_id, request.to.tag or ""))
        if isinstance(call, Call):
            call.acked(request)

    def stray_response(self, response: Response) -> None:
        """A response no transaction waits for. A 2xx is ours to ACK (the
        INVITE transaction hands over after the first): again for a
        retransmission, and ACK and BYE for one no call can use."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return
        call = self.dialogs.get((response.call_id, response.from_.tag or ""))
        if isinstance(call, Call):
            call.stray_answer(response)
        elif call is not None and call.ack is not None and call.remote_tag == response.to.tag:
            ack = parse(call.ack)
            assert isinstance(ack, Request)
            self.sip.send_ack(ack, call.peer)

    def _forget_ended(self, ended: list[tuple[tuple[str, str], _Ended]]) -> None:
        dialogs = self.dialogs
        for key, stub in ended:
            if dialogs.get(key) is stub:
                del dialogs[key]

    # --- for the calls --------------------------------------------------------

    def _reply(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response:
        return make_response(
            request,
            status,
            reason,
            to_tag=to_tag if to_tag is not None or status == 100 else new_tag(),
            headers=[*(headers or []), ("Server", self.user_agent)],
            body=body,
        )

    def next_hop(self, dialog: Dialog, flow: object) -> object:
        """Where the in-dialog requests of `dialog` go: its first route, when
        proxies record-routed it (RFC 3261 §12.2.1.1), else back on `flow`."""
        if not dialog.route_set:
            return flow
        return self.sip.next_hop(dialog.route_set[0].uri, flow)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def use_employees(self, employees: Employees) -> None:
        """Swap in a new snapshot of the employees (effective for the next call)."""
        self.employees = employees
        log_event(
            logger,
            logging.INFO,
            "pbx.employees_loaded",
            count=len(employees),
            telephony_disabled=len(employees.disabled),
        )

    def identify_client(
        self, record: str, plan: Plan, then: Callable[[Identity], None] | None = None
    ) -> asyncio.Task[None] | None:
        """Look the customer's number of `plan` up in the CRM, in the
        background; the result goes on the call record `record` (one card
        linked, or several listed), then to `then`. None when there is
        nothing to look up (an internal call, or no CRM)."""
        identify = self.identify
        number, region = plan.client_number, plan.region
        if identify is None or number is None or region is None:
            return None

        async def look_up() -> None:
            try:
                identity = await identify(number, region)
            except Exception as error:
                log_event(logger, logging.WARNING, "call.identify_failed", error=repr(error))
                return
            card = identity.card
            self.recorder.identified(
                record,
                card=(card.type, card.id) if card is not None else None,
                matches=[m.as_dict() for m in identity.matches] if card is None else None,
            )
            if then is not None:
                then(identity)

        return self._spawn(look_up())

    def publish(
        self, call: Call, type: str, *, to: Iterable[int] | None = None, **data: Any
    ) -> None:
        """Send the event `type` of `call` to the employees of its lines (or `to`)."""
        if self.events is None:
            return
        plan = call.plan
        self.events.publish(
            type,
            call.record,
            employees=plan.employees if to is None else to,
            at=self.wallclock(),
            direction=plan.direction,
            caller_number=plan.caller_number,
            callee_number=plan.callee_number,
            client_number=plan.client_number,
            line=plan.record_line.number if plan.record_line else None,
            **data,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call.task_failed", exc_info=task.exception())

    def _note_setup_delay(self, seconds: float) -> None:
        samples = self.setup_delays
        if len(samples) < _SETUP_DELAY_SAMPLES:
            samples.append(seconds)
        else:  # reservoir sampling keeps a fair sample of a long run
            slot = random.randrange(self.calls)
            if slot < _SETUP_DELAY_SAMPLES:
                samples[slot] = seconds

    def stats(self) -> dict[str, object]:
        """Counters for the log at shutdown and for benchmarks."""
        delays = sorted(self.setup_delays)

        def percentile(share: float) -> float:
            if not delays:
                return 0.0
            return round(delays[min(len(delays) - 1, int(share * len(delays)))] * 1000, 3)

        return {
            "calls": self.calls,
            "active": len(self.by_invite),
            "calls_in_memory": len(self.in_memory),
            "setup_delay_p50_ms": percentile(0.50),
            "setup_delay_p99_ms": percentile(0.99),
        }

    async def close(self) -> None:
        """End every call (BYE and CANCEL go out; records are closed)."""
        calls = {*self.by_invite.values(), *self.dialogs.values()}
        for call in list(calls):
            if isinstance(call, Call):
                call.shut_down()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(eq=False)
class Call:
    """One call: from an internal line or an external line, to the devices
    of an internal line or out through an external line."""

    b2bua: B2bua
    plan: Plan
    invite: Request
    transaction: ServerTransaction
    peer: object
    # The caller's offer and its audio; None for a delayed offer, where the
    # callee's 2xx carries the offer and the caller's ACK the answer.
    offer: SessionDescription | None
    audio: _Media | None
    received_at: float
    phase: Phase = Phase.SETUP
    record: str = ""
    forks: list[Fork] = field(default_factory=list)
    caller_side: Side | None = None
    callee_side: Side | None = None
    session: MediaSession | None = None
    caller_leg: Leg | None = None
    callee_leg: Leg | None = None
    answered_at: datetime | None = None
    # A re-INVITE being relayed: from which side, its transaction and offer
    # (None: it had none, and the other side's 2xx makes it).
    reinvite: tuple[Side, ServerTransaction, SessionDescription | None] | None = None
    # The CRM lookup of the customer's number, and what it found.
    lookup: asyncio.Task[None] | None = None
    identity: Identity | None = None
    # `ringing` went out (every other event of the call follows it).
    rang: bool = False
    # The roles ("caller", "callee") that put the call on hold.
    held_by: set[str] = field(default_factory=set)
    # The side whose 2xx offered (a delayed offer's callee, or the side a
    # re-INVITE without SDP reached): that 2xx waits for our ACK until the
    # other side's ACK brings the answer our ACK must carry.
    awaiting_answer: Side | None = None
    recording: Recording | None = None
    _timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        plan = self.plan
        self.b2bua.in_memory.add(self)
        self.record = self.b2bua.begin_record(plan, self.invite.call_id)
        # Beside the media setup, so the devices' INVITEs do not wait for it.
        self.lookup = self.b2bua.identify_client(self.record, plan, then=self._identified)
        log_event(
            logger,
            logging.DEBUG,
            "call.started",
            record=self.record,
            direction=plan.direction,
            caller=plan.caller_number,
            callee=plan.callee_number,
            forks=len(plan.targets),
        )

    @property
    def tag(self) -> str:
        return self.plan.tag

    # --- setup and ringing ----------------------------------------------------

    async def setup(self) -> None:
        b2bua = self.b2bua
        session = self.session = b2bua.media.create_session(
            self.record, on_timeout=lambda _: self.media_timed_out()
        )
        try:
            self.caller_leg = await session.add_leg("caller")
            self.callee_leg = await session.add_leg("callee")
        except MediaError as error:
            if self.phase is not Phase.SETUP:
                return  # the call ended while the ports were bound
            log_event(logger, logging.WARNING, "call.no_media_ports", error=str(error))
            self._fail(503, "Service Unavailable", "failed", "no media ports")
            return
        if self.phase is not Phase.SETUP:  # cancelled while the ports were bound
            await self._close_media()
            return
        audio = self.audio
        offer = b""  # a delayed offer goes on delayed: the callee's 2xx offers
        if self.offer is not None and audio is not None:
            self._set_remote(self.caller_leg, audio, self.peer)
            offer = self._anchored(self.offer, audio, self.callee_leg)
        for target in self.plan.targets:
            self._fork(target, offer)
        self.phase = Phase.RINGING
        if all(fork.final for fork in self.forks):  # every device failed at once
            self._all_forks_failed()
            return
        b2bua._note_setup_delay(b2bua.sip.time() - self.received_at)
        self._timer = asyncio.get_running_loop().call_later(
            self.plan.ring_timeout, self._ring_timeout
        )
        await self._announce_ringing()

    async def _announce_ringing(self) -> None:
        """`ringing` as soon as the CRM has answered, or with the bare number
        when it has not by the deadline (counted from the INVITE)."""
        lookup = self.lookup
        if lookup is not None and not lookup.done():
            left = self.received_at + self.b2bua.identify_deadline - self.b2bua.sip.time()
            if left > 0:
                await asyncio.wait({lookup}, timeout=left)
        if self.phase is Phase.RINGING:
            self._ring_event()

    def _ring_event(self) -> None:
        """Publish `ringing` once, with what identification knows by now."""
        if self.rang:
            return
        self.rang = True
        plan, identity = self.plan, self.identity
        matches = [m.as_dict() for m in identity.matches] if identity is not None else []
        details: dict[str, Any] = {"matches": matches}
        if plan.direction == "internal":
            # The other party is a colleague, not a customer: who is calling.
            caller = plan.caller_line
            employee: dict[str, object] | None = None
            if caller is not None and caller.employee_id is not None:
                staff = self.b2bua.employees.by_id.get(caller.employee_id)
                # One created since the last reload: its id, the name unknown yet.
                employee = staff.as_dict() if staff else {"id": caller.employee_id, "name": None}
            details["employee"] = employee
        self.b2bua.publish(self, "ringing", **details)

    def _identified(self, identity: Identity) -> None:
        self.identity = identity
        if self.rang and identity.matches:
            # `ringing` went out with the bare number: the cards come after it.
            self.b2bua.publish(self, "identified", matches=[m.as_dict() for m in identity.matches])

    def _fork(self, target: Target, sdp: bytes) -> None:
        b2bua = self.b2bua
        display = self.invite.from_.display_name
        if display and target.trunk is None:
            display = bounds.printable(display, bounds.RAW_MAX)
        else:
            display = None
        from_ = name_addr(target.from_user, target.from_host, display_name=display, tag=new_tag())
        max_forwards = self.invite.headers.get("Max-Forwards")
        headers = Headers.of(
            ("Max-Forwards", str(min(70, int(max_forwards) - 1)) if max_forwards else "70"),
            ("From", from_),
            ("To", name_addr(target.to_user, target.from_host)),
            ("Call-ID", new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", b2bua.sip.contact(target.from_user, target.peer)),
            ("Allow", ALLOW),
            ("User-Agent", b2bua.user_agent),
        )
        if sdp:
            headers.add(*_SDP_TYPE)
        if target.asserted_user:
            headers.add("P-Asserted-Identity", name_addr(target.asserted_user, target.from_host))
        for route in target.routes:
            headers.add("Route", str(route))
        request = Request("INVITE", target.uri.copy(), headers, sdp)
        fork = Fork(target.peer, request, trunk=target.trunk)
        self.forks.append(fork)
        b2bua.dialogs[(request.call_id, request.from_.tag or "")] = self
        self._send_fork(fork)

    def _send_fork(self, fork: Fork) -> None:
        self.b2bua.sip.send_request(
            fork.request, fork.peer, lambda txn, r: self._fork_response(fork, txn, r)
        )

    def _authenticate(self, fork: Fork, response: Response) -> bool:
        """Answer an external line's 401/407 with its login, once."""
        trunk = fork.trunk
        if trunk is None or fork.authenticated or self.phase is not Phase.RINGING:
            return False
        proxy = response.status == 407
        try:
            challenge = select_challenge(
                [
                    parse_challenge(value)
                    for value in response.headers.get_all(
                        "Proxy-Authenticate" if proxy else "WWW-Authenticate"
                    )
                ]
            )
        except (DigestError, ValueError):
            return False
        old = fork.request
        credentials = answer_challenge(
            challenge,
            method="INVITE",
            uri=str(old.uri),
            username=trunk.auth_username,
            password=trunk.password,
        )
        headers = Headers([f for f in old.headers._fields if f[0] != "via"])
        headers.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        headers.add(
            "Proxy-Authorization" if proxy else "Authorization", credentials.to_header_value()
        )
        fork.request = Request("INVITE", old.uri.copy(), headers, old.body)
        fork.authenticated = True
        fork.provisional = False
        self._send_fork(fork)
        return True

    def _fork_response(
        self, fork: Fork, transaction: ClientTransaction, response: Response
    ) -> None:
        fork.transaction = transaction
        status = response.status
        if status < 200:
            if status > 100 or not fork.provisional:
                fork.provisional = True
                if fork.cancel_reason is not None and not fork.cancelled:
                    self._send_cancel(fork)
            if status > 100 and self.phase is Phase.RINGING and not fork.cancelled:
                self._ringing(fork, response)
            return
        if status in (401, 407) and self._authenticate(fork, response):
            return
        fork.final = status
        if status >= 300:
            if self.phase is Phase.RINGING and all(f.final for f in self.forks):
                self._all_forks_failed()
            return
        # A 2xx: the winner or a late one. (A transaction hands only its first
        # 2xx to us; one that comes again is a stray, see `stray_answer`.)
        if self.phase is Phase.RINGING:
            self._answered(fork, response)
        else:
            self._refuse_late_answer(fork, response)

    def _ringing(self, fork: Fork, response: Response) -> None:
        """Relay a 180 or 183 to the caller; early media flows from a 183's SDP."""
        body = b""
        try:
            # With a delayed offer a provisional SDP would be an offer, which
            # only a reliable provisional (100rel) may carry: not relayed.
            sdp = None if self.offer is None else _sdp_of(response)
        except SdpError:
            sdp = None
        if sdp is not None and self.callee_leg is not None and self.caller_leg is not None:
            try:
                audio = _checked_audio(sdp, self.b2bua.media)
                self._set_remote(self.callee_leg, audio, fork.peer)
                self._connect()
                body = self._anchored(sdp, audio, self.caller_leg)
            except (SdpError, MediaError):
                body = b""
        headers = [("Contact", self.b2bua.sip.contact(self.plan.callee_number, self.peer))]
        if body:
            headers.append(_SDP_TYPE)
        self._respond_caller(response.status, response.reason, headers=headers, body=body)
        if body:  # early media: both peers have our SDP, and we have theirs
            self._sdp_sent(self.caller_leg, self.callee_leg)

    def _read_answer(
        self, fork: Fork, response: Response, all_failed: Callable[[], None]
    ) -> tuple[Dialog, SessionDescription, _Media] | None:
        """The dialog, the SDP and its audio of a fork's 2xx; None when it is unusable:
        then it is ACKed and BYEd, the fork counts as failed, and
        `all_failed()` runs if it was the last fork."""
        try:
            dialog = Dialog.from_uac(fork.request, response)
            answer = _sdp_of(response)
            if answer is None:
                raise SdpError("the 2xx has no SDP answer", status=488)
            return dialog, answer, _checked_audio(answer, self.b2bua.media)
        except (DialogError, SdpError) as error:
            log_event(logger, logging.INFO, "call.bad_answer", record=self.record, error=str(error))
            self._refuse_late_answer(fork, response)
            fork.final = 502
            if all(f.final for f in self.forks):
                all_failed()
            return None

    def _answered(self, fork: Fork, response: Response) -> None:
        b2bua = self.b2bua
        read = self._read_answer(fork, response, self._all_forks_failed)
        if read is None:
            return
        dialog, answer, audio = read
        assert self.caller_leg is not None and self.callee_leg is not None
        callee = self.callee_side = Side(
            "callee",
            dialog,
            self.b2bua.next_hop(dialog, fork.peer),
            self.callee_leg,
            fork.request.top_via.transport != "UDP",
        )
        if self.offer is None:
            self.awaiting_answer = callee  # its 2xx offered: ACKed with the caller's answer
        else:
            self._acknowledge(callee)
        for other in self.forks:
            if other is not fork:
                self._cancel_fork(other, _COMPLETED_ELSEWHERE)
        self._set_remote(self.callee_leg, audio, fork.peer)
        self._connect()
        caller = self.caller_side = self._caller_side()
        body = self._anchored(answer, audio, self.caller_leg)
        caller.sdp_sent = body
        self._timer_cancel()
        self.answered_at = b2bua.wallclock()
        self.phase = Phase.ANSWERED
        contact = ("Contact", b2bua.sip.contact(self.plan.callee_number, self.peer))
        ok = self._respond_caller(200, "OK", headers=[contact, _SDP_TYPE], body=body)
        if ok is not None:
            self._until_acked(caller, self.transaction, ok)
        if self.offer is not None:  # a delayed offer's answers come in the ACKs
            self._sdp_sent(self.caller_leg, self.callee_leg)
        b2bua.by_invite.pop(self.transaction, None)
        b2bua.recorder.answered(self.record, self.answered_at)
        if b2bua.recordings is not None:
            self.recording = b2bua.recordings.start(
                self.record, self.plan, caller=self.caller_leg, callee=self.callee_leg
            )
        self._ring_event()
        b2bua.publish(self, "answered")
        log_event(logger, logging.DEBUG, "call.answered", record=self.record)
        if self.plan.max_talk_duration > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self.plan.max_talk_duration, self._talk_limit
            )

    def _caller_side(self) -> Side:
        """The caller's side once the callee answers: the dialog our 200 to
        its INVITE creates."""
        assert self.caller_leg is not None
        local = Dialog.from_uas(self.invite, self.tag, self._our_contact_uri())
        self.b2bua.dialogs[(self.invite.call_id, self.tag)] = self
        return Side(
            "caller",
            local,
            self.b2bua.next_hop(local, self.peer),
            self.caller_leg,
            self.invite.top_via.transport != "UDP",
        )

    def _refuse_late_answer(self, fork: Fork, response: Response) -> None:
        """A 2xx we cannot use (another device won, or it is unusable): ACK and BYE it."""
        try:
            dialog = Dialog.from_uac(fork.request, response)
        except DialogError:
            return
        peer = self.b2bua.next_hop(dialog, fork.peer)
        ack = dialog.create_request("ACK")
        self.b2bua.sip.send_ack(ack, peer)
        bye = dialog.create_request("BYE", headers=[("Reason", _COMPLETED_ELSEWHERE)])
        self.b2bua.sip.send_request(bye, peer, _ignore)

    def _all_forks_failed(self) -> None:
        statuses = [f.final or 500 for f in self.forks]
        if any(s in (486, 600) for s in statuses):
            self._fail(486, "Busy Here", "busy", "busy", side="callee")
        elif any(s in (603, 607, 403) for s in statuses):
            self._fail(603, "Decline", "rejected", "declined", side="callee")
        elif all(s in (488, 606) for s in statuses):
            # The relay does not transcode: the caller must learn it offered
            # nothing the callee takes, not that the callee is away.
            self._fail(488, "Not Acceptable Here", "failed", "no codec in common", side="callee")
        else:
            worst = max(statuses)
            self._fail(480, "Temporarily Unavailable", "failed", f"devices answered {worst}")

    def caller_cancelled(self) -> None:
        if self.phase in (Phase.SETUP, Phase.RINGING):
            self._fail(487, "Request Terminated", "cancelled", "caller cancelled", side="caller")

    def _ring_timeout(self) -> None:
        self._timer = None
        if self.phase is Phase.RINGING:
            self._fail(480, "Temporarily Unavailable", "missed", "ring timeout")

    def _fail(
        self, status: int, reason: str, record: str, cause: str, *, side: str = "system"
    ) -> None:
        """End a call that was never answered."""
        reason_header = reason_value(status, "Caller cancelled" if status == 487 else reason)
        for fork in self.forks:
            self._cancel_fork(fork, reason_header)
        self._respond_caller(status, reason)
        self._end(record, side, cause)

    def _cancel_fork(self, fork: Fork, reason: str) -> None:
        if fork.final is not None or fork.cancel_reason is not None:
            return
        fork.cancel_reason = reason
        if fork.provisional:
            self._send_cancel(fork)

    def _send_cancel(self, fork: Fork) -> None:
        fork.cancelled = True
        # The CANCEL keeps the INVITE's Via (its branch names what it cancels).
        cancel = make_cancel(fork.request)
        if fork.cancel_reason:
            cancel.headers.add("Reason", fork.cancel_reason)
        self.b2bua.sip.send_request(cancel, fork.peer, _ignore)

    # --- the answered call ----------------------------------------------------

    def side_of(self, call_id: str) -> Side | None:
        for side in (self.caller_side, self.callee_side):
            if side is not None and side.dialog.call_id == call_id:
                return side
        return None

    def other(self, side: Side) -> Side:
        other = self.callee_side if side is self.caller_side else self.caller_side
        assert other is not None
        return other

    def request(
        self, side: Side, request: Request, transaction: ServerTransaction
    ) -> Response | None:
        method = request.method
        reply = self.b2bua._reply
        if method == "BYE":
            if self.phase is Phase.ANSWERED:
                self._hang_up(side, "answered", side.role, "normal")
            return reply(request, 200)
        if method == "INVITE":
            return self._reinvited(side, request, transaction)
        if method == "INFO" and self.phase is Phase.ANSWERED:
            self._relay(side, request, transaction)
            return None
        return reply(request, 501, headers=[("Allow", ALLOW)])

    def _relay(self, side: Side, request: Request, transaction: ServerTransaction) -> None:
        """Pass a request (INFO: DTMF, say) to the other side and its answer back."""
        other = self.other(side)
        headers = [
            (name, request.headers.get(name) or "")
            for name in ("Content-Type", "Info-Package")
            if request.headers.get(name)
        ]
        relayed = other.dialog.create_request(request.method, headers=headers, body=request.body)

        def back(_: ClientTransaction, response: Response) -> None:
            if response.status >= 200:
                self.b2bua.sip.respond(
                    transaction, self.b2bua._reply(request, response.status, response.reason)
                )

        self.b2bua.sip.send_request(relayed, other.peer, back)

    def _reinvited(
        self, side: Side, request: Request, transaction: ServerTransaction
    ) -> Response | None:
        reply = self.b2bua._reply
        if self.phase is not Phase.ANSWERED or self.reinvite is not None or side.unacked:
            return reply(request, 491, headers=[("Retry-After", "1")])
        try:
            offer = _sdp_of(request)
            audio = None if offer is None else _checked_audio(offer, self.b2bua.media)
        except SdpError as error:
            return reply(request, 488, error.reason[:80])
        other = self.other(side)
        self.reinvite = (side, transaction, offer)
        # Without an offer (a session refresh, say) it goes on without one:
        # the other side's 2xx offers, and this side's ACK answers.
        body = b"" if offer is None or audio is None else self._anchored(offer, audio, other.media)
        relayed = other.dialog.create_request(
            "INVITE", headers=[("Allow", ALLOW), *([_SDP_TYPE] if body else [])], body=body
        )
        self.b2bua.sip.send_request(
            relayed, other.peer, lambda _, response: self._reinvite_answered(response)
        )
        return None

    def _reinvite_answered(self, response: Response) -> None:
        if response.status < 200 or self.reinvite is None or self.phase is not Phase.ANSWERED:
            return
        side, transaction, offer = self.reinvite
        self.reinvite = None
        other = self.other(side)
        request = transaction.request
        assert isinstance(request, Request)
        reply = self.b2bua._reply
        contact = [("Contact", self.b2bua.sip.contact(self._user_for(side), side.peer))]
        if response.status >= 300:
            self.b2bua.sip.respond(transaction, reply(request, response.status, response.reason))
            if response.status in (408, 481):  # §12.2.1.2: the dialog is gone
                self._hang_up(other, "answered", "system", f"re-INVITE answered {response.status}")
            return
        try:
            other.dialog.receive_response(response)
            answer = _sdp_of(response)
            audio = None if answer is None else _checked_audio(answer, self.b2bua.media)
        except (DialogError, SdpError):
            answer = audio = None
        if offer is None and answer is not None and audio is not None:
            # The other side's 2xx offered: anchored for the side that asked,
            # whose ACK brings the answer; the other side's ACK waits for it.
            self.awaiting_answer = other
            offering, holds = other, audio.holds
        else:
            self._acknowledge(other)
            if offer is None or answer is None or audio is None:
                self.b2bua.sip.respond(transaction, reply(request, 488))
                return
            offered = _audio_of(offer)
            self._set_remote(side.media, offered, side.peer)
            offering, holds = side, offered.holds
        self._set_remote(other.media, audio, other.peer)
        body = side.sdp_sent = self._anchored(answer, audio, side.media)
        ok = reply(request, 200, headers=[*contact, _SDP_TYPE], body=body)
        self.b2bua.sip.respond(transaction, ok)
        self._until_acked(side, transaction, ok)
        if offering is side:  # else the answers come in the ACKs
            self._sdp_sent(side.media, other.media)
        self._note_hold(offering, holds)

    def _note_hold(self, side: Side, holds: bool) -> None:
        """`held` when a side's accepted offer stops it hearing the other,
        `resumed` when one takes that back."""
        if holds == (side.role in self.held_by):
            return
        if holds:
            self.held_by.add(side.role)
        else:
            self.held_by.discard(side.role)
        self.b2bua.publish(self, "held" if holds else "resumed", side=side.role)

    def acked(self, ack: Request) -> None:
        side = self.side_of(ack.call_id)
        if side is None or side.unacked is None:
            return
        _, response = side.unacked
        if ack.cseq.seq == response.cseq.seq:
            side.unacked = None
            if side.retransmit is not None:
                side.retransmit.cancel()
                side.retransmit = None
            if self.awaiting_answer is not None and side is not self.awaiting_answer:
                self._answer_in_ack(side, ack)

    def _answer_in_ack(self, side: Side, ack: Request) -> None:
        """The answer to the other side's offer, in `side`'s ACK: anchored, it
        goes in our ACK of the 2xx that offered. Without a usable one the
        call cannot carry media: that 2xx is ACKed and both sides BYEd."""
        offered = self.awaiting_answer
        assert offered is not None
        self.awaiting_answer = None
        first = offered.ack is None  # a delayed offer's: the call never had media
        try:
            answer = _sdp_of(ack)
            if answer is None:
                raise SdpError("the ACK has no SDP answer", status=488)
            audio = _checked_audio(answer, self.b2bua.media)
        except SdpError as error:
            log_event(
                logger, logging.INFO, "call.bad_answer", record=self.record, error=error.reason
            )
            self._acknowledge(offered)
            self._hang_up(
                None, "failed" if first else "answered", "system", "no SDP answer in the ACK"
            )
            return
        self._set_remote(side.media, audio, side.peer)
        self._acknowledge(offered, body=self._anchored(answer, audio, offered.media))
        self._sdp_sent(side.media, offered.media)

    def reacknowledge(self, response: Response) -> None:
        """Our ACK again, for a 2xx that came again (the ACK of its own INVITE:
        none yet while it waits for the other side's answer)."""
        side = self.side_of(response.call_id)
        if side is not None and side.ack is not None and side.ack.cseq.seq == response.cseq.seq:
            self.b2bua.sip.send_ack(side.ack, side.peer)

    def stray_answer(self, response: Response) -> None:
        """A 2xx that came after its INVITE transaction handed over: a
        retransmission of a side's gets its ACK again; one from a fork that
        lost (or a dialog no side has) is ACKed and BYEd."""
        side = self.side_of(response.call_id)
        if side is not None and side.dialog.remote_tag == response.to.tag:
            self.reacknowledge(response)
            return
        for fork in self._every_fork():
            if fork.request.call_id == response.call_id:
                self._refuse_late_answer(fork, response)
                return

    def _acknowledge(self, side: Side, body: bytes = b"") -> None:
        headers = [_SDP_TYPE] if body else []
        side.ack = side.dialog.create_request("ACK", headers=headers, body=body)
        self.b2bua.sip.send_ack(side.ack, side.peer)

    def _until_acked(self, side: Side, transaction: ServerTransaction, response: Response) -> None:
        """Retransmit our 2xx on an unreliable flow until its ACK (§13.3.1.4);
        after 64*T1 without one the call is over."""
        side.unacked = (transaction, response)
        if side.reliable:
            return
        T1 = DEFAULT_TIMERS.T1
        side.retransmit = asyncio.get_running_loop().call_later(
            T1,
            self._retransmit_2xx,
            side,
            min(2 * T1, DEFAULT_TIMERS.T2),
            self.b2bua.sip.time() + 64 * T1,
        )

    def _retransmit_2xx(self, side: Side, interval: float, give_up_at: float) -> None:
        # A method, not a closure that schedules itself: such a closure is a
        # reference cycle, and it would keep the whole call alive until the
        # garbage collector's next pass over the older objects.
        side.retransmit = None
        if side.unacked is None or self.phase is Phase.ENDED:
            return
        if self.b2bua.sip.time() >= give_up_at:
            side.unacked = None
            self._hang_up(None, "answered", "system", "no ACK")
            return
        transaction, response = side.unacked
        self.b2bua.sip.respond(transaction, response)
        side.retransmit = asyncio.get_running_loop().call_later(
            interval, self._retransmit_2xx, side, min(2 * interval, DEFAULT_TIMERS.T2), give_up_at
        )

    def _talk_limit(self) -> None:
        self._timer = None
        if self.phase is Phase.ANSWERED:
            self._hang_up(None, "answered", "system", "talk limit")

    def media_timed_out(self) -> None:
        if self.phase is Phase.ANSWERED:
            self._hang_up(None, "answered", "system", "media timeout")
        elif self.phase is Phase.RINGING:
            self._fail(480, "Temporarily Unavailable", "failed", "media timeout")

    def shut_down(self) -> None:
        if self.phase is Phase.ANSWERED:
            self._hang_up(None, "answered", "system", "shutdown")
        elif self.phase is not Phase.ENDED:
            self._fail(503, "Service Unavailable", "failed", "shutdown")

    def _hang_up(self, by: Side | None, record: str, hangup_side: str, cause: str) -> None:
        """End an answered call: BYE to every side but the one that hung up."""
        if self.phase is Phase.ENDED:
            return
        if self.awaiting_answer is not None:
            offered, self.awaiting_answer = self.awaiting_answer, None
            self._acknowledge(offered)  # its 2xx first (§13.2.2.4), then the BYE
        for side in (self.caller_side, self.callee_side):
            if side is None or side is by:
                continue
            if side.retransmit is not None:
                side.retransmit.cancel()
            headers = [] if by is not None else [("Reason", reason_value(200, cause))]
            bye = side.dialog.create_request("BYE", headers=headers)
            self.b2bua.sip.send_request(bye, side.peer, _ignore)
        self._end(record, hangup_side, cause)

    # --- common -----------------------------------------------------------------

    def _end(self, record: str, side: str, cause: str) -> None:
        if self.phase is Phase.ENDED:
            return
        self.phase = Phase.ENDED
        b2bua = self.b2bua
        self._timer_cancel()
        if self.recording is not None and b2bua.recordings is not None:
            b2bua.recordings.stop(self.recording, self.caller_leg, self.callee_leg)
        at = b2bua.wallclock()
        b2bua.recorder.ended(
            self.record,
            at=at,
            answered_at=self.answered_at,
            status=record,
            hangup_side=side,
            hangup_cause=cause,
        )
        self._end_events(record, side, cause, at)
        b2bua.by_invite.pop(self.transaction, None)
        plan = self.plan
        if plan.callee_line is not None:
            _release(b2bua.ringing_or_talking, plan.callee_line.number)
        for trunk in (plan.trunk_in, plan.trunk_out):
            if trunk is not None:
                _release(b2bua.trunk_calls, trunk.id)
        if plan.trunk_out is not None:
            _release(b2bua.trunk_outgoing, plan.trunk_out.id)
        log_event(
            logger, logging.INFO, "call.ended", record=self.record, status=record, cause=cause
        )
        b2bua._spawn(self._close_media())
        self._retire()

    def _end_events(self, status: str, side: str, cause: str, at: datetime) -> None:
        """A call that rang ends with `ended`; one nobody answered, coming in
        to a line, is also `missed` for that line's employee (once per call,
        however many devices rang)."""
        if not self.forks:
            return  # it never rang: no event was sent for it
        self._ring_event()
        plan, b2bua = self.plan, self.b2bua
        callee = plan.callee_line
        if (
            status in ("missed", "cancelled")
            and plan.direction != "outgoing"
            and callee is not None
            and callee.employee_id is not None
        ):
            b2bua.publish(self, "missed", to=[callee.employee_id], status=status)
        b2bua.publish(
            self,
            "ended",
            status=status,
            talk_seconds=talk_seconds(self.answered_at, at),
            hangup_side=side,
            cause=cause,
        )

    def _every_fork(self) -> list[Fork]:
        """Every INVITE this call sent out, answered or not."""
        return self.forks

    def _dialog_keys(self) -> list[tuple[str, str]]:
        """The keys of `B2bua.dialogs` this call may hold."""
        keys = [(self.invite.call_id, self.tag)]
        keys += [(f.request.call_id, f.request.from_.tag or "") for f in self._every_fork()]
        return keys

    def _retire(self) -> None:
        """Put in this ended call's place in the dialogs what still answers
        for them (`_Ended`), for 64*T1."""
        b2bua, sides = self.b2bua, (self.caller_side, self.callee_side)
        by_call_id = {side.dialog.call_id: side for side in sides if side is not None}
        ended: list[tuple[tuple[str, str], _Ended]] = []
        for key in self._dialog_keys():
            if b2bua.dialogs.get(key) is not self:
                continue
            side = by_call_id.get(key[0])
            stub = (
                _Ended()
                if side is None
                else _Ended(
                    side.ack.to_bytes() if side.ack is not None else None,
                    side.peer,
                    side.dialog.remote_tag,
                )
            )
            b2bua.dialogs[key] = stub
            ended.append((key, stub))
        if ended:
            asyncio.get_running_loop().call_later(_LINGER, b2bua._forget_ended, ended)

    async def _close_media(self) -> None:
        if self.session is not None:
            await self.session.close()

    def _timer_cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _respond_caller(
        self,
        status: int,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response | None:
        """Respond to the caller's INVITE while its transaction can take it."""
        sent = self.transaction.last_response
        if sent is not None and sent.status >= 200:
            return None
        response = self.b2bua._reply(
            self.invite, status, reason, to_tag=self.tag, headers=headers, body=body
        )
        self.b2bua.sip.respond(self.transaction, response)
        return response

    def _connect(self) -> None:
        assert self.session is not None and self.caller_leg and self.callee_leg
        self.session.connect(self.caller_leg, self.callee_leg)

    def _set_remote(self, leg: Leg, audio: _Media, peer: object) -> None:
        """The leg's peer's SDP; `peer` is where its SIP comes from, the one
        host besides the SDP's its media may latch on from behind NAT."""
        assert self.session is not None
        self.session.expect_media(leg, audio.sends)
        if audio.host in _NULL_ADDRESSES:
            return  # RFC 2543 hold: nowhere to send
        b2bua = self.b2bua
        self.session.set_remote(
            leg,
            audio.host,
            audio.port,
            audio.payload_types,
            rtcp_port=audio.rtcp_port,
            signalling_host=b2bua.sip.host_of(peer) if b2bua.latch_on_signalling_host else None,
        )

    def _sdp_sent(self, *legs: Leg | None) -> None:
        """Our SDP went out to these legs' peers, whose SDP we have: their
        NAT latch windows open now, never earlier (issue 11)."""
        assert self.session is not None
        for leg in legs:
            if leg is not None:
                self.session.sdp_sent(leg)

    def _anchored(self, sdp: SessionDescription, audio: _Media, leg: Leg) -> bytes:
        """`sdp` pointed at `leg`: its audio stream at our address and the
        leg's port, every other stream refused (we relay audio only)."""
        ports = [0] * len(sdp.media)
        ports[audio.index] = leg.local_address[1]
        return with_connection(sdp, self.b2bua.media_address, ports).to_bytes()

    def _our_contact_uri(self) -> URI:
        return parse_name_addr(self.b2bua.sip.contact(self.plan.callee_number, self.peer)).uri

    def _user_for(self, side: Side) -> str:
        plan = self.plan
        return plan.callee_number if side.role == "caller" else plan.caller_number


def _ignore(_: ClientTransaction, __: Response) -> None:
    """For requests whose answer changes nothing (BYE, CANCEL)."""


def _looks_external(number: str) -> bool:
    """A number long enough to be a phone number outside (7 digits or more):
    with no rule for it, it gets 403 No Route rather than 404, which is for
    an internal number nobody has."""
    digits = number.removeprefix("+")
    return digits.isdigit() and len(digits) >= 7


def _user_of(uri: object) -> str:
    return getattr(uri, "user_unescaped", None) or ""


def _release(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
