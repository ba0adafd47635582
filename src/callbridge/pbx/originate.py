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
from dataclasses import replace

from ..logs import log_event
from ..media.engine import Leg as MediaLeg
from ..media.engine import MediaSession
from ..media.errors import MediaError
from ..sip import Headers, Request, Response
from ..sip.dialog import DialogError
from ..sip.headers import reason_value
from ..sip.offer_answer import AUXILIARY_ENCODINGS, make_offer
from ..sip.sdp import SdpError, SessionDescription, parse_sdp
from ..sip.transaction import ServerInviteTransaction, new_call_id, new_tag
from ..sip.uri import format_hostport, name_addr, sip_uri
from .anchor import SDP_TYPE, audio_of, checked_audio, sdp_of
from .b2bua import B2bua, takes_webrtc, user_of
from .call import Call, Phase, Plan
from .dialing import ALLOW, Dialing, Fork, Target
from .legs import Leg
from .lines import Line
from .registrar import Binding
from .webrtc_sdp import webrtc_of

logger = logging.getLogger("callbridge.calls")

# What a caller may type: digits, a leading +, and the usual separators.
_SEPARATORS = re.compile(r"[ ()\-]")
_DIALLABLE = re.compile(r"\+?[0-9]+")
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
        call: Call | None = None

        def timed_out(_: MediaSession) -> None:
            if call is not None:
                call.media_timed_out()

        session = b2bua.media.create_session(invite.call_id, on_timeout=timed_out)
        browsers = [takes_webrtc(binding) for binding in bindings]
        browser_leg: MediaLeg | None = None
        try:
            # Browsers take WebRTC, phones plain RTP: a leg for each kind
            # the employee has; the device that answers keeps its kind's.
            if any(browsers):
                browser_leg = await session.add_leg("caller-webrtc", webrtc=True)
            employee_leg = browser_leg
            if employee_leg is None or not all(browsers):
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
        webrtc_offer = None
        if browser_leg is not None and browser_leg.webrtc is not None:
            webrtc_offer = parse_sdp(
                webrtc_of(
                    offer,
                    audio_of(offer),
                    browser_leg.webrtc,
                    b2bua.media_address,
                    browser_leg.local_address[1],
                    setup="actpass",
                    offer_opus=True,
                )
            )
            if employee_leg is browser_leg:
                offer = webrtc_offer
        origin = EmployeeOrigin(line, offer, webrtc_offer=webrtc_offer, webrtc_media=browser_leg)
        call = Call(
            b2bua,
            plan=plan,
            invite=invite,
            # Stands for the INVITE the employee's phone did not send; never
            # answered, but it keeps the call in `by_invite`, which
            # `B2bua.close()` ends and the stats count.
            transaction=ServerInviteTransaction(invite, None, reliable=True),
            origin=origin,
            offer=offer,
            audio=audio_of(offer),
            received_at=b2bua.sip.time(),
            session=session,
            caller_media=employee_leg,
            callee_media=customer_leg,
        )
        b2bua.by_invite[call.transaction] = call
        b2bua.reserve(plan)
        origin.ring(call, bindings)
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
        plan = b2bua.plan_from_line(invite, line, b2bua.dialplan, new_tag())
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
            refusal = b2bua.refuse(invite, plan, 486, "Busy Here", "busy", "incoming call limit")
            raise Refused("to", refusal.status, _PROBLEMS[486])
        if not b2bua.location.bindings(callee.number, b2bua.sip.time()):
            refusal = b2bua.refuse(
                invite, plan, 480, "Temporarily Unavailable", "failed", "no registered device"
            )
            raise Refused("to", refusal.status, _PROBLEMS[480])
        return plan


