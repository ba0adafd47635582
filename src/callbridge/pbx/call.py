"""A call: the customer's conversation, the thing a call record describes.

It owns legs over time — the caller's and the callee's today; a transfer
target or conference parties later — and keeps one record and one event
stream whatever happens to them. Its parts:

- its **origin**: how the call began, and how the one who began it hears of
  progress, the answer and a failure — a phone's INVITE we answer
  (`InviteOrigin`), or an employee's devices rung first for click-to-call
  (`pbx/originate.py`);
- the **dialing** of the called party (`pbx/dialing.py`): every device of an
  internal line at once, or an external line;
- its **legs** (`pbx/legs.py`), once answered, joined by a **bridge**
  (`pbx/bridge.py`) in the media engine;
- its timers (ring timeout, talk limit), taken from the SIP service's clock,
  so the unit tests drive them with a fake one.

What the call does with each leg's requests: BYE ends it, a re-INVITE is
relayed to the other leg (its SDP anchored), hold is noticed from the SDP,
an INFO carrying a digit goes to the call's DTMF (`pbx/dtmf.py`, which also
reads digits in the media and sends them on in the form the other party
takes), any other INFO is relayed. Where to look for what happens when the called party does
not answer: `Call.failed` and `Call.ring_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, auto
from typing import TYPE_CHECKING, Any, Protocol

from ..crm.identify import Identity
from ..logs import log_event
from ..media.dtmf import INFO_TYPES, Digit, DtmfBodyError
from ..media.engine import Leg as MediaLeg
from ..media.engine import MediaSession
from ..media.errors import MediaError
from ..media.player import playable_codec
from ..media.recorder import Recording
from ..sip import Request, Response
from ..sip.dialog import Dialog, DialogError
from ..sip.headers import reason_value
from ..sip.sdp import SdpError, SessionDescription
from ..sip.transaction import ClientTransaction, ServerTransaction
from ..sip.uri import parse_name_addr
from .anchor import (
    NULL_ADDRESSES,
    SDP_TYPE,
    Audio,
    anchored,
    answered_locally,
    audio_of,
    checked_audio,
    relay_offer,
    sdp_of,
)
from .bridge import Playing, Relay
from .calls import talk_seconds
from .dialing import ALLOW, Dialing, Fork, Target
from .dtmf import CallDtmf, side_media
from .legs import Leg
from .lines import Line
from .sip_port import Timer
from .trunks import Trunk
from .webrtc_sdp import (
    answer_setup,
    plain_of,
    plain_side,
    transcoded_payload_types,
    webrtc_of,
)

if TYPE_CHECKING:
    from .b2bua import B2bua

logger = logging.getLogger("callbridge.calls")

DEFAULT_RING_TIMEOUT = 60  # an outgoing call rings as long as the far end lets it


class Phase(Enum):
    SETUP = auto()  # admitted: binding media ports (click-to-call: the employee rings)
    RINGING = auto()  # the called party is being dialed
    ANSWERED = auto()
    ENDED = auto()


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

    @property
    def inband_dtmf(self) -> tuple[bool, bool]:
        """Whether to listen for DTMF tones in the caller's and the callee's
        audio: the setting of the line each side is on."""
        caller = self.trunk_in or self.caller_line
        callee = self.trunk_out or self.callee_line
        return (bool(caller and caller.inband_dtmf), bool(callee and callee.inband_dtmf))


class CallRefused(Exception):
    """What the API asked of a call in progress cannot be done: `status`
    is the HTTP answer (403 not a party, 409 not answered or over)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


