"""Click-to-call: a call callbridge places for an employee, as RFC 3725
third-party call control with the B2BUA anchoring the media.

The employee's registered devices ring first (parallel ring, with the number
to be called in From so the phone shows it), carrying an SDP offer of our own
(PCMU, PCMA, telephone-event) for the employee's media leg. When one answers,
its answer is the offer the customer's side gets, anchored on the other leg,
and the call goes on exactly as if that device had dialled the number: the
same routing (`B2bua._from_line`: another internal line, or the outgoing
rules and an external line with its digest, normalization and limits), the
same forks, record, answer, BYE and limits (`Call`). If the employee does
not pick up, nobody else is called.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field, replace

from ..logs import log_event
from ..media.engine import MediaSession
from ..media.errors import MediaError
from ..sip import Headers, Request, Response
from ..sip.dialog import DialogError
from ..sip.headers import reason_value
from ..sip.offer_answer import AUXILIARY_ENCODINGS, make_offer
from ..sip.sdp import SdpError, SessionDescription, parse_sdp
from ..sip.transaction import (
    ClientTransaction,
    ServerInviteTransaction,
    ServerTransaction,
    new_call_id,
    new_tag,
)
from ..sip.uri import format_hostport, name_addr, sip_uri
from .b2bua import (
    _COMPLETED_ELSEWHERE,
    _SDP_TYPE,
    ALLOW,
    B2bua,
    Call,
    Fork,
    Phase,
    Plan,
    Side,
    Target,
    _audio_of,
    _checked_audio,
    _ignore,
    _sdp_of,
    _user_of,
)
from .lines import Line
from .registrar import Binding

logger = logging.getLogger("callbridge.calls")

# What a caller may type: digits, a leading +, and the usual separators.
_SEPARATORS = re.compile(r"[ ()\-]")
_DIALLABLE = re.compile(r"\+?[0-9]+")
_NOT_ANSWERED = reason_value(480, "Originator did not answer")
# The employee's devices that refuse their own call.
_DECLINED = frozenset({403, 486, 600, 603, 607})
# Why a number could not be dialled, by the status a phone would have got.
_PROBLEMS = {
    404: "no internal line has this number",
    403: "no outgoing rule lets this number out",
    486: "the line called is busy",
    480: "the line called has no registered device",
    503: "no external line is free for this number",
}


class Refused(Exception):
    """A click-to-call that was not placed. `field` is "employee" (their line
    or devices) or "to" (the number); `status` is what a phone dialling it
    would have been answered (404, 403, 486, 480, 503)."""

    def __init__(self, field: str, status: int, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.status = status
        self.problem = problem


def dialled_number(to: str) -> str:
    """`to` as a phone would dial it: "+7 (916) 123-45-67" is "+79161234567".
    ValueError when what is left is not a number."""
    number = _SEPARATORS.sub("", to)
    if not _DIALLABLE.fullmatch(number):
        raise ValueError("a number is digits, with an optional leading +, spaces, - ( )")
    return number


class Originator:
    """Places click-to-call calls through the B2BUA."""

    def __init__(self, b2bua: B2bua) -> None:
        self.b2bua = b2bua

    async def call(self, employee_id: int, to: str) -> str:
        """Ring the employee's devices, then call `to`; returns the call
        record's id at once. Raises Refused when it cannot start."""
        b2bua = self.b2bua
        line, bindings = self._devices_of(employee_id)
        dialled = dialled_number(to)
        invite = self._dialled_invite(line, dialled)
        call: ClickToCall | None = None

        def timed_out(_: MediaSession) -> None:
            if call is not None:
                call.media_timed_out()

        session = b2bua.media.create_session(invite.call_id, on_timeout=timed_out)
        try:
            employee_leg = await session.add_leg("caller")
            customer_leg = await session.add_leg("callee")
        except MediaError as error:
            await session.close()
            log_event(logger, logging.WARNING, "call.no_media_ports", error=str(error))
            raise Refused("to", 503, "no media ports are free") from error
        # From here to the first INVITE nothing awaits, so the routing and
        # the limits it checks still hold when the call takes its place.
        try:
            plan = self._plan(invite, line)
        except Refused:
            await session.close()
            raise
        offer = make_offer(
            address=b2bua.media_address,
            port=employee_leg.local_address[1],
            session_id=str(random.getrandbits(32)),
        )
        call = ClickToCall(
            b2bua,
            plan=plan,
            invite=invite,
            # Stands for the INVITE the employee's phone did not send; never
            # answered, but it keeps the call in `by_invite`, which
            # `B2bua.close()` ends and the stats count.
            transaction=ServerInviteTransaction(invite, None, reliable=True),
            peer=None,
            offer=offer,
            audio=_audio_of(offer),
            received_at=b2bua.sip.time(),
            session=session,
            caller_leg=employee_leg,
            callee_leg=customer_leg,
        )
        b2bua.by_invite[call.transaction] = call
        b2bua._reserve(plan)
        call.ring(bindings)
        return call.record

    def _devices_of(self, employee_id: int) -> tuple[Line, list[Binding]]:
        """The employee's internal line (the first by number with a
        registered device, when they have several) and its devices."""
        b2bua = self.b2bua
        lines = sorted(
            (line for line in b2bua.lines().by_number.values() if line.employee_id == employee_id),
            key=lambda line: line.number,
        )
        if not lines:
            raise Refused("employee", 404, "your employee has no internal line")
        now = b2bua.sip.time()
        for line in lines:
            bindings = b2bua.location.bindings(line.number, now)
            if bindings:
                return line, bindings
        numbers = ", ".join(line.number for line in lines)
        raise Refused("employee", 480, f"no device is registered on your line {numbers}")

    def _dialled_invite(self, line: Line, dialled: str) -> Request:
        """The INVITE a device of `line` would have sent to dial `dialled`:
        what routing reads, and what the call's record names."""
        host = format_hostport(self.b2bua.media_address)
        return Request(
            "INVITE",
            sip_uri(dialled, host),
            Headers.of(
                ("From", name_addr(line.number, host, tag=new_tag())),
                ("To", name_addr(dialled, host)),
                ("Call-ID", new_call_id()),
                ("CSeq", "1 INVITE"),
                ("Max-Forwards", "70"),
            ),
        )

    def _plan(self, invite: Request, line: Line) -> Plan:
        """Route the number as if `line` had dialled it, and check the
        callee line's limits as admission does; a refusal leaves the record
        a dialled call would."""
        b2bua = self.b2bua
        plan = b2bua._from_line(invite, line, b2bua.dialplan, new_tag())
        if isinstance(plan, Response):
            raise Refused("to", plan.status, _PROBLEMS.get(plan.status, plan.reason))
        callee = plan.callee_line
        if callee is None:
            return plan
        # A dialled internal call is the callee line's; one placed from the
        # panel stays the employee's, who holds its id.
        plan = replace(plan, record_line=line)
        if callee.number == line.number:
            raise Refused("to", 482, "this is your own line")
        if b2bua.ringing_or_talking[callee.number] >= callee.max_incoming_calls:
            refusal = b2bua._refuse(invite, plan, 486, "Busy Here", "busy", "incoming call limit")
            raise Refused("to", refusal.status, _PROBLEMS[486])
        if not b2bua.location.bindings(callee.number, b2bua.sip.time()):
            refusal = b2bua._refuse(
                invite, plan, 480, "Temporarily Unavailable", "failed", "no registered device"
            )
            raise Refused("to", refusal.status, _PROBLEMS[480])
        return plan