class EmployeeOrigin:
    """Click-to-call's origin: the employee's devices ring first, with our
    offer; the one that answers is the call's caller leg, and its answer is
    the offer the customer's side gets. Of the customer's side the employee
    hears only the answer (early media reaches them through the relay) or
    the end (a BYE with the reason)."""

    peer: object = None  # we called the caller: no flow of theirs to answer on

    def __init__(
        self,
        line: Line,
        first_offer: SessionDescription,
        *,
        webrtc_offer: SessionDescription | None = None,
        webrtc_media: MediaLeg | None = None,
    ) -> None:
        self.line = line
        self.first_offer = first_offer
        # For the employee's browsers: our WebRTC offer and its media leg.
        self.webrtc_offer = webrtc_offer
        self.webrtc_media = webrtc_media
        self.dialing: Dialing | None = None
        # The employee's side has been told the call is over (or hung up).
        self.released = False

    def ring(self, call: Call, bindings: list[Binding]) -> None:
        """Our offer to every registered device of the employee's line,
        ringing for the line's ring_timeout."""
        sip = call.b2bua.sip
        host = call.b2bua.media_address
        dialled = user_of(call.invite.uri)
        # From names the number to be called: what the phone shows.
        targets = [
            Target(
                peer=sip.peer_for(binding),
                uri=binding.uri.copy(),
                from_user=dialled,
                from_host=host,
                to_user=self.line.number,
                routes=binding.path,
                webrtc=takes_webrtc(binding),
            )
            for binding in bindings
        ]
        log_event(
            logger,
            logging.DEBUG,
            "call.originating",
            record=call.record,
            line=self.line.number,
            callee=call.plan.callee_number,
            devices=len(bindings),
        )
        self.dialing = call.new_dialing(_EmployeeDevices(self, call))
        call.arm(self.line.ring_timeout, lambda: self._timed_out(call))
        webrtc = self.webrtc_offer
        self.dialing.start(
            targets,
            self.first_offer.to_bytes(),
            webrtc_sdp=None if webrtc is None else webrtc.to_bytes(),
        )

    def device_answered(self, call: Call, fork: Fork, response: Response) -> None:
        assert self.dialing is not None
        if call.phase is not Phase.SETUP:
            self.dialing.refuse(fork, response)
            return
        read = call.read_answer(fork, response)
        if read is None:
            return
        dialog, answer, audio = read
        if fork.webrtc and self.webrtc_media is not None and self.webrtc_offer is not None:
            # A browser answered: its leg is the employee's, and the offer
            # our session goes on from (a codec re-offer) is the WebRTC one.
            call.caller_media, self.first_offer = self.webrtc_media, self.webrtc_offer
        assert call.caller_media is not None
        call.caller = Leg.of(
            call.b2bua.sip,
            "caller",
            dialog,
            fork.peer,
            call.caller_media,
            reliable=fork.request.top_via.transport != "UDP",
            on_lost=call.leg_lost,
            sdp_sent=fork.request.body,
        )
        call.caller.acknowledge()
        call.disarm()
        self.dialing.connected(fork)
        call.set_remote(call.caller_media, audio, fork.peer)
        call.sdp_sent(call.caller_media)  # our offer went in the INVITE
        # The device's answer is what the customer's side is offered: the
        # codecs it took are the ones both ends can share without transcoding.
        call.offer, call.audio = answer, audio
        log_event(logger, logging.DEBUG, "call.originator_answered", record=call.record)
        self._dial(call)

    def devices_failed(self, call: Call) -> None:
        """Every device of the employee refused or failed: nobody is called."""
        assert self.dialing is not None
        statuses = self.dialing.statuses()
        self.released = True
        if any(status in _DECLINED for status in statuses):
            call.end("cancelled", "caller", "originator declined")
        else:
            call.end("failed", "caller", f"originator's devices answered {max(statuses)}")

    def _timed_out(self, call: Call) -> None:
        if call.phase is Phase.SETUP and call.caller is None:
            self.refuse(call, 480, "Originator did not answer")
            call.end("cancelled", "caller", "originator did not answer")

    def _dial(self, call: Call) -> None:
        """The number, as the answering device would have dialled it."""
        b2bua = call.b2bua
        plan = call.plan
        callee = plan.callee_line
        if callee is not None:
            bindings = b2bua.location.bindings(callee.number, b2bua.sip.time())
            if not bindings:
                call.fail(480, "Temporarily Unavailable", "failed", "no registered device")
                return
            targets = tuple(b2bua.device(binding, plan) for binding in bindings)
            plan = call.plan = replace(plan, targets=targets)
        call.dial(plan.targets)

    # --- how the employee hears of the customer's side (Origin) ---------------

    def ringing(
        self, call: Call, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        pass  # they answered already: early media reaches them through the relay

    def accept(self, call: Call, body: bytes, answer: Response) -> Leg | None:
        """The customer answered: the media is connected already. RFC 3264
        §6.1: the employee's phone sends the first codec of its answer; when
        the customer's answer left that codec out, the relay (which never
        transcodes) would carry a codec the customer did not take: the
        employee's side is offered the customer's codecs instead."""
        leg = call.caller
        assert leg is not None and call.offer is not None
        leg.sdp_sent = body
        try:
            customer = sdp_of(answer)
        except SdpError:
            return leg
        sends = _voice_formats(call.offer)
        if customer is None or not sends or sends[0] in _voice_formats(customer):
            return leg
        # Our session goes on (RFC 3264 §8): our first offer's origin, one
        # version up, with the customer's codecs on the employee's leg.
        ours = self.first_offer
        origin = replace(ours.origin, sess_version=ours.origin.sess_version + 1)
        body = leg.sdp_sent = replace(parse_sdp(body), origin=origin).to_bytes()
        log_event(logger, logging.DEBUG, "call.codec_reoffer", record=call.record)
        leg.send(
            "INVITE",
            headers=[("Allow", ALLOW), SDP_TYPE],
            body=body,
            on_response=lambda _, response: self._reoffer_answered(call, leg, response),
        )
        return leg

    def _reoffer_answered(self, call: Call, leg: Leg, response: Response) -> None:
        if response.status < 200 or call.phase is not Phase.ANSWERED:
            return
        if response.status in (408, 481):  # §12.2.1.2: the dialog is gone
            call.hang_up(leg, "answered", "system", f"re-INVITE answered {response.status}")
            return
        if response.status >= 300:
            return  # the phone keeps its first answer: nothing better to do
        try:
            leg.dialog.receive_response(response)
            answer = sdp_of(response)
            audio = None if answer is None else checked_audio(answer, call.b2bua.media)
        except (DialogError, SdpError):
            audio = None
        leg.acknowledge()
        if audio is not None:
            call.set_remote(leg.media, audio, leg.peer)
            call.sdp_sent(leg.media)

    def refuse(self, call: Call, status: int, reason: str) -> None:
        """The customer's side failed (or the call was shut down): the
        employee's side ends, with the reason: their devices cancelled while
        they ring, a BYE once one answered."""
        if self.released:
            return
        self.released = True
        reason_header = reason_value(status, reason)
        if call.caller is not None:
            call.caller.hang_up(reason_header)
        elif self.dialing is not None:
            self.dialing.cancel(reason_header)

    def hung_up(self, call: Call) -> None:
        self.released = True


class _EmployeeDevices:
    """The dialing of the employee's devices reports to their origin."""

    def __init__(self, origin: EmployeeOrigin, call: Call) -> None:
        self.origin = origin
        self.call = call

    def progress(self, fork: Fork, response: Response) -> None:
        pass  # the employee's own phone rings: nothing to tell anyone

    def answered(self, fork: Fork, response: Response) -> None:
        self.origin.device_answered(self.call, fork, response)

    def failed(self) -> None:
        self.origin.devices_failed(self.call)


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
