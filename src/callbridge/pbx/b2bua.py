"""The back-to-back user agent's front door: which INVITEs become calls.

A new INVITE is admitted here: who calls (an internal line by digest, an
external line by its address), where it goes (another line, or out through
the outgoing rules and an external line), and the limits of the lines on
the way. An admitted one becomes a `Call` (pbx/call.py), which owns its
legs, its dialing and its record from then on. The B2BUA keeps the table
that routes each request and response of a call's dialogs to the call, and
what is left of ended calls for as long as stragglers may come (64*T1).

The SIP side is reached through `SipPort` (pbx/sip_port.py): the service
owns the sockets, the transaction layer and the clock. What happens to a
call goes out as events (`ringing`, `answered`, `held`, `resumed`, `dtmf`, `missed`,
`ended`) to the employees whose lines take part.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..crm.identify import Identity
from ..events import EventBus
from ..logs import log_event
from ..media.engine import MediaEngine
from ..numbers import MAX_NUMBER_LENGTH, to_e164
from ..sip import Request, Response, make_response, parse
from ..sip.digest import DigestError, compute_ha1
from ..sip.sdp import SdpError
from ..sip.transaction import DEFAULT_TIMERS, ServerTransaction, new_tag
from ..sip.uri import SipURI, format_hostport, sip_uri
from . import bounds
from .anchor import checked_audio, sdp_of
from .auth import DROP, Authenticated, Authenticator, Drop, HA1Lookup
from .bounds import ANONYMOUS
from .bridge import MusicPlayer
from .browser_credentials import Accounts, BrowserCredentials, Refused
from .call import Call, CallRefused, InviteOrigin, Phase, Plan
from .calls import CallRecorder
from .dialing import ALLOW, Target
from .dialplan import Dialplan
from .dtmf import DigitsRefused
from .lines import Line, Lines
from .normalize import Field
from .recordings import Recordings
from .registrar import Binding, Location
from .sip_port import ResponseHandler, SipPort
from .staff import Employees
from .trunks import Trunk

logger = logging.getLogger("callbridge.calls")

K = TypeVar("K")
WallClock = Callable[[], datetime]
# Looks a client's number up in the CRM, read in a region ("RU", "US").
Identify = Callable[[str, str], Awaitable[Identity]]

_SETUP_DELAY_SAMPLES = 100_000
# How long `ringing` waits for the CRM's answer before it goes out with the
# bare number: the popup must come while the phone rings, not after.
IDENTIFY_DEADLINE = 0.15
# How long an ended call's dialogs still answer retransmissions (64*T1).
_LINGER = 64 * DEFAULT_TIMERS.T1
__all__ = ["ALLOW", "B2bua", "ResponseHandler", "SipPort", "user_of"]


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
        player: MusicPlayer | None = None,
        recordings: Recordings | None = None,
        browser_credentials: BrowserCredentials | None = None,
    ) -> None:
        self.sip = sip
        # What a browser signs its calls with over its WebSocket.
        self.browser_credentials = browser_credentials
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
        # Music on hold; without it a hold is relayed to the other party.
        self.player = player
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
            return self.reply(request, 403, "Forbidden", to_tag=tag)
        else:
            accounts = Accounts(
                self.lines(),
                self.browser_credentials,
                transport=transport,
                realm=self.authenticator.digest.realm,
            )
            outcome = self.authenticator.check(
                request,
                source=source,
                ha1_of=accounts.ha1_of,
                algorithms_of=accounts.digest_algorithms_of,
                now=now,
                to_tag=tag,
            )
            if not isinstance(outcome, Authenticated):
                return outcome
            try:
                line = accounts.line_of(outcome.username)
            except Refused as refused:
                return self.reply(request, 403, refused.reason, to_tag=tag)
            plan = self.plan_from_line(request, line, dialplan, tag)
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
            user = user_of(uri)
            if len(user) > MAX_NUMBER_LENGTH and user not in own:
                return self._number_too_long(request, header, tag)
        return None

    def _number_too_long(self, request: Request, header: str, tag: str) -> Response:
        # 414 is the status RFC 3261 has for a Request-URI too long to read.
        status = 414 if header == "Request-URI" else 400
        log_event(logger, logging.INFO, "call.refused", status=status, cause="number too long")
        return self.reply(request, status, f"{header} Number Too Long", to_tag=tag)

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
        return user_of(request.uri) in own or user_of(request.to.uri) in own

    def plan_from_line(
        self, request: Request, caller: Line, dialplan: Dialplan, tag: str
    ) -> Plan | Response:
        """A call an internal line dials: another line, or out through the
        outgoing rules."""
        raw = user_of(request.uri)
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
            return self.refuse(request, plan, 404, "Not Found", "failed", "invalid number")
        if caller.disabled or not self.employees.may_use_telephony(caller.employee_id):
            return self.refuse(
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
                return self.refuse(request, plan, 403, "Forbidden", "rejected", "denied by rule")
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
            return self.refuse(request, plan, 503, "Service Unavailable", "failed", cause)
        if not _looks_external(dialled):
            return self.refuse(request, plan, 404, "Not Found", "failed", "unknown number")
        return self.refuse(request, plan, 403, "No Route", "rejected", "no outgoing route")

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
        caller_raw = user_of(request.from_.uri)
        dialled = user_of(request.uri)
        if dialled in (trunk.username, trunk.login) and user_of(request.to.uri):
            dialled = user_of(request.to.uri)  # a registered line: the DID is in To
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
            return self.refuse(request, plan, 404, "Not Found", "failed", "invalid number")
        if not self._has_room(trunk, outgoing=False):
            return self.refuse(request, plan, 503, "Service Unavailable", "failed", "line full")
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
            return self.refuse(request, plan, 480, "Temporarily Unavailable", "failed", "no route")
        if decision.action.type == "deny":
            return self.refuse(request, plan, 603, "Decline", "rejected", "denied by rule")
        callee = self.lines().by_number.get(decision.destination)
        if callee is None:
            return self.refuse(request, plan, 404, "Not Found", "failed", "unknown internal line")
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

    def refuse(
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
        return self.reply(request, status, reason, to_tag=plan.tag)

    def _admit(
        self, request: Request, transaction: ServerTransaction, peer: object, plan: Plan, now: float
    ) -> Response:
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None and max_forwards.strip() == "0":
            return self.refuse(request, plan, 483, "Too Many Hops", "failed", "too many hops")
        try:
            # None: a delayed offer (RFC 3261 §13.2.1), which the callee's 2xx makes.
            offer = sdp_of(request)
            audio = None if offer is None else checked_audio(offer, self.media)
        except SdpError as error:
            status = error.status if error.status in (415, 488) else 488
            return self.refuse(
                request, plan, status, "Not Acceptable Here", "failed", f"bad SDP: {error.reason}"
            )
        callee = plan.callee_line
        if callee is not None:
            if callee.disabled or not self.employees.may_use_telephony(callee.employee_id):
                return self.refuse(
                    request,
                    plan,
                    480,
                    "Temporarily Unavailable",
                    "rejected",
                    "telephony disabled",
                )
            if self.ringing_or_talking[callee.number] >= callee.max_incoming_calls:
                return self.refuse(request, plan, 486, "Busy Here", "busy", "incoming call limit")
            bindings = self.location.bindings(callee.number, now)
            if not bindings:
                return self.refuse(
                    request, plan, 480, "Temporarily Unavailable", "failed", "no registered device"
                )
            plan = replace(plan, targets=tuple(self.device(b, plan) for b in bindings))
        call = Call(
            self,
            plan=plan,
            invite=request,
            transaction=transaction,
            origin=InviteOrigin(request, transaction, peer),
            offer=offer,
            audio=audio,
            received_at=now,
        )
        self.by_invite[transaction] = call
        self.reserve(plan)
        self.spawn(call.setup())
        return self.reply(request, 100, to_tag=None)

    def reserve(self, plan: Plan) -> None:
        """Count an admitted call against its lines' limits (`release` gives it back)."""
        if plan.callee_line is not None:
            self.ringing_or_talking[plan.callee_line.number] += 1
        for trunk in (plan.trunk_in, plan.trunk_out):
            if trunk is not None:
                self.trunk_calls[trunk.id] += 1
        if plan.trunk_out is not None:
            self.trunk_outgoing[plan.trunk_out.id] += 1
        self.calls += 1

    def device(self, binding: Binding, plan: Plan) -> Target:
        return Target(
            peer=self.sip.peer_for(binding),
            uri=binding.uri.copy(),
            from_user=plan.caller_number,
            from_host=self.media_address,
            to_user=plan.callee_number,
            routes=binding.path,
            webrtc=takes_webrtc(binding),
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
            return call.answer(request, self.reply)
        leg = None if call is None else call.leg_of(request.call_id)
        if call is None or leg is None:
            return self.reply(request, 481)
        refused = leg.dialog.receive_request(request)
        if refused is not None:
            return refused
        return call.request(leg, request, transaction)

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

    def release(self, call: Call) -> None:
        """An ended call gives back what it held of its lines' limits."""
        self.by_invite.pop(call.transaction, None)
        plan = call.plan
        if plan.callee_line is not None:
            _release(self.ringing_or_talking, plan.callee_line.number)
        for trunk in (plan.trunk_in, plan.trunk_out):
            if trunk is not None:
                _release(self.trunk_calls, trunk.id)
        if plan.trunk_out is not None:
            _release(self.trunk_outgoing, plan.trunk_out.id)

    def retire(self, call: Call) -> None:
        """Put in an ended call's place in the dialogs what still answers
        for them (`_Ended`), for 64*T1."""
        by_call_id = {leg.call_id: leg for leg in call.legs()}
        ended: list[tuple[tuple[str, str], _Ended]] = []
        for key in call.dialog_keys():
            if self.dialogs.get(key) is not call:
                continue
            leg = by_call_id.get(key[0])
            stub = (
                _Ended()
                if leg is None
                else _Ended(
                    leg.ack.to_bytes() if leg.ack is not None else None,
                    leg.peer,
                    leg.dialog.remote_tag,
                )
            )
            self.dialogs[key] = stub
            ended.append((key, stub))
        if ended:
            self.sip.call_later(_LINGER, self._forget_ended, ended)

    def _forget_ended(self, ended: list[tuple[tuple[str, str], _Ended]]) -> None:
        dialogs = self.dialogs
        for key, stub in ended:
            if dialogs.get(key) is stub:
                del dialogs[key]

    # --- for the calls --------------------------------------------------------

    def reply(
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

    def spawn(self, coroutine: Coroutine[object, object, None]) -> asyncio.Task[None]:
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

        return self.spawn(look_up())

    def party(self, record: str, employee_id: int) -> tuple[Call, str]:
        """The answered call `record` in progress and the party ("caller",
        "callee") on `employee_id`'s line, for what the API does to a call
        (hold, DTMF). Raises `CallRefused`: 409 when the call is not in
        progress or not answered, 403 when the employee takes no part."""
        call = next((c for c in self.in_memory if c.record == record), None)
        if call is None or call.phase is Phase.ENDED:
            raise CallRefused(409, "the call is not in progress")
        role = call.role_of(employee_id)
        if role is None:
            raise CallRefused(403, "your line takes no part in this call")
        if call.phase is not Phase.ANSWERED:
            raise CallRefused(409, "the call is not answered")
        return call, role

    def hold(self, record: str, employee_id: int, on: bool) -> None:
        """From the API: `employee_id`'s party of the call `record` holds the
        other, who hears the music (`on`), or takes it back. Raises
        `CallRefused` (see `party`; 409 too when there is no music)."""
        call, role = self.party(record, employee_id)
        if self.player is None:
            raise CallRefused(409, "no music on hold is configured")
        call.hold(role, on)

    def end_call(self, record: str, employee_id: int) -> None:
        """From the API: `employee_id`'s party hangs up the answered call
        `record`: a BYE to each leg, the record ended by that side (a
        softphone a reload dropped, a desk phone out of reach). Raises
        `CallRefused` (see `party`)."""
        call, role = self.party(record, employee_id)
        call.hang_up(None, "answered", role, "ended from the API")

    def send_digits(self, record: str, employee_id: int, digits: str) -> None:
        """DTMF from the API: `employee_id`'s leg of the call `record` sends
        `digits` to the other party. Raises `DigitsRefused`: 409 when the
        call is not in progress or not answered, 403 when the employee is
        no party of it, 429 when too many digits wait already."""
        try:
            call, role = self.party(record, employee_id)
        except CallRefused as refused:
            raise DigitsRefused(refused.status, refused.problem) from None
        if call.dtmf is None:
            raise DigitsRefused(409, "the call is not answered")
        call.dtmf.send(role, digits)

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

    def note_setup_delay(self, seconds: float) -> None:
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


def _looks_external(number: str) -> bool:
    """A number long enough to be a phone number outside (7 digits or more):
    with no rule for it, it gets 403 No Route rather than 404, which is for
    an internal number nobody has."""
    digits = number.removeprefix("+")
    return digits.isdigit() and len(digits) >= 7


def user_of(uri: object) -> str:
    return getattr(uri, "user_unescaped", None) or ""


def _release(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


# The transports a browser registers over (RFC 7118): a device there takes
# WebRTC media only (UDP/TLS/RTP/SAVPF, ICE, DTLS-SRTP).
WEBSOCKET_TRANSPORTS = frozenset({"ws", "wss"})


def takes_webrtc(binding: Binding) -> bool:
    """Whether a device is a browser: its Contact names a WebSocket transport
    (JsSIP's and SIP.js's `;transport=ws`, RFC 7118 §5.2). The Contact, not
    the flow it registered over: a browser behind a WebSocket proxy
    (Kamailio, docs/PROXY.md) reaches us over UDP or TCP, and is a browser
    still."""
    uri = binding.uri
    return isinstance(uri, SipURI) and uri.transport in WEBSOCKET_TRANSPORTS