@dataclass(eq=False)
class ClickToCall(Call):
    """A `Call` whose caller side is a dialog we start: while the employee's
    devices ring (phase SETUP) `forks` are theirs; once one answers they move
    to `employee_forks`, the answering device is the caller side, and `forks`
    are the customer's, handled by `Call` as for any call."""

    employee_forks: list[Fork] = field(default_factory=list)
    # Set once the employee's side has been told the call is over (or hung up).
    employee_released: bool = False
    # While False, every fork is one of the employee's devices.
    dialling: bool = False
    # Our offer to the employee's devices (`offer` becomes their answer).
    first_offer: SessionDescription | None = None

    def ring(self, bindings: list[Binding]) -> None:
        """Phase one: our offer to every registered device of the employee's
        line, ringing for the line's ring_timeout."""
        plan = self.plan
        line = plan.caller_line
        assert line is not None
        host = self.b2bua.media_address
        assert self.offer is not None  # a click-to-call always makes its own offer
        self.first_offer = self.offer
        offer = self.offer.to_bytes()
        dialled = _user_of(self.invite.uri)
        for binding in bindings:
            # From names the number to be called: what the phone shows.
            target = Target(
                peer=self.b2bua.sip.peer_for(binding),
                uri=binding.uri.copy(),
                from_user=dialled,
                from_host=host,
                to_user=line.number,
                routes=binding.path,
            )
            self._fork(target, offer)
        log_event(
            logger,
            logging.DEBUG,
            "call.originating",
            record=self.record,
            line=line.number,
            callee=plan.callee_number,
            devices=len(bindings),
        )
        if all(fork.final for fork in self.forks):
            self._employee_failed()
            return
        self._timer = self.b2bua.sip.call_later(line.ring_timeout, self._employee_timeout)

    # --- phase one: the employee's devices ------------------------------------

    def _fork_response(
        self, fork: Fork, transaction: ClientTransaction, response: Response
    ) -> None:
        if self.dialling and fork not in self.employee_forks:
            super()._fork_response(fork, transaction, response)
            return
        fork.transaction = transaction
        status = response.status
        if status < 200:
            fork.provisional = True
            if fork.cancel_reason is not None and not fork.cancelled:
                self._send_cancel(fork)
            return
        fork.final = status
        side = self.caller_side
        if status >= 300:
            if self.phase is Phase.SETUP and all(f.final for f in self.forks):
                self._employee_failed()
        elif side is None and self.phase is Phase.SETUP:
            self._employee_answered(fork, response)
        else:
            self._refuse_late_answer(fork, response)

    def _employee_answered(self, fork: Fork, response: Response) -> None:
        read = self._read_answer(fork, response, self._employee_failed)
        if read is None:
            return
        dialog, answer, audio = read
        assert self.caller_leg is not None
        side = self.caller_side = Side(
            "caller",
            dialog,
            self.b2bua.next_hop(dialog, fork.peer),
            self.caller_leg,
            fork.request.top_via.transport != "UDP",
            sdp_sent=fork.request.body,
        )
        self._acknowledge(side)
        self._timer_cancel()
        for other in self.forks:
            if other is not fork:
                self._cancel_fork(other, _COMPLETED_ELSEWHERE)
        self.employee_forks, self.forks = self.forks, []
        self._set_remote(self.caller_leg, audio, fork.peer)
        self._sdp_sent(self.caller_leg)  # our offer went in the INVITE
        # The device's answer is what the customer's side is offered: the
        # codecs it took are the ones both ends can share without transcoding.
        self.offer, self.audio = answer, audio
        log_event(logger, logging.DEBUG, "call.originator_answered", record=self.record)
        self._dial()

    def _dial(self) -> None:
        """Phase two: the number, as the answering device would have dialled it."""
        b2bua = self.b2bua
        plan = self.plan
        callee = plan.callee_line
        if callee is not None:
            bindings = b2bua.location.bindings(callee.number, b2bua.sip.time())
            if not bindings:
                self._fail(480, "Temporarily Unavailable", "failed", "no registered device")
                return
            targets = tuple(b2bua._device(binding, plan) for binding in bindings)
            plan = self.plan = replace(plan, targets=targets)
        assert self.callee_leg is not None and self.offer is not None and self.audio is not None
        offer = self._anchored(self.offer, self.audio, self.callee_leg)
        self.dialling = True
        for target in plan.targets:
            self._fork(target, offer)
        self.phase = Phase.RINGING
        if all(fork.final for fork in self.forks):
            self._all_forks_failed()
            return
        self._timer = self.b2bua.sip.call_later(plan.ring_timeout, self._ring_timeout)

    def _employee_timeout(self) -> None:
        self._timer = None
        if self.phase is Phase.SETUP and self.caller_side is None:
            self._release_employee(_NOT_ANSWERED)
            self._end("cancelled", "caller", "originator did not answer")

    def _employee_failed(self) -> None:
        """Every device of the employee refused or failed: nobody is called."""
        statuses = [fork.final or 500 for fork in self.forks]
        self.employee_released = True
        if any(status in _DECLINED for status in statuses):
            self._end("cancelled", "caller", "originator declined")
        else:
            self._end("failed", "caller", f"originator's devices answered {max(statuses)}")

    # --- how the employee hears of the customer's side --------------------------

    def _respond_caller(
        self,
        status: int,
        reason: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response | None:
        """The employee answered already: ringing changes nothing on their
        side (early media from a 183 reaches them through the anchor), the
        answer connects the media, and a failure ends their side."""
        if status >= 300:
            self._release_employee(reason_value(status, reason))
        return None

    def _release_employee(self, reason: str) -> None:
        if self.employee_released:
            return
        self.employee_released = True
        side = self.caller_side
        if side is None:  # still ringing: every fork is the employee's
            for fork in self.forks:
                self._cancel_fork(fork, reason)
            return
        bye = side.dialog.create_request("BYE", headers=[("Reason", reason)])
        self.b2bua.sip.send_request(bye, side.peer, _ignore)

    def _answered(self, fork: Fork, response: Response) -> None:
        super()._answered(fork, response)
        side = self.caller_side
        if self.phase is not Phase.ANSWERED or side is None:
            return
        # RFC 3264 §6.1: the employee's phone sends the first codec of its
        # answer. When the customer's answer left that codec out, the relay
        # (which never transcodes) would carry a codec the customer did not
        # take: offer the employee's side the customer's codecs instead.
        try:
            customer = _sdp_of(response)
        except SdpError:
            return
        assert self.offer is not None
        sends = _voice_formats(self.offer)
        if customer is None or not sends or sends[0] in _voice_formats(customer):
            return
        # Our session goes on (RFC 3264 §8): our first offer's origin, one
        # version up, with the customer's codecs on the employee's leg.
        ours = self.first_offer or self.offer
        origin = replace(ours.origin, sess_version=ours.origin.sess_version + 1)
        body = side.sdp_sent = replace(parse_sdp(side.sdp_sent), origin=origin).to_bytes()
        reoffer = side.dialog.create_request(
            "INVITE", headers=[("Allow", ALLOW), _SDP_TYPE], body=body
        )
        log_event(logger, logging.DEBUG, "call.codec_reoffer", record=self.record)
        self.b2bua.sip.send_request(
            reoffer, side.peer, lambda _, answer: self._reoffer_answered(side, answer)
        )

    def _reoffer_answered(self, side: Side, response: Response) -> None:
        if response.status < 200 or self.phase is not Phase.ANSWERED:
            return
        if response.status in (408, 481):  # §12.2.1.2: the dialog is gone
            self._hang_up(side, "answered", "system", f"re-INVITE answered {response.status}")
            return
        if response.status >= 300:
            return  # the phone keeps its first answer: nothing better to do
        try:
            side.dialog.receive_response(response)
            answer = _sdp_of(response)
            audio = None if answer is None else _checked_audio(answer, self.b2bua.media)
        except (DialogError, SdpError):
            audio = None
        self._acknowledge(side)
        if audio is not None:
            self._set_remote(side.media, audio, side.peer)
            self._sdp_sent(side.media)

    def _caller_side(self) -> Side:
        assert self.caller_side is not None
        return self.caller_side

    def request(
        self, side: Side, request: Request, transaction: ServerTransaction
    ) -> Response | None:
        if request.method == "BYE" and side is self.caller_side and self.phase is Phase.RINGING:
            # The employee hung up while the customer's side rang.
            self.employee_released = True
            self.caller_cancelled()
            return self.b2bua._reply(request, 200)
        return super().request(side, request, transaction)

    def _every_fork(self) -> list[Fork]:
        return [*self.employee_forks, *self.forks]


def _voice_formats(sdp: SessionDescription) -> list[str]:
    """The payload formats of the first audio stream, in order, without
    telephone-event and comfort noise (which ride along with a voice codec)."""
    for media in sdp.media:
        if media.media_type != "audio" or media.is_rejected:
            continue
        voice = []
        for fmt in media.formats:
            rtpmap = media.rtpmap(fmt)
            # 13 is RFC 3551's static comfort noise, often sent without an rtpmap.
            encoding = rtpmap.encoding.lower() if rtpmap else ("cn" if fmt == "13" else fmt)
            if encoding not in AUXILIARY_ENCODINGS:
                voice.append(fmt)
        return voice
    return []
