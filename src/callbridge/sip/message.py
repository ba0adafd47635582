"""SIP messages: parse bytes into a Request or Response, serialize them back
(RFC 3261 §7, §20; RFC 4475 guides what a robust parser accepts).

Parsing validates what every later layer relies on — the start line, Via,
From, To, Call-ID, CSeq, Max-Forwards and Content-Length — and leaves the
other headers as text, read on demand.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ParseError
from .grammar import is_token, split_outside
from .headers import (
    COMPACT_FORMS,
    LIST_HEADERS,
    CSeq,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_via_list,
)
from .uri import (
    URI,
    NameAddr,
    SipURI,
    display_text,
    parse_name_addr,
    parse_name_addr_list,
    parse_uri,
)

SIP_VERSION = "SIP/2.0"
T = TypeVar("T")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits that keep a hostile message from costing more than it is worth."""

    max_message_size: int = 65_535
    max_headers: int = 128
    max_header_length: int = 8_192
    max_uri_length: int = 2_048


DEFAULT_LIMITS = Limits()


class Headers:
    """An ordered multimap of header fields with case-insensitive names.

    Each field keeps its own line, so `Route: a` + `Route: b` and
    `Route: a, b` both survive a round trip as they came.
    """

    __slots__ = ("_cache", "_fields")

    def __init__(self, fields: list[tuple[str, str, str]] | None = None) -> None:
        # (key, name as written, value)
        self._fields: list[tuple[str, str, str]] = fields if fields is not None else []
        # Structured values parsed from the fields, keyed by the header key
        # they come from, and dropped when a field of that key changes.
        self._cache: dict[str, object] = {}

    def parsed(self, key: str, parser: Callable[[Headers], T]) -> T:
        """`parser(self)` for the header `key`, computed once until a field
        of `key` changes.

        The result is shared: copy it before changing it.
        """
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = parser(self)
        return value  # type: ignore[return-value]

    @classmethod
    def of(cls, *pairs: tuple[str, str]) -> Headers:
        headers = cls()
        for name, value in pairs:
            headers.add(name, value)
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value."""
        key = header_key(name)
        for k, _, v in self._fields:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value: fields in order, list headers split at their commas."""
        key = header_key(name)
        values = [v for k, _, v in self._fields if k == key]
        if key in LIST_HEADERS:
            return [
                part.strip()
                for v in values
                for part in split_outside(v, ",", angles=key != "via")
                if part.strip()
            ]
        return values

    def add(self, name: str, value: str) -> None:
        key = header_key(name)
        self._cache.pop(key, None)
        self._fields.append((key, canonical_name(key, name), value))

    def prepend(self, name: str, value: str) -> None:
        key = header_key(name)
        self._cache.pop(key, None)
        self._fields.insert(0, (key, canonical_name(key, name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of `name` with one, where the first one was."""
        key = header_key(name)
        self._cache.pop(key, None)
        for i, (k, _, _) in enumerate(self._fields):
            if k == key:
                self._fields[i] = (key, canonical_name(key, name), value)
                self._fields[i + 1 :] = [f for f in self._fields[i + 1 :] if f[0] != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._cache.pop(key, None)
        self._fields = [f for f in self._fields if f[0] != key]

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first value (one list element) of `name`."""
        key = header_key(name)
        self._cache.pop(key, None)
        for i, (k, n, v) in enumerate(self._fields):
            if k != key:
                continue
            parts = split_outside(v, ",", angles=key != "via") if key in LIST_HEADERS else [v]
            if len(parts) > 1:
                self._fields[i] = (k, n, ",".join(parts[1:]).strip())
            else:
                del self._fields[i]
            return parts[0].strip()
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def copy(self) -> Headers:
        return Headers(list(self._fields))

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._fields]!r})"


def _read_cseq(headers: Headers) -> CSeq:
    return parse_cseq(headers.get("CSeq") or "")


def _vias_of(values: list[str]) -> list[Via]:
    return [via for value in values for via in parse_via_list(value)]


def _read_vias(headers: Headers) -> list[Via]:
    return _vias_of([v for k, _, v in headers._fields if k == "via"])


# From and To come back unchanged in every message of a transaction and a
# dialog. Parsed values are shared and never changed in place (a change goes
# to a `.copy()`), so one parse serves them all. Bounded: a flood of new
# addresses only empties it.
_ADDRESSES: dict[str, NameAddr] = {}
_ADDRESSES_KEPT = 8192


def _address(text: str) -> NameAddr:
    found = _ADDRESSES.get(text)
    if found is None:
        found = parse_name_addr(text)
        if len(_ADDRESSES) >= _ADDRESSES_KEPT:
            _ADDRESSES.clear()
        _ADDRESSES[text] = found
    return found


def _read_from(headers: Headers) -> NameAddr:
    return _address(headers.get("From") or "")


