"""Dialing: ringing one party of a call — every registered device of an
internal line at once, or an external line's server — until one answers.

One INVITE per target (a fork), each a dialog of its own. The first usable
2xx wins and the other forks are cancelled (with `Reason`); a 2xx that
comes after (another device that answered at the same moment, or one that
crossed our CANCEL) is ACKed and BYEd. An external line's 401/407 is
answered once with its login. What the responses mean for the call is the
owner's: `DialingOwner` hears of progress, the answer and the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..sip import Headers, Request, Response
from ..sip.dialog import Dialog, DialogError
from ..sip.digest import DigestError, answer_challenge, parse_challenge, select_challenge
from ..sip.headers import reason_value
from ..sip.transaction import ClientTransaction, make_cancel, new_call_id, new_tag
from ..sip.uri import URI, NameAddr, name_addr
from . import bounds
from .anchor import SDP_TYPE
from .sip_port import SipPort, ignore, next_hop
from .trunks import Trunk

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER"
COMPLETED_ELSEWHERE = reason_value(200, "Call completed elsewhere")


@dataclass(frozen=True, slots=True)
class Target:
    """Where one fork goes: a registered device, or an external line's
    server (whose digest challenge is answered with its login)."""

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
    # A browser (registered over WebSocket): it takes WebRTC SDP only.
    webrtc: bool = False


@dataclass(eq=False, slots=True)
class Fork:
    """An INVITE to one target."""

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
    # Sent the WebRTC offer (a browser): its answer is for the WebRTC leg.
    webrtc: bool = False


class DialingOwner(Protocol):
    """What a dialing tells the one who dials."""

    def progress(self, fork: Fork, response: Response) -> None:
        """A 180 or 183 (not 100) from a fork, while still dialing."""
        ...

    def answered(self, fork: Fork, response: Response) -> None:
        """A fork's 2xx while still dialing: `connected(fork)` takes it, or
        `unusable(fork, response)` refuses it."""
        ...

    def failed(self) -> None:
        """Every fork ended without an answer (`statuses()` says how)."""
        ...


class Dialing:
    """The forks of one party, from `start` until one is `connected` or
    they are all cancelled or failed. `register(call_id, tag)` makes each
    fork's dialog the owner's (the B2BUA's dialog table)."""

    def __init__(
        self,
        sip: SipPort,
        owner: DialingOwner,
        *,
        user_agent: str,
        register: Callable[[str, str], None],
    ) -> None:
        self.sip = sip
        self.owner = owner
        self.user_agent = user_agent
        self.register = register
        self.forks: list[Fork] = []
        # From start until a fork is connected or the dialing is stopped.
        self.active = False
        self._starting = False

    def start(
        self,
        targets: tuple[Target, ...] | list[Target],
        sdp: bytes,
        *,
        webrtc_sdp: bytes | None = None,
        display_name: str | None = None,
        max_forwards: int = 70,
    ) -> None:
        """Send an INVITE to every target (with `sdp`, or none for a delayed
        offer; a browser target with `webrtc_sdp` when given); `failed()` at
        once when every one failed as it was sent."""
        self.active = self._starting = True
        for target in targets:
            webrtc = target.webrtc and webrtc_sdp is not None
            body = webrtc_sdp if webrtc and webrtc_sdp is not None else sdp
            self._fork(target, body, display_name, max_forwards, webrtc=webrtc)
        self._starting = False
        if self.active and all(fork.final for fork in self.forks):
            self.active = False
            self.owner.failed()

    def statuses(self) -> list[int]:
        """The final status of every fork (500 for one that has none)."""
        return [fork.final or 500 for fork in self.forks]

    def connected(self, winner: Fork) -> None:
        """`winner`'s 2xx is taken: the other forks are cancelled."""
        self.active = False
        for fork in self.forks:
            if fork is not winner:
                self.cancel_fork(fork, COMPLETED_ELSEWHERE)

    def unusable(self, fork: Fork, response: Response) -> None:
        """A 2xx the owner cannot use (no SDP, a bad dialog): ACKed and
        BYEd, counted as failed; `failed()` if it was the last fork."""
        self.refuse(fork, response)
        fork.final = 502
        if self.active and all(f.final for f in self.forks):
            self.active = False
            self.owner.failed()

    def cancel(self, reason: str) -> None:
        """Stop dialing: CANCEL every fork that has not answered."""
        self.active = False
        for fork in self.forks:
            self.cancel_fork(fork, reason)

    def stop(self) -> None:
        """Stop listening for answers (a late 2xx is refused)."""
        self.active = False

    def detach(self) -> None:
        """The call is over: stop, and let go of it (the responses still to
        come only need the forks), so it goes at once, not at the garbage
        collector's next pass over a reference cycle."""
        self.active = False
        self.owner = _NOBODY
        self.register = _nowhere

    def refuse(self, fork: Fork, response: Response) -> None:
        """A 2xx we cannot use (another device won, or it is unusable): ACK and BYE it."""
        try:
            dialog = Dialog.from_uac(fork.request, response)
        except DialogError:
            return
        peer = next_hop(self.sip, dialog, fork.peer)
        self.sip.send_ack(dialog.create_request("ACK"), peer)
        bye = dialog.create_request("BYE", headers=[("Reason", COMPLETED_ELSEWHERE)])
        self.sip.send_request(bye, peer, ignore)

    def fork_of(self, call_id: str) -> Fork | None:
        return next((f for f in self.forks if f.request.call_id == call_id), None)

    def cancel_fork(self, fork: Fork, reason: str) -> None:
        if fork.final is not None or fork.cancel_reason is not None:
            return
        fork.cancel_reason = reason
        if fork.provisional:
            self._send_cancel(fork)

    # --- the forks ---------------------------------------------------------------

    def _fork(
        self,
        target: Target,
        sdp: bytes,
        display_name: str | None,
        max_forwards: int,
        *,
        webrtc: bool = False,
    ) -> None:
        display = None
        if display_name and target.trunk is None:
            display = bounds.printable(display_name, bounds.RAW_MAX)
        from_ = name_addr(target.from_user, target.from_host, display_name=display, tag=new_tag())
        headers = Headers.of(
            ("Max-Forwards", str(max_forwards)),
            ("From", from_),
            ("To", name_addr(target.to_user, target.from_host)),
            ("Call-ID", new_call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", self.sip.contact(target.from_user, target.peer)),
            ("Allow", ALLOW),
            ("User-Agent", self.user_agent),
        )
        if sdp:
            headers.add(*SDP_TYPE)
        if target.asserted_user:
            headers.add("P-Asserted-Identity", name_addr(target.asserted_user, target.from_host))
        for route in target.routes:
            headers.add("Route", str(route))
        request = Request("INVITE", target.uri.copy(), headers, sdp)
        fork = Fork(target.peer, request, trunk=target.trunk, webrtc=webrtc)
        self.forks.append(fork)
        self.register(request.call_id, request.from_.tag or "")
        self._send(fork)

    def _send(self, fork: Fork) -> None:
        self.sip.send_request(fork.request, fork.peer, lambda txn, r: self._response(fork, txn, r))

    def _response(self, fork: Fork, transaction: ClientTransaction, response: Response) -> None:
        fork.transaction = transaction
        status = response.status
        if status < 200:
            if status > 100 or not fork.provisional:
                fork.provisional = True
                if fork.cancel_reason is not None and not fork.cancelled:
                    self._send_cancel(fork)
            if status > 100 and self.active and not fork.cancelled:
                self.owner.progress(fork, response)
            return
        if status in (401, 407) and self._authenticate(fork, response):
            return
        fork.final = status
        if status >= 300:
            if self.active and not self._starting and all(f.final for f in self.forks):
                self.active = False
                self.owner.failed()
            return
        # A 2xx: the winner or a late one. (A transaction hands only its first
        # 2xx up; one that comes again is a stray, see `Call.stray_answer`.)
        if self.active:
            self.owner.answered(fork, response)
        else:
            self.refuse(fork, response)

    def _authenticate(self, fork: Fork, response: Response) -> bool:
        """Answer an external line's 401/407 with its login, once."""
        trunk = fork.trunk
        if trunk is None or fork.authenticated or not self.active:
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
        self._send(fork)
        return True

    def _send_cancel(self, fork: Fork) -> None:
        fork.cancelled = True
        # The CANCEL keeps the INVITE's Via (its branch names what it cancels).
        cancel = make_cancel(fork.request)
        if fork.cancel_reason:
            cancel.headers.add("Reason", fork.cancel_reason)
        self.sip.send_request(cancel, fork.peer, ignore)


class _Nobody:
    """The owner of a detached dialing: it hears of nothing."""

    def progress(self, fork: Fork, response: Response) -> None:
        pass

    def answered(self, fork: Fork, response: Response) -> None:
        pass

    def failed(self) -> None:
        pass


_NOBODY = _Nobody()


def _nowhere(call_id: str, tag: str) -> None:
    pass
