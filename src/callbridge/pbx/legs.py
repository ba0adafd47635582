"""A leg: one party of a call once it has answered or been answered — a
phone, a provider, later a browser — as one confirmed SIP dialog with its own
transactions and its own media endpoint.

A leg does what RFC 3261 asks of a dialog's user agent whatever call it is
in: our 2xx to its INVITE sent again until its ACK comes (§13.3.1.4), our
ACK of its 2xx (sent again when the 2xx is), requests in its dialog (BYE,
re-INVITE, INFO) to its route set's first hop. A call moves legs between
bridges and decides what their requests mean; a leg knows nothing of the
call it is in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..media.engine import Leg as MediaLeg
from ..sip import Request, Response
from ..sip.dialog import Dialog
from ..sip.headers import reason_value
from ..sip.transaction import DEFAULT_TIMERS, ServerTransaction
from .anchor import SDP_TYPE
from .sip_port import ResponseHandler, SipPort, Timer, ignore, next_hop


@dataclass(eq=False, slots=True)
class Leg:
    """One confirmed party: its dialog, the flow it is reached on, and its
    media endpoint. `on_lost(leg)` runs when our 2xx got no ACK in 64*T1."""

    sip: SipPort
    role: str  # "caller" or "callee": the hangup side it stands for
    dialog: Dialog
    peer: object
    media: MediaLeg
    reliable: bool
    on_lost: Callable[[Leg], None]
    # The SDP we last sent it (our offer or answer).
    sdp_sent: bytes = b""
    # Our last 2xx to an INVITE of this leg, sent again until its ACK.
    unacked: tuple[ServerTransaction, Response] | None = None
    retransmit: Timer | None = field(default=None, repr=False)
    # Our ACK of this leg's 2xx, sent again if the 2xx is.
    ack: Request | None = None

    @classmethod
    def of(
        cls,
        sip: SipPort,
        role: str,
        dialog: Dialog,
        flow: object,
        media: MediaLeg,
        *,
        reliable: bool,
        on_lost: Callable[[Leg], None],
        sdp_sent: bytes = b"",
    ) -> Leg:
        """A leg on `dialog`, its requests routed by the dialog's route set
        (first hop), else back on `flow`."""
        peer = next_hop(sip, dialog, flow)
        return cls(sip, role, dialog, peer, media, reliable, on_lost, sdp_sent)

    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    def send(
        self,
        method: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        on_response: ResponseHandler = ignore,
    ) -> Request:
        """A request in the leg's dialog (not ACK); returns it."""
        request = self.dialog.create_request(method, headers=headers, body=body)
        self.sip.send_request(request, self.peer, on_response)
        return request

    def hang_up(self, reason: str | None = None) -> None:
        """BYE, with `Reason` when callbridge (not the other party) ends it."""
        self.stop()
        headers = [("Reason", reason)] if reason else []
        self.send("BYE", headers=headers)

    def hang_up_for(self, cause: str) -> None:
        """BYE with a Reason that says why callbridge ended the call."""
        self.hang_up(reason_value(200, cause))

    # --- our ACK of the leg's 2xx ---------------------------------------------

    def acknowledge(self, body: bytes = b"") -> None:
        """ACK the leg's 2xx (carrying the answer when its 2xx offered)."""
        headers = [SDP_TYPE] if body else []
        self.ack = self.dialog.create_request("ACK", headers=headers, body=body)
        self.sip.send_ack(self.ack, self.peer)

    def reacknowledge(self, response: Response) -> None:
        """Our ACK again, for a 2xx that came again (none yet while the ACK
        waits for the other leg's answer)."""
        if self.ack is not None and self.ack.cseq.seq == response.cseq.seq:
            self.sip.send_ack(self.ack, self.peer)

    # --- our 2xx to the leg's INVITE ------------------------------------------

    def answer_until_acked(self, transaction: ServerTransaction, response: Response) -> None:
        """Send our 2xx, and again on an unreliable flow until its ACK
        (§13.3.1.4); after 64*T1 without one the leg is lost."""
        self.unacked = (transaction, response)
        if self.reliable:
            return
        T1 = DEFAULT_TIMERS.T1
        self.retransmit = self.sip.call_later(
            T1, self._retransmit_2xx, min(2 * T1, DEFAULT_TIMERS.T2), self.sip.time() + 64 * T1
        )

    def acked(self, ack: Request) -> bool:
        """Whether `ack` acknowledges our pending 2xx (which then stops)."""
        if self.unacked is None:
            return False
        _, response = self.unacked
        if ack.cseq.seq != response.cseq.seq:
            return False
        self.unacked = None
        self.stop()
        return True

    def stop(self) -> None:
        """Stop sending our 2xx again (the call is over, or it was ACKed)."""
        if self.retransmit is not None:
            self.retransmit.cancel()
            self.retransmit = None

    def detach(self) -> None:
        """The call is over: stop, and let go of it (no reference cycle
        keeps an ended call alive)."""
        self.stop()
        self.on_lost = _lost_nothing

    def _retransmit_2xx(self, interval: float, give_up_at: float) -> None:
        # A method, not a closure that schedules itself: such a closure is a
        # reference cycle, and it would keep the whole call alive until the
        # garbage collector's next pass over the older objects.
        self.retransmit = None
        if self.unacked is None:
            return
        if self.sip.time() >= give_up_at:
            self.unacked = None
            self.on_lost(self)
            return
        transaction, response = self.unacked
        self.sip.respond(transaction, response)
        self.retransmit = self.sip.call_later(
            interval, self._retransmit_2xx, min(2 * interval, DEFAULT_TIMERS.T2), give_up_at
        )


def _lost_nothing(leg: Leg) -> None:
    pass