def _read_to(headers: Headers) -> NameAddr:
    return _address(headers.get("To") or "")


def _contacts_of(values: list[str]) -> list[NameAddr]:
    return [na for v in values for na in parse_name_addr_list(v, allow_wildcard=True)]


def _read_contacts(headers: Headers) -> list[NameAddr]:
    return _contacts_of([v for k, _, v in headers._fields if k == "contact"])


class _Message:
    """What requests and responses share: headers, body and typed accessors."""

    __slots__ = ()
    headers: Headers
    body: bytes
    version: str

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("cseq", _read_cseq)

    @property
    def vias(self) -> list[Via]:
        return self.headers.parsed("via", _read_vias)

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise ParseError(400, "Missing Via")
        return vias[0]

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("from", _read_from)

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("to", _read_to)

    @property
    def contacts(self) -> list[NameAddr]:
        return self.headers.parsed("contact", _read_contacts)

    def _head_lines(self) -> list[str]:
        lines = [f"{name}: {value}" for name, value in self.headers if name != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return lines

    def to_bytes(self) -> bytes:
        head = "\r\n".join([self.start_line(), *self._head_lines()])
        return head.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + self.body

    def start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(eq=False, slots=True)
class Request(_Message):
    method: str
    uri: URI
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


@dataclass(eq=False, slots=True)
class Response(_Message):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def start_line(self) -> str:
        # A reason phrase may be a peer's, relayed: no control character in it.
        return f"{self.version} {self.status} {display_text(self.reason)}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r}>"


Message = Request | Response

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_VERSION_RE = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.I)
_SINGLE = frozenset(("from", "to", "call-id", "cseq", "max-forwards", "content-length"))


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split a message into its head (start line + headers) and body."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    # A robust parser also takes bare LF line ends.
    match = _BLANK_LINE_RE.search(data)
    if match is None:
        return data, b""
    return data[: match.start()], data[match.end() :]


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS, *, stream: bool = False) -> Message:
    """Parse one whole SIP message.

    `stream` says it came framed off a stream transport, where the
    Content-Length is what cut it; on a datagram a body longer than
    Content-Length is truncated, a shorter one is an error (RFC 3261 §18.3).
    """
    if len(data) > limits.max_message_size:
        raise ParseError(513, "Message Too Large")
    data = data.lstrip(b"\r\n")  # keep-alive CRLFs before a message are harmless
    raw_head, body = split_head(data)
    head = raw_head.decode("utf-8", "surrogateescape")
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    head = head.replace("\r\n", "\n")
    if "\r" in head:
        raise ParseError(400, "Bare CR in header")
    lines = head.split("\n")
    if len(lines) > 1 and not lines[-1]:
        # A datagram that ends right after its last header line, without the
        # empty line: nothing follows, so nothing is ambiguous.
        lines.pop()
    message: Message = _parse_start_line(lines[0], limits)
    headers = _parse_header_lines(lines, limits)
    message.headers = headers
    content_length = _check_required(message)
    message.body = _frame_body(content_length, body, stream)
    return message


def _parse_start_line(line: str, limits: Limits) -> Message:
    if line.startswith("SIP/") or line[:4].upper() == "SIP/":
        return _parse_status_line(line)
    parts = line.split(" ")
    if len(parts) != 3:
        if len(parts) > 3 and len(line) > limits.max_uri_length:
            raise ParseError(414, "Request-URI Too Long")
        raise ParseError(400, "Malformed request line")
    method, uri_text, version = parts
    if not is_token(method):
        raise ParseError(400, "Malformed method")
    if len(uri_text) > limits.max_uri_length:
        raise ParseError(414, "Request-URI Too Long")
    _check_version(version)
    uri = parse_uri(uri_text)
    if isinstance(uri, SipURI) and uri.headers is not None:
        # RFC 3261 §19.1.1 forbids headers in a Request-URI (RFC 4475 §3.1.2.11).
        raise ParseError(400, "Request-URI with headers")
    return Request(method, uri, Headers(), b"", SIP_VERSION)


def _parse_status_line(line: str) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    _check_version(version)
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise ParseError(400, "Malformed status code")
    return Response(int(code), reason.strip(), Headers(), b"", SIP_VERSION)


def _check_version(version: str) -> None:
    if version == SIP_VERSION:
        return
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise ParseError(400, "Malformed SIP version")
    if (match.group(1).lstrip("0"), match.group(2).lstrip("0")) != ("2", ""):
        raise ParseError(505, "Version Not Supported")


