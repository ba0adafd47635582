"""What calls need of the SIP service (`SipPort`): sending requests and
ACKs, answering, Contact and routing, and the clock and timers. The service
in app.py owns the sockets and the transaction layer; the unit tests of
calls put a fake with a fake clock in its place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..sip import Request, Response
from ..sip.dialog import Dialog
from ..sip.transaction import ClientTransaction, ServerTransaction
from ..sip.uri import URI
from .registrar import Binding

ResponseHandler = Callable[[ClientTransaction, Response], None]


class Timer(Protocol):
    """A pending `call_later`."""

    def cancel(self) -> None: ...


class SipPort(Protocol):
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

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        """Run `callback(*args)` `delay` seconds from `time()` (the service's
        clock: the loop's, or a test's)."""
        ...


def ignore(_: ClientTransaction, __: Response) -> None:
    """For requests whose answer changes nothing (BYE, CANCEL)."""


def next_hop(sip: SipPort, dialog: Dialog, flow: object) -> object:
    """Where the in-dialog requests of `dialog` go: its first route, when
    proxies record-routed it (RFC 3261 §12.2.1.1), else back on `flow`."""
    if not dialog.route_set:
        return flow
    return sip.next_hop(dialog.route_set[0].uri, flow)
