"""SIP dialogs (RFC 3261 §12): the state a user agent keeps for one dialog,
the in-dialog requests built from it and the checks of those it receives.

Sans-IO and timer-free: retransmitting a 2xx until its ACK (§13.3.1.4) and
ending a dialog on 481/408 (§12.2.1.2) are the TU's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, auto

from .errors import ParseError
from .grammar import Params
from .headers import header_key
from .message import Headers, Message, Request, Response, make_response
from .transaction import new_tag as new_tag  # re-exported: the UA takes its tags from here
from .uri import URI, NameAddr, SipURI, parse_name_addr

# Requests whose Contact replaces the remote target (§12.2, RFC 3311 UPDATE,
# RFC 6665 SUBSCRIBE/NOTIFY); they also carry our Contact.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})

# §12.2.2: ACK and CANCEL carry the number of the request they refer to, so
# they are not held to the "higher than the last one" rule.
_SEQ_EXEMPT_METHODS = frozenset({"ACK", "CANCEL"})


class DialogError(ValueError):
    """A message that cannot create or belong to this dialog; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DialogState(Enum):
    EARLY = auto()  # created by a 1xx with a To tag
    CONFIRMED = auto()  # created or confirmed by a 2xx


@dataclass(eq=False, slots=True)
class Dialog:
    """§12.1's dialog state. `remote_tag` is None only for an RFC 2543 peer
    that sent no From tag; `local_seq`/`remote_seq` are None while empty."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: URI
    remote_uri: URI
    local_seq: int | None
    remote_seq: int | None
    remote_target: URI
    route_set: list[NameAddr] = field(default_factory=list)
    secure: bool = False
    local_contact: URI | None = None
    state: DialogState = DialogState.CONFIRMED
    # CSeq number of the last INVITE we sent: its ACK reuses it (§13.2.2.4).
    invite_seq: int | None = None

    @property
    def id(self) -> tuple[str, str, str | None]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog our `request` created with `response`, a 101-299 with a
        To tag (§12.1.2)."""
        if not 101 <= response.status <= 299:
            raise DialogError(f"a {response.status} response creates no dialog")
        local_tag, remote_tag = request.from_.tag, response.to.tag
        if local_tag is None:
            raise DialogError("the request has no From tag")
        if remote_tag is None:
            raise DialogError("the response has no To tag")
        with _read_or_dialog_error():
            remote_target = _contact_uri(response)
            # Record-Route lists proxies from the UAS's side; we walk it back.
            route_set = _record_route(response)[::-1]
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_.uri.copy(),
            remote_uri=request.to.uri.copy(),
            local_seq=request.cseq.seq,
            remote_seq=None,
            remote_target=remote_target,
            route_set=route_set,
            secure=request.uri.scheme == "sips",
            local_contact=request.contacts[0].uri.copy() if request.contacts else None,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            invite_seq=request.cseq.seq if request.method == "INVITE" else None,
        )

    @classmethod
    def from_uas(
        cls, request: Request, local_tag: str, local_contact: URI, *, early: bool = False
    ) -> Dialog:
        """The dialog we create by answering `request` with a response that
        carries `local_tag` in its To (§12.1.1); `early` for a 1xx."""
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_uri=request.to.uri.copy(),
            remote_uri=request.from_.uri.copy(),
            local_seq=None,
            remote_seq=request.cseq.seq,
            remote_target=_contact_uri(request),
            route_set=_record_route(request),
            secure=request.uri.scheme == "sips",
            local_contact=local_contact.copy(),
            state=DialogState.EARLY if early else DialogState.CONFIRMED,
        )

    def create_request(
        self,
        method: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Request:
        """An in-dialog request (§12.2.1.1). The caller adds the top Via with
        a `new_branch()`, since only the transport knows its sent-by; a
        CANCEL is built from the request it cancels (`transaction.make_cancel`)."""
        if method == "CANCEL":
            raise DialogError("a CANCEL copies the request it cancels: use make_cancel()")
        if method == "ACK":
            if self.invite_seq is None:
                raise DialogError("no INVITE of ours to acknowledge")
            seq = self.invite_seq
        else:
            # §8.1.1.5 lets us start anywhere below 2**31; 1 leaves the most room.
            seq = 1 if self.local_seq is None else self.local_seq + 1
            self.local_seq = seq
            if method == "INVITE":
                self.invite_seq = seq
        uri, routes = self._request_uri_and_routes()
        fields = Headers()
        for route in routes:
            fields.add("Route", str(route))
        fields.add("Max-Forwards", "70")
        fields.add("From", str(_tagged(self.local_uri, self.local_tag)))
        fields.add("To", str(_tagged(self.remote_uri, self.remote_tag)))
        fields.add("Call-ID", self.call_id)
        fields.add("CSeq", f"{seq} {method}")
        extra = headers or []
        wants_contact = method in TARGET_REFRESH_METHODS and self.local_contact is not None
        if wants_contact and not any(header_key(name) == "contact" for name, _ in extra):
            fields.add("Contact", f"<{self.local_contact}>")
        for name, value in extra:
            fields.add(name, value)
        return Request(method, uri, fields, body)

    def receive_request(self, request: Request) -> Response | None:
        """Check an in-dialog request (§12.2.2) and take in its CSeq and
        target refresh. None: accepted; otherwise the response to send
        instead of handling it (481 not this dialog, 500 out of order)."""
        if not self._is_ours(request, remote_tag=request.from_.tag, local_tag=request.to.tag):
            return make_response(request, 481)
        if request.method not in _SEQ_EXEMPT_METHODS:
            seq = request.cseq.seq
            if self.remote_seq is not None and seq < self.remote_seq:
                return make_response(request, 500, "Out of Order CSeq")
            self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)
        return None

    def receive_response(self, response: Response) -> None:
        """Take in a response to one of our in-dialog requests, or a 2xx that
        confirms our early dialog (§12.2.1.2, §13.2.2.4)."""
        if not self._is_ours(response, remote_tag=response.to.tag, local_tag=response.from_.tag):
            raise DialogError("the response belongs to another dialog")
        if not 200 <= response.status < 300:
            return
        with _read_or_dialog_error():
            if self.state is DialogState.EARLY and response.cseq.method == "INVITE":
                # The 2xx, not the 1xx, fixes the route set of the confirmed dialog.
                route_set = _record_route(response)[::-1]
                self.state = DialogState.CONFIRMED
                self.route_set = route_set
            if response.cseq.method in TARGET_REFRESH_METHODS:
                self._refresh_target(response)

    def _is_ours(self, message: Message, *, remote_tag: str | None, local_tag: str | None) -> bool:
        return (
            message.call_id == self.call_id
            and local_tag == self.local_tag
            and remote_tag == self.remote_tag
        )

    def _refresh_target(self, message: Message) -> None:
        contacts = [c for c in message.contacts if not c.wildcard]
        if contacts:
            self.remote_target = contacts[0].uri.copy()

    def _request_uri_and_routes(self) -> tuple[URI, list[NameAddr]]:
        if not self.route_set:
            return self.remote_target.copy(), []
        first = self.route_set[0]
        if isinstance(first.uri, SipURI) and "lr" in first.uri.params:
            return self.remote_target.copy(), [route.copy() for route in self.route_set]
        # A strict router (RFC 2543) routes on the Request-URI: it gets the
        # first hop, and the remote target rides at the end of Route.
        rest = [route.copy() for route in self.route_set[1:]]
        return _as_request_uri(first.uri), [*rest, NameAddr(self.remote_target.copy())]


def _tagged(uri: URI, tag: str | None) -> NameAddr:
    return NameAddr(uri.copy(), params=Params([("tag", tag)]) if tag is not None else Params())


@contextmanager
def _read_or_dialog_error() -> Iterator[None]:
    """A response's Contact and Record-Route are first read here, after the
    parser let the response through: one that cannot be read leaves the
    response unusable for the dialog, as a missing Contact does, rather than
    raising through the TU that took it."""
    try:
        yield
    except ParseError as error:
        raise DialogError(f"unreadable response: {error.reason}") from None


def _contact_uri(message: Message) -> URI:
    contacts = [c for c in message.contacts if not c.wildcard]
    if not contacts:
        raise DialogError("a dialog-creating message needs a Contact")
    return contacts[0].uri.copy()


def _record_route(message: Message) -> list[NameAddr]:
    return [parse_name_addr(value) for value in message.headers.get_all("Record-Route")]


def _as_request_uri(uri: URI) -> URI:
    """`uri` without what a Request-URI may not carry (§19.1.1: method, headers)."""
    result = uri.copy()
    if isinstance(result, SipURI):
        result.params.remove("method")
        result.headers = None
    return result