def _parse_header_lines(lines: list[str], limits: Limits) -> Headers:
    if len(lines) - 1 > limits.max_headers:
        raise ParseError(400, "Too Many Headers")
    max_length = limits.max_header_length
    if max(map(len, lines)) > max_length and any(len(line) > max_length for line in lines[1:]):
        raise ParseError(400, "Header Too Long")
    fields: list[tuple[str, str, str]] = []
    append = fields.append
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ParseError(400, f"Malformed header line {line[:40]!r}")
        known = _HEADER_NAMES.get(name) or _learn_header_name(name)
        append((known[0], known[1], value.strip(" \t")))
    return Headers(fields)


# Header names as written -> (key, canonical name); bounded, since a hostile
# peer could send endless new names.
_HEADER_NAMES: dict[str, tuple[str, str]] = {}
_HEADER_NAMES_MAX = 4096


def _learn_header_name(written: str) -> tuple[str, str]:
    name = written.rstrip(" \t")
    if not is_token(name):
        raise ParseError(400, f"Malformed header name {written[:40]!r}")
    key = COMPACT_FORMS.get(name.lower(), name.lower())
    known = (key, canonical_name(key, name))
    if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
        _HEADER_NAMES[written] = known
    return known


def _frame_body(content_length: str | None, body: bytes, stream: bool) -> bytes:
    if content_length is None:
        if stream:
            raise ParseError(400, "Missing Content-Length")
        return body
    if not content_length.isdigit() or not content_length.isascii() or len(content_length) > 10:
        raise ParseError(400, "Malformed Content-Length")
    length = int(content_length)
    if length > len(body):
        raise ParseError(400, "Content-Length larger than body")
    return body[:length]


def _check_required(message: Message) -> str | None:
    """Check the headers every later layer relies on and keep them parsed.

    One pass over the fields finds the missing and the repeated ones; the
    values parsed here are the ones the message's accessors return. Returns
    the Content-Length text, if any.
    """
    first: dict[str, str] = {}
    vias: list[str] = []
    contacts: list[str] = []
    for key, _, value in message.headers._fields:
        if key == "via":
            vias.append(value)
        elif key == "contact":
            contacts.append(value)
        elif key not in first:
            first[key] = value
        elif key in _SINGLE:
            raise ParseError(400, f"Duplicate {canonical_name(key, key)}")
    if not vias:
        raise ParseError(400, "Missing Via")
    for key in ("from", "to", "call-id", "cseq"):
        if key not in first:
            raise ParseError(400, f"Missing {canonical_name(key, key)}")
    cache = message.headers._cache
    cseq = cache["cseq"] = parse_cseq(first["cseq"])
    # A Via field that is empty or only commas holds no Via, and every later
    # layer answers along the top one.
    cache["via"] = _vias_of(vias)
    if not cache["via"]:
        raise ParseError(400, "Missing Via")
    cache["from"] = _address(first["from"])
    cache["to"] = _address(first["to"])
    call_id = first["call-id"]
    if not call_id or " " in call_id or "\t" in call_id:
        raise ParseError(400, "Malformed Call-ID")
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise ParseError(400, "CSeq method does not match the request method")
        max_forwards = first.get("max-forwards")
        if max_forwards is not None and not _is_max_forwards(max_forwards):
            raise ParseError(400, "Malformed Max-Forwards")
        if contacts:
            cache["contact"] = _contacts_of(contacts)
    return first.get("content-length")


def _is_max_forwards(text: str) -> bool:
    digits = text.lstrip("0") or "0"
    return len(digits) <= 3 and digits.isdigit() and digits.isascii() and int(digits) <= 255


def status_reason(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")


REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED_TO_RESPONSE = ("via", "from", "to", "call-id", "cseq")
# Requests whose 101-299 responses form a dialog and so carry the request's
# Record-Route back to the caller (RFC 3261 §12.1.1, RFC 6665 §4.1.3).
_DIALOG_FORMING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """Build a response to `request`: Via, From, To, Call-ID, CSeq copied,
    with `to_tag` added to To when it has none yet; a response that forms a
    dialog (101-299 to an INVITE, say) copies Record-Route too, so the
    caller's later requests pass the proxies that asked to stay on the path."""
    copied_keys: tuple[str, ...] = _COPIED_TO_RESPONSE
    if 100 < status < 300 and request.method in _DIALOG_FORMING:
        copied_keys = (*_COPIED_TO_RESPONSE, "record-route")
    fields = [f for f in request.headers._fields if f[0] in copied_keys]
    copied = Headers(fields)
    # The copied fields are the same text, so their parsed values carry over.
    cache = request.headers._cache
    copied._cache = {k: v for k, v in cache.items() if k in _COPIED_TO_RESPONSE}
    if to_tag is not None and status > 100 and request.to.tag is None:
        for i, (key, name, value) in enumerate(fields):
            if key == "to":
                fields[i] = (key, name, f"{value};tag={to_tag}")
        copied._cache.pop("to", None)
    response = Response(status, reason or status_reason(status), copied, body)
    for name, value in headers or ():
        response.headers.add(name, value)
    return response