class Origin(Protocol):
    """How a call began, and how the one who began it hears of it."""

    # Where the caller's SIP comes from (None when we called the caller).
    peer: object

    def ringing(
        self, call: Call, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """The called party rings (180) or plays early media (183, `body`)."""
        ...

    def accept(self, call: Call, body: bytes, answer: Response) -> Leg | None:
        """The called party answered (`answer`): our answer `body` (SDP
        anchored at the caller's leg) goes to the caller; returns the
        caller's leg (None when the caller can no longer take it)."""
        ...

    def refuse(self, call: Call, status: int, reason: str) -> None:
        """The call ends before it was answered, with `status`."""
        ...

    def hung_up(self, call: Call) -> None:
        """The caller's leg hung up before the called party answered."""
        ...


class InviteOrigin:
    """A call a phone or a provider began with an INVITE, which we answer:
    its 180/183 and its 2xx or final failure are ours to send."""

    def __init__(self, invite: Request, transaction: ServerTransaction, peer: object) -> None:
        self.invite = invite
        self.transaction = transaction
        self.peer = peer

    def ringing(
        self, call: Call, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        self.respond(call, status, reason, headers=headers, body=body)

    def accept(self, call: Call, body: bytes, answer: Response) -> Leg | None:
        b2bua = call.b2bua
        contact = ("Contact", b2bua.sip.contact(call.plan.callee_number, self.peer))
        # The caller's leg: the dialog our 200 to its INVITE creates.
        local = Dialog.from_uas(self.invite, call.tag, parse_name_addr(contact[1]).uri)
        b2bua.dialogs[(self.invite.call_id, call.tag)] = call
        assert call.caller_media is not None
        leg = Leg.of(
            b2bua.sip,
            "caller",
            local,
            self.peer,
            call.caller_media,
            reliable=self.invite.top_via.transport != "UDP",
            on_lost=call.leg_lost,
            sdp_sent=body,
        )
        ok = self.respond(call, 200, "OK", headers=[contact, SDP_TYPE], body=body)
        if ok is not None:
            leg.answer_until_acked(self.transaction, ok)
        return leg

    def refuse(self, call: Call, status: int, reason: str) -> None:
        self.respond(call, status, reason)

    def hung_up(self, call: Call) -> None:
        pass  # the caller has no leg before our 2xx: it cancels instead

    def respond(
        self,
        call: Call,
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
        response = call.b2bua.reply(
            self.invite, status, reason, to_tag=call.tag, headers=headers, body=body
        )
        call.b2bua.sip.respond(self.transaction, response)
        return response


@dataclass(eq=False)
class Call:
    """One call: from an internal line or an external line (or an employee's
    click), to the devices of an internal line or out through an external line."""

    b2bua: B2bua
    plan: Plan
    # The INVITE the call began with: the caller's, or, for click-to-call,
    # the one the employee's phone would have sent (what routing read).
    invite: Request
    # Stands for the caller's INVITE transaction in the B2BUA's table of
    # calls in progress (click-to-call: one never answered).
    transaction: ServerTransaction
    origin: Origin
    # The caller's offer and its audio; None for a delayed offer, where the
    # callee's 2xx carries the offer and the caller's ACK the answer.
    offer: SessionDescription | None
    audio: Audio | None
    received_at: float
    phase: Phase = Phase.SETUP
    record: str = ""
    session: MediaSession | None = None
    caller_media: MediaLeg | None = None
    callee_media: MediaLeg | None = None
    # While a call rings browsers and phones at once, the browsers' media
    # leg (WebRTC) beside the phones' (plain RTP): the fork that answers
    # makes its own the callee's (`_callee_leg_of`).
    callee_webrtc: MediaLeg | None = None
    # The callee's dialing, and every dialing the call made (click-to-call's
    # of the employee first), for the dialogs they leave behind.
    dialing: Dialing | None = None
    dialings: list[Dialing] = field(default_factory=list)
    caller: Leg | None = None
    callee: Leg | None = None
    bridge: Relay | None = None
    answered_at: datetime | None = None
    # A re-INVITE being relayed: from which leg, its transaction and offer
    # (None: it had none, and the other leg's 2xx makes it).
    reinvite: tuple[Leg, ServerTransaction, SessionDescription | None] | None = None
    # The CRM lookup of the customer's number, and what it found.
    lookup: asyncio.Task[None] | None = None
    identity: Identity | None = None
    # `ringing` went out (every other event of the call follows it).
    rang: bool = False
    # The roles ("caller", "callee") that put the call on hold.
    held_by: set[str] = field(default_factory=set)
    # Of those, the ones whose hold callbridge answered itself (their
    # re-INVITE, or the API's hold for their employee): the other party
    # hears music instead of a re-INVITE (see `_rebridge`).
    holding: set[str] = field(default_factory=set)
    playing: Playing | None = None
    # The music goes to this leg (while `playing`).
    playing_to: MediaLeg | None = None
    # Hold time so far, and since when the call is held (None: it is not).
    hold_seconds: float = 0.0
    held_since: float | None = None
    # What each leg's peer last described (its SDP's audio), by media leg.
    remote_audio: dict[Any, Audio] = field(default_factory=dict)
    # The leg whose 2xx offered (a delayed offer's callee, or the leg a
    # re-INVITE without SDP reached): that 2xx waits for our ACK until the
    # other leg's ACK brings the answer our ACK must carry.
    awaiting_answer: Leg | None = None
    # A delayed offer answered by a browser, which had our own offer: our
    # 2xx to the caller offered, and its ACK brings the answer.
    answer_in_callers_ack: bool = False
    # Digits in and out (pbx/dtmf.py), from the first SDP on.
    dtmf: CallDtmf | None = None
    # One recording per call, whatever happens to its legs (pbx/recordings.py).
    recording: Recording | None = None
    _timer: Timer | None = None
    # The phones' plain leg while the browsers' WebRTC leg is the callee's.
    _phones_media: MediaLeg | None = None

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
        """A call from an INVITE: bind the media ports, then dial the callee."""
        b2bua = self.b2bua
        session = self.session = b2bua.media.create_session(
            self.record, on_timeout=lambda _: self.media_timed_out()
        )
        try:
            browser = self.audio is not None and self.audio.webrtc is not None
            self.caller_media = await session.add_leg("caller", webrtc=browser)
            await self._add_callee_legs(session)
        except MediaError as error:
            if self.phase is not Phase.SETUP:
                return  # the call ended while the ports were bound
            log_event(logger, logging.WARNING, "call.no_media_ports", error=str(error))
            self.fail(503, "Service Unavailable", "failed", "no media ports")
            return
        if self.phase is not Phase.SETUP:  # cancelled while the ports were bound
            await self._close_media()
            return
        if self.offer is not None and self.audio is not None:
            self.set_remote(self.caller_media, self.audio, self.origin.peer)
        if not self.dial(self.plan.targets):
            return  # every device failed at once
        b2bua.note_setup_delay(b2bua.sip.time() - self.received_at)
        await self._announce_ringing()

    async def _add_callee_legs(self, session: MediaSession) -> None:
        """The callee's media leg: plain RTP for phones and providers, WebRTC
        for browsers, both when the targets are of both kinds."""
        targets = self.plan.targets
        browsers = any(t.webrtc for t in targets)
        phones = not browsers or any(not t.webrtc for t in targets)
        if browsers:
            self.callee_webrtc = await session.add_leg("callee-webrtc", webrtc=True)
        self.callee_media = await session.add_leg("callee") if phones else self.callee_webrtc

    def dial(self, targets: tuple[Target, ...]) -> bool:
        """Ring `targets` with the caller's offer (anchored at the callee's
        leg, WebRTC for a browser; none for a delayed offer) for the plan's
        ring timeout; False when every one failed at once (and the call has ended)."""
        assert self.callee_media is not None
        offer = b""  # a delayed offer goes on delayed: the callee's 2xx offers
        webrtc_offer: bytes | None = None
        browser = self.callee_webrtc
        if self.offer is None and browser is not None:
            # Except to a browser: its 2xx would offer WebRTC to a caller that
            # takes plain RTP. It gets our own offer; the caller, the browser's
            # answer as our offer in the 2xx, and answers in its ACK.
            webrtc_offer = self.anchored(*relay_offer(), browser)
        if self.offer is not None and self.audio is not None:
            if self.callee_media is not browser:
                offer = self.anchored(self.offer, self.audio, self.callee_media)
            if browser is not None:
                try:
                    webrtc_offer = self.anchored(self.offer, self.audio, browser)
                except SdpError as error:  # no G.711 for the browser: the phones still ring
                    log_event(logger, logging.INFO, "call.no_webrtc_offer", error=error.reason)
                    targets = tuple(t for t in targets if not t.webrtc)
        dialing = self.dialing = self.new_dialing(self)
        self.phase = Phase.RINGING
        max_forwards = self.invite.headers.get("Max-Forwards")
        dialing.start(
            targets,
            offer,
            webrtc_sdp=webrtc_offer,
            display_name=self.invite.from_.display_name,
            max_forwards=min(70, int(max_forwards) - 1) if max_forwards else 70,
        )
        if self.phase is not Phase.RINGING:
            return False
        self.arm(self.plan.ring_timeout, self.ring_timeout)
        return True

    def new_dialing(self, owner: Any) -> Dialing:
        """A dialing of this call (its forks' dialogs are the call's)."""

        def register(call_id: str, tag: str) -> None:
            self.b2bua.dialogs[(call_id, tag)] = self

        dialing = Dialing(
            self.b2bua.sip, owner, user_agent=self.b2bua.user_agent, register=register
        )
        self.dialings.append(dialing)
        return dialing

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

    # --- the callee's dialing (DialingOwner) -------------------------------------

    def progress(self, fork: Fork, response: Response) -> None:
        """Relay a 180 or 183 to the caller; early media flows from a 183's SDP."""
        if self.phase is not Phase.RINGING:
            return
        body = b""
        try:
            # With a delayed offer a provisional SDP would be an offer, which
            # only a reliable provisional (100rel) may carry: not relayed.
            sdp = None if self.offer is None else sdp_of(response)
        except SdpError:
            sdp = None
        if sdp is not None and self.callee_media is not None and self.caller_media is not None:
            try:
                audio = checked_audio(sdp, self.b2bua.media)
                self._callee_leg_of(fork)
                self.set_remote(self.callee_media, audio, fork.peer)
                self._connect()
                body = self.anchored(sdp, audio, self.caller_media)
            except (SdpError, MediaError):
                body = b""
        headers = [("Contact", self.b2bua.sip.contact(self.plan.callee_number, self.origin.peer))]
        if body:
            headers.append(SDP_TYPE)
        self.origin.ringing(self, response.status, response.reason, headers, body)
        if body:  # early media: both peers have our SDP, and we have theirs
            self.sdp_sent(self.caller_media, self.callee_media)

    def answered(self, fork: Fork, response: Response) -> None:
        if self.phase is not Phase.RINGING:
            assert self.dialing is not None
            self.dialing.refuse(fork, response)
            return
        read = self.read_answer(fork, response)
        if read is None:
            return
        dialog, answer, audio = read
        b2bua = self.b2bua
        self._callee_leg_of(fork)
        assert self.caller_media is not None and self.callee_media is not None
        assert self.dialing is not None
        callee = self.callee = Leg.of(
            b2bua.sip,
            "callee",
            dialog,
            fork.peer,
            self.callee_media,
            reliable=fork.request.top_via.transport != "UDP",
            on_lost=self.leg_lost,
            # Our offer went in its INVITE: what a hold of its own is answered from.
            sdp_sent=fork.request.body,
        )
        delayed = self.offer is None
        if delayed and not fork.webrtc:
            self.awaiting_answer = callee  # its 2xx offered: ACKed with the caller's answer
        else:
            callee.acknowledge()  # its 2xx answered our offer (a browser's: our own)
        self.dialing.connected(fork)
        self.set_remote(self.callee_media, audio, fork.peer)
        self._connect()
        # A browser's answer to our own offer becomes the caller's offer: its
        # first voice format only, so whatever the caller answers is what
        # the browser sends.
        body = self.anchored(answer, audio, self.caller_media, one_voice=delayed)
        self.disarm()
        self.answered_at = b2bua.wallclock()
        self.phase = Phase.ANSWERED
        self.caller = self.origin.accept(self, body, response)
        if not delayed:
            self.sdp_sent(self.caller_media, self.callee_media)
        elif fork.webrtc:  # the browser has our offer; the caller's answer comes in its ACK
            self.answer_in_callers_ack = True
            self.sdp_sent(self.callee_media)
        b2bua.by_invite.pop(self.transaction, None)
        b2bua.recorder.answered(self.record, self.answered_at)
        if b2bua.recordings is not None:
            self.recording = b2bua.recordings.start(
                self.record, self.plan, caller=self.caller_media, callee=self.callee_media
            )
        self._ring_event()
        b2bua.publish(self, "answered")
        log_event(logger, logging.DEBUG, "call.answered", record=self.record)
        if self.plan.max_talk_duration > 0:
            self.arm(self.plan.max_talk_duration, self.talk_limit)

    def _callee_leg_of(self, fork: Fork) -> None:
        """The media leg for `fork`'s answer becomes the callee's: the
        WebRTC leg when it is a browser's, else the plain one."""
        if fork.webrtc and self.callee_webrtc is not None:
            if self.callee_media is not self.callee_webrtc:
                self._phones_media = self.callee_media
            self.callee_media = self.callee_webrtc
        elif self.callee_media is self.callee_webrtc and self._phones_media is not None:
            self.callee_media = self._phones_media
        if self.bridge is not None and self.callee_media not in self.bridge.legs:
            self.bridge = None  # early media came from a fork of the other kind

    def read_answer(
        self, fork: Fork, response: Response
    ) -> tuple[Dialog, SessionDescription, Audio] | None:
        """The dialog, the SDP and its audio of a fork's 2xx; None when it
        is unusable: then its dialing refuses it (ACK and BYE)."""
        try:
            dialog = Dialog.from_uac(fork.request, response)
            answer = sdp_of(response)
            if answer is None:
                raise SdpError("the 2xx has no SDP answer", status=488)
            return dialog, answer, checked_audio(answer, self.b2bua.media)
        except (DialogError, SdpError) as error:
            log_event(logger, logging.INFO, "call.bad_answer", record=self.record, error=str(error))
            dialing = next(d for d in self.dialings if fork in d.forks)
            dialing.unusable(fork, response)
            return None

    def failed(self) -> None:
        """Every device of the callee refused, or failed: the caller learns
        the most telling status (busy, declined, no codec in common)."""
        assert self.dialing is not None
        statuses = self.dialing.statuses()
        if any(s in (486, 600) for s in statuses):
            self.fail(486, "Busy Here", "busy", "busy", side="callee")
        elif any(s in (603, 607, 403) for s in statuses):
            self.fail(603, "Decline", "rejected", "declined", side="callee")
        elif all(s in (488, 606) for s in statuses):
            # The relay does not transcode: the caller must learn it offered
            # nothing the callee takes, not that the callee is away.
            self.fail(488, "Not Acceptable Here", "failed", "no codec in common", side="callee")
        else:
            worst = max(statuses)
            self.fail(480, "Temporarily Unavailable", "failed", f"devices answered {worst}")

    def caller_cancelled(self) -> None:
        if self.phase in (Phase.SETUP, Phase.RINGING):
            self.fail(487, "Request Terminated", "cancelled", "caller cancelled", side="caller")

    def ring_timeout(self) -> None:
        self._timer = None
        if self.phase is Phase.RINGING:
            self.fail(480, "Temporarily Unavailable", "missed", "ring timeout")

    def fail(
        self, status: int, reason: str, record: str, cause: str, *, side: str = "system"
    ) -> None:
        """End a call that was never answered."""
        reason_header = reason_value(status, "Caller cancelled" if status == 487 else reason)
        if self.dialing is not None:
            self.dialing.cancel(reason_header)
        self.origin.refuse(self, status, reason)
        self.end(record, side, cause)

    # --- the answered call ----------------------------------------------------

    def leg_of(self, call_id: str) -> Leg | None:
        for leg in (self.caller, self.callee):
            if leg is not None and leg.call_id == call_id:
                return leg
        return None

    def other(self, leg: Leg) -> Leg:
        other = self.callee if leg is self.caller else self.caller
        assert other is not None
        return other

    def request(
        self, leg: Leg, request: Request, transaction: ServerTransaction
    ) -> Response | None:
        """A request in one of the call's legs' dialogs; the response to
        send now, or None when it comes later."""
        method = request.method
        reply = self.b2bua.reply
        if method == "BYE":
            if self.phase is Phase.ANSWERED:
                self.hang_up(leg, "answered", leg.role, "normal")
            elif self.phase is Phase.RINGING and leg is self.caller:
                # Click-to-call: the employee hung up while the customer's side rang.
                self.origin.hung_up(self)
                self.caller_cancelled()
            return reply(request, 200)
        if method == "INVITE":
            return self._reinvited(leg, request, transaction)
        if method == "INFO" and self.phase is Phase.ANSWERED:
            if self.dtmf is not None and _content_type(request) in INFO_TYPES:
                return self._dtmf_info(leg, request)
            self._relay(leg, request, transaction)
            return None
        return reply(request, 501, headers=[("Allow", ALLOW)])

    def _relay(self, leg: Leg, request: Request, transaction: ServerTransaction) -> None:
        """Pass a request (INFO: DTMF, say) to the other leg and its answer back."""
        headers = [
            (name, request.headers.get(name) or "")
            for name in ("Content-Type", "Info-Package")
            if request.headers.get(name)
        ]

        def back(_: ClientTransaction, response: Response) -> None:
            if response.status >= 200:
                self.b2bua.sip.respond(
                    transaction, self.b2bua.reply(request, response.status, response.reason)
                )

        self.other(leg).send(request.method, headers=headers, body=request.body, on_response=back)

    def _reinvited(
        self, leg: Leg, request: Request, transaction: ServerTransaction
    ) -> Response | None:
        reply = self.b2bua.reply
        if self.phase is not Phase.ANSWERED or self.reinvite is not None or leg.unacked:
            return reply(request, 491, headers=[("Retry-After", "1")])
        try:
            offer = sdp_of(request)
            audio = None if offer is None else checked_audio(offer, self.b2bua.media)
        except SdpError as error:
            return reply(request, 488, error.reason[:80])
        if offer is not None and audio is not None:
            local = self._hold_answer(leg, offer, audio)
            if local is not None:
                self._hold_locally(leg, request, transaction, audio, local)
                return None
        other = self.other(leg)
        self.reinvite = (leg, transaction, offer)
        # Without an offer (a session refresh, say) it goes on without one:
        # the other leg's 2xx offers, and this leg's ACK answers.
        body = b"" if offer is None or audio is None else self.anchored(offer, audio, other.media)
        if body:  # what a hold of its own is answered from next (one version on)
            other.sdp_sent = body
        other.send(
            "INVITE",
            headers=[("Allow", ALLOW), *([SDP_TYPE] if body else [])],
            body=body,
            on_response=lambda _, response: self._reinvite_answered(response),
        )
        return None

    def _reinvite_answered(self, response: Response) -> None:
        if response.status < 200 or self.reinvite is None or self.phase is not Phase.ANSWERED:
            return
        leg, transaction, offer = self.reinvite
        self.reinvite = None
        other = self.other(leg)
        request = transaction.request
        assert isinstance(request, Request)
        reply = self.b2bua.reply
        contact = [("Contact", self.b2bua.sip.contact(self._user_for(leg), leg.peer))]
        if response.status >= 300:
            self.b2bua.sip.respond(transaction, reply(request, response.status, response.reason))
            if response.status in (408, 481):  # §12.2.1.2: the dialog is gone
                self.hang_up(other, "answered", "system", f"re-INVITE answered {response.status}")
            return
        try:
            other.dialog.receive_response(response)
            answer = sdp_of(response)
            audio = None if answer is None else checked_audio(answer, self.b2bua.media)
        except (DialogError, SdpError):
            answer = audio = None
        if offer is None and answer is not None and audio is not None:
            # The other leg's 2xx offered: anchored for the leg that asked,
            # whose ACK brings the answer; the other leg's ACK waits for it.
            self.awaiting_answer = other
            offering, holds = other, audio.holds
        else:
            other.acknowledge()
            if offer is None or answer is None or audio is None:
                self.b2bua.sip.respond(transaction, reply(request, 488))
                return
            offered = audio_of(offer)
            self.set_remote(leg.media, offered, leg.peer)
            offering, holds = leg, offered.holds
        self.set_remote(other.media, audio, other.peer)
        body = leg.sdp_sent = self.anchored(answer, audio, leg.media)
        ok = reply(request, 200, headers=[*contact, SDP_TYPE], body=body)
        self.b2bua.sip.respond(transaction, ok)
        leg.answer_until_acked(transaction, ok)
        if offering is leg:  # else the answers come in the ACKs
            self.sdp_sent(leg.media, other.media)
        self._note_hold(offering, holds)

    def _note_hold(self, leg: Leg, holds: bool) -> None:
        """`held` when a leg's accepted offer stops it hearing the other,
        `resumed` when one takes that back."""
        if holds == (leg.role in self.held_by):
            return
        now = self.b2bua.sip.time()
        if holds:
            if not self.held_by:
                self.held_since = now
            self.held_by.add(leg.role)
        else:
            self.held_by.discard(leg.role)
            if not self.held_by and self.held_since is not None:
                self.hold_seconds += now - self.held_since
                self.held_since = None
        self.b2bua.publish(self, "held" if holds else "resumed", side=leg.role)

    # --- hold, with music ----------------------------------------------------

    def _hold_answer(self, leg: Leg, offer: SessionDescription, audio: Audio) -> bytes | None:
        """Our own answer to `leg`'s re-offer when callbridge takes the hold
        itself: a hold while there is music for the other party, or the
        resume of a hold we took. None: the re-INVITE is relayed instead
        (no player, a codec the player cannot send, an offer that changes
        more than the direction)."""
        player = self.b2bua.player
        if player is None:
            return None
        if self._restarts_ice(leg, audio):
            return None  # our answer needs new ICE credentials: built afresh
        if audio.holds:
            heard = self.remote_audio.get(self.other(leg).media)
            if heard is None or playable_codec(heard.payload_types) is None:
                return None  # Opus passed through, say: the other phone is asked
        elif leg.role not in self.holding:
            return None
        before = self.remote_audio.get(leg.media)
        theirs = None if before is None else before.webrtc
        setup = None if theirs is None else answer_setup(theirs)
        return answered_locally(leg.sdp_sent, offer, setup=setup)

    def _restarts_ice(self, leg: Leg, audio: Audio) -> bool:
        """Whether a browser's re-offer changes its ICE username (a restart)."""
        before = self.remote_audio.get(leg.media)
        theirs = None if before is None else before.webrtc
        return (
            audio.webrtc is not None and theirs is not None and audio.webrtc.ufrag != theirs.ufrag
        )

    def _hold_locally(
        self,
        leg: Leg,
        request: Request,
        transaction: ServerTransaction,
        audio: Audio,
        body: bytes,
    ) -> None:
        """Answer `leg`'s hold or resume ourselves; the other party is not
        re-INVITEd: it hears the music, then the call again."""
        self.set_remote(leg.media, audio, leg.peer)
        leg.sdp_sent = body
        contact = ("Contact", self.b2bua.sip.contact(self._user_for(leg), leg.peer))
        ok = self.b2bua.reply(request, 200, headers=[contact, SDP_TYPE], body=body)
        self.b2bua.sip.respond(transaction, ok)
        leg.answer_until_acked(transaction, ok)
        self.sdp_sent(leg.media)
        self.hold(leg.role, audio.holds)

    def hold(self, role: str, on: bool) -> None:
        """The party `role` holds the other (`on`) or takes it back: by its
        phone's re-INVITE, answered here, or from the API."""
        if on:
            self.holding.add(role)
        else:
            self.holding.discard(role)
        leg = self.caller if role == "caller" else self.callee
        if leg is not None:
            self._note_hold(leg, on)
        self._rebridge()

    def _rebridge(self) -> None:
        """Join the legs as the holds say: nobody holds, the relay; one
        party holds, the other hears music; both hold, neither hears a thing."""
        if self.phase is not Phase.ANSWERED or self.bridge is None:
            return
        listener = None
        if len(self.holding) == 1:
            [holder] = self.holding
            other = self.callee if holder == "caller" else self.caller
            listener = None if other is None else other.media
        if self.playing is not None and self.playing_to is not listener:
            self.playing.stop()
            self.playing = self.playing_to = None
        if not self.holding:
            self.bridge.join()
            return
        for media in self.bridge.legs:
            self.bridge.leave(media)
        player = self.b2bua.player
        if listener is None or player is None or self.playing is not None:
            return
        heard = self.remote_audio.get(listener)
        codec = None if heard is None else playable_codec(heard.payload_types)
        if codec is not None:
            self.playing = player.play(listener, *codec)
            self.playing_to = listener

    def role_of(self, employee_id: int) -> str | None:
        """The party ("caller", "callee") on the line of `employee_id`, if any."""
        plan = self.plan
        for role, line in (("caller", plan.caller_line), ("callee", plan.callee_line)):
            if line is not None and line.employee_id == employee_id:
                return role
        return None

    def acked(self, ack: Request) -> None:
        leg = self.leg_of(ack.call_id)
        if leg is None or not leg.acked(ack):
            return
        if self.awaiting_answer is not None and leg is not self.awaiting_answer:
            self._answer_in_ack(leg, ack)
        elif self.answer_in_callers_ack and leg is self.caller:
            self._callers_answer(leg, ack)

    def _answer_in_ack(self, leg: Leg, ack: Request) -> None:
        """The answer to the other leg's offer, in `leg`'s ACK: anchored, it
        goes in our ACK of the 2xx that offered. Without a usable one the
        call cannot carry media: that 2xx is ACKed and both legs BYEd."""
        offered = self.awaiting_answer
        assert offered is not None
        self.awaiting_answer = None
        first = offered.ack is None  # a delayed offer's: the call never had media
        found = self._ack_answer(ack)
        if found is None:
            offered.acknowledge()
            self.hang_up(
                None, "failed" if first else "answered", "system", "no SDP answer in the ACK"
            )
            return
        answer, audio = found
        self.set_remote(leg.media, audio, leg.peer)
        body = offered.sdp_sent = self.anchored(answer, audio, offered.media)
        offered.acknowledge(body=body)
        self.sdp_sent(leg.media, offered.media)

    def _callers_answer(self, leg: Leg, ack: Request) -> None:
        """The caller's answer to the offer our 2xx made for a browser that
        took a delayed offer: the caller's media starts; without one the
        call cannot carry media and both legs are BYEd."""
        self.answer_in_callers_ack = False
        found = self._ack_answer(ack)
        if found is None:
            self.hang_up(None, "failed", "system", "no SDP answer in the ACK")
            return
        self.set_remote(leg.media, found[1], leg.peer)
        self.sdp_sent(leg.media)

    def _ack_answer(self, ack: Request) -> tuple[SessionDescription, Audio] | None:
        """The SDP answer an ACK must carry, and its audio; None (logged)
        when it has none or one the relay cannot use."""
        try:
            answer = sdp_of(ack)
            if answer is None:
                raise SdpError("the ACK has no SDP answer", status=488)
            return answer, checked_audio(answer, self.b2bua.media)
        except SdpError as error:
            log_event(
                logger, logging.INFO, "call.bad_answer", record=self.record, error=error.reason
            )
            return None

    def stray_answer(self, response: Response) -> None:
        """A 2xx that came after its INVITE transaction handed over: a
        retransmission of a leg's gets its ACK again; one from a fork that
        lost (or a dialog no leg has) is ACKed and BYEd."""
        leg = self.leg_of(response.call_id)
        if leg is not None and leg.dialog.remote_tag == response.to.tag:
            leg.reacknowledge(response)
            return
        for dialing in self.dialings:
            fork = dialing.fork_of(response.call_id)
            if fork is not None:
                dialing.refuse(fork, response)
                return

    def leg_lost(self, leg: Leg) -> None:
        """Our 2xx to `leg` got no ACK in 64*T1: the call is over."""
        if self.phase is not Phase.ENDED:
            self.hang_up(None, "answered", "system", "no ACK")

    def talk_limit(self) -> None:
        self._timer = None
        if self.phase is Phase.ANSWERED:
            self.hang_up(None, "answered", "system", "talk limit")

    def media_timed_out(self) -> None:
        if self.phase is Phase.ANSWERED:
            self.hang_up(None, "answered", "system", "media timeout")
        elif self.phase is Phase.RINGING:
            self.fail(480, "Temporarily Unavailable", "failed", "media timeout")

    def shut_down(self) -> None:
        if self.phase is Phase.ANSWERED:
            self.hang_up(None, "answered", "system", "shutdown")
        elif self.phase is not Phase.ENDED:
            self.fail(503, "Service Unavailable", "failed", "shutdown")

    def hang_up(self, by: Leg | None, record: str, hangup_side: str, cause: str) -> None:
        """End an answered call: BYE to every leg but the one that hung up."""
        if self.phase is Phase.ENDED:
            return
        if self.awaiting_answer is not None:
            offered, self.awaiting_answer = self.awaiting_answer, None
            offered.acknowledge()  # its 2xx first (§13.2.2.4), then the BYE
        for leg in (self.caller, self.callee):
            if leg is None or leg is by:
                continue
            leg.hang_up(None if by is not None else reason_value(200, cause))
        self.end(record, hangup_side, cause)

    # --- the end ----------------------------------------------------------------

    def end(self, record: str, side: str, cause: str) -> None:
        """Close the call: its record, its events, its limits and its media;
        what is left of its dialogs answers for them a while (`B2bua.retire`)."""
        if self.phase is Phase.ENDED:
            return
        self.phase = Phase.ENDED
        b2bua = self.b2bua
        self.disarm()
        for dialing in self.dialings:
            dialing.detach()
        for leg in self.legs():
            leg.detach()
        if self.playing is not None:
            self.playing.stop()
            self.playing = self.playing_to = None
        if self.held_since is not None:
            self.hold_seconds += b2bua.sip.time() - self.held_since
            self.held_since = None
        if self.dtmf is not None:
            self.dtmf.close()
        if self.recording is not None and b2bua.recordings is not None:
            b2bua.recordings.stop(self.recording, self.caller_media, self.callee_media)
        at = b2bua.wallclock()
        b2bua.recorder.ended(
            self.record,
            at=at,
            answered_at=self.answered_at,
            status=record,
            hangup_side=side,
            hangup_cause=cause,
            hold_seconds=round(self.hold_seconds),
        )
        self._end_events(record, side, cause, at)
        b2bua.release(self)
        log_event(
            logger, logging.INFO, "call.ended", record=self.record, status=record, cause=cause
        )
        b2bua.spawn(self._close_media())
        b2bua.retire(self)

    def _end_events(self, status: str, side: str, cause: str, at: datetime) -> None:
        """A call that rang ends with `ended`; one nobody answered, coming in
        to a line, is also `missed` for that line's employee (once per call,
        however many devices rang)."""
        if not self.forks():
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
            hold_seconds=round(self.hold_seconds),
            hangup_side=side,
            cause=cause,
        )

    def forks(self) -> list[Fork]:
        """Every INVITE this call sent out, answered or not."""
        return [fork for dialing in self.dialings for fork in dialing.forks]

    def legs(self) -> list[Leg]:
        return [leg for leg in (self.caller, self.callee) if leg is not None]

    def dialog_keys(self) -> list[tuple[str, str]]:
        """The keys of `B2bua.dialogs` this call may hold."""
        keys = [(self.invite.call_id, self.tag)]
        keys += [(f.request.call_id, f.request.from_.tag or "") for f in self.forks()]
        return keys

    async def _close_media(self) -> None:
        if self.session is not None:
            await self.session.close()

    def arm(self, delay: float, callback: Callable[[], None]) -> None:
        """The call's one timer (the ring timeout, the talk limit; for
        click-to-call first the employee's ring): `callback` in `delay` s."""
        self.disarm()
        self._timer = self.b2bua.sip.call_later(delay, callback)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- media ------------------------------------------------------------------

    def _connect(self) -> None:
        assert self.session is not None and self.caller_media and self.callee_media
        if self.bridge is None:
            self.bridge = Relay(self.session, self.caller_media, self.callee_media)
        self.bridge.join()

    def set_remote(self, leg: MediaLeg, audio: Audio, peer: object) -> None:
        """The leg's peer's SDP; `peer` is where its SIP comes from, the one
        host besides the SDP's its media may latch on from behind NAT."""
        assert self.session is not None
        if audio.opus is not None and leg.webrtc is not None:
            audio = self._transcoded(leg, audio)
        elif audio.webrtc is not None and leg.webrtc is not None:
            # G.711 again (a re-offer that kept it): relayed, not decoded.
            self.session.set_transcoding(leg, None)
        self.remote_audio[leg] = audio
        self._dtmf_negotiated(leg, audio)
        self.session.expect_media(leg, audio.sends)
        if audio.webrtc is None:
            self._retranscode(leg)
        if audio.webrtc is not None and leg.webrtc is not None:
            self.session.set_webrtc_remote(leg, audio.webrtc)
        elif audio.host in NULL_ADDRESSES:
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

    def _other_media(self, leg: MediaLeg) -> MediaLeg | None:
        return self.callee_media if leg is self.caller_media else self.caller_media

    def _transcoded(self, leg: MediaLeg, audio: Audio) -> Audio:
        """A browser leg speaking only Opus: transcode it to the G.711 its
        other party's SDP names, and take its audio as what the relay carries."""
        assert self.session is not None and audio.opus is not None
        other = self._other_media(leg)
        opus = plain_side(audio.opus, None if other is None else self.remote_audio.get(other))
        self.session.set_transcoding(leg, opus)
        payload_types = transcoded_payload_types(opus)
        return replace(audio, payload_types=payload_types, rates=dict.fromkeys(payload_types, 8000))

    def _retranscode(self, plain: MediaLeg) -> None:
        """A phone's SDP came: a transcoding browser leg across from it speaks its G.711."""
        for leg in (self.caller_media, self.callee_media, self.callee_webrtc):
            if leg is None or leg is plain or self._other_media(leg) is not plain:
                continue
            audio = self.remote_audio.get(leg)
            if audio is not None and audio.opus is not None and leg.webrtc is not None:
                assert self.session is not None
                self.remote_audio[leg] = audio = self._transcoded(leg, audio)
                self._dtmf_negotiated(leg, audio)
                self.session.set_remote(leg, audio.host, audio.port, audio.payload_types)

    def sdp_sent(self, *legs: MediaLeg | None) -> None:
        """Our SDP went out to these legs' peers, whose SDP we have: their
        NAT latch windows open now, never earlier (issue 11)."""
        assert self.session is not None
        for leg in legs:
            if leg is not None:
                self.session.sdp_sent(leg)

    def anchored(
        self, sdp: SessionDescription, audio: Audio, leg: MediaLeg, *, one_voice: bool = False
    ) -> bytes:
        """`sdp` pointed at `leg`: its audio at our address and the leg's
        port; WebRTC SDP for a browser's leg (pbx/webrtc_sdp.py), plain
        RTP/AVP from a browser's SDP for a phone's (`one_voice`: its first
        voice format only). `SdpError` (488) when the two have no G.711 in
        common."""
        address, port = self.b2bua.media_address, leg.local_address[1]
        local = leg.webrtc
        if local is not None:
            # Before the browser said its DTLS role we offer actpass; after,
            # every SDP (answer or re-offer) keeps the role taken (RFC 8842 §5).
            theirs = self.remote_audio.get(leg)
            remote = theirs.webrtc if theirs is not None else None
            return webrtc_of(
                sdp,
                audio,
                local,
                address,
                port,
                setup="actpass" if remote is None else answer_setup(remote),
                mid=theirs.mid if theirs is not None and theirs.mid else "0",
                bundle=theirs is not None and theirs.bundle,
                opus=None if theirs is None else theirs.opus,
                offer_opus=theirs is None,
            )
        if audio.webrtc is not None:
            return plain_of(
                sdp, audio, address, port, plain=self.remote_audio.get(leg), one_voice=one_voice
            )
        return anchored(sdp, audio, address, port)

    # --- DTMF (pbx/dtmf.py) --------------------------------------------------------

    def _dtmf_negotiated(self, media: MediaLeg, audio: Audio) -> None:
        """A party's SDP: what DTMF it takes. The call's DTMF starts with the
        first SDP, once both media legs are bound."""
        dtmf = self.dtmf
        if dtmf is None:
            caller, callee = self.caller_media, self.callee_media
            if caller is None or callee is None or self.phase is Phase.ENDED:
                return
            sip = self.b2bua.sip
            dtmf = self.dtmf = CallDtmf(
                clock=sip.time,
                on_digit=self._digit,
                send_info=self._send_dtmf_info,
                call_later=sip.call_later,
            )
            caller_inband, callee_inband = self.plan.inband_dtmf
            dtmf.attach("caller", caller, inband=caller_inband)
            dtmf.attach("callee", callee, inband=callee_inband)
        dtmf.negotiated(media.name, side_media(audio.payload_types, audio.rates))

    def _dtmf_info(self, leg: Leg, request: Request) -> Response:
        """An INFO carrying a digit: taken here (200), or 400 when its body is
        no digit; the digit goes on to the other leg in the form it takes."""
        assert self.dtmf is not None
        try:
            self.dtmf.info(leg.role, _content_type(request), request.body)
        except DtmfBodyError as error:
            return self.b2bua.reply(request, 400, f"Bad DTMF: {error.reason}")
        return self.b2bua.reply(request, 200)

    def _digit(self, role: str, digit: Digit) -> None:
        if self.phase in (Phase.RINGING, Phase.ANSWERED):
            self.b2bua.publish(
                self,
                "dtmf",
                side=role,
                digit=digit.digit,
                duration=digit.duration,
                source=digit.source,
            )

    def _send_dtmf_info(self, role: str, content_type: str, body: bytes) -> None:
        leg = self.caller if role == "caller" else self.callee
        if leg is not None and self.phase is Phase.ANSWERED:
            leg.send("INFO", headers=[("Content-Type", content_type)], body=body)

    def _user_for(self, leg: Leg) -> str:
        plan = self.plan
        return plan.callee_number if leg.role == "caller" else plan.caller_number


def _content_type(message: Request) -> str:
    return (message.headers.get("Content-Type") or "").split(";")[0].strip().lower()
