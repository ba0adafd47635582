"""Header names (canonical and compact forms) and the structured headers the
core reads: Via (with RFC 3581 rport), CSeq (RFC 3261 §20)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ParseError
from .grammar import Params, is_token, quote, read_comment, split_outside
from .uri import HOST_GROUPS, display_text, format_hostport, host_of_groups, parse_hostport

# RFC 3261 §7.3.3 and the IANA registry's compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "Identity",
        "Identity-Info",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "Min-SE",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reject-Contact",
        "Replaces",
        "Reply-To",
        "Request-Disposition",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Service-Route",
        "Session-Expires",
        "SIP-ETag",
        "SIP-If-Match",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): only
# these may be split into several values or combined into one line.
LIST_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "require",
        "route",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)


def header_key(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT_FORMS.get(key, key)
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


# Names as the code writes them -> their keys: one shared string per key
# instead of a new lower-cased copy for every header added. Bounded.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 1024


def canonical_name(key: str, spelling: str) -> str:
    """The name to write for `key`; unknown headers keep their spelling."""
    return _CANONICAL.get(key, spelling)


_SENT_PROTOCOL_RE = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+", re.I)


@dataclass(eq=False, slots=True)
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by a server, None if absent or empty."""
        value = self.params.get("rport")
        return int(value) if value and _rport_ok(value) else None

    @property
    def wants_rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        return format_hostport(self.host, self.port)

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{self.params}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


# The common shape, `SIP/2.0/UDP host:port;params`, host checked in the same pass.
_VIA_FAST_RE = re.compile(
    rf"[Ss][Ii][Pp]/2\.0/([A-Za-z0-9\-.!%*_+`'~]++) {HOST_GROUPS}(?::(\d{{1,5}}))?(;[^,\"\s]*+)?"
)


def parse_via(text: str) -> Via:
    fast = _VIA_FAST_RE.fullmatch(text.strip())
    if fast is not None:
        transport, name, ipv4, ipv6, port, params = fast.groups()
        host = host_of_groups(name, ipv4, ipv6)
        if host is not None and (port is None or int(port) <= 65535):
            via = Via(
                transport.upper(),
                host,
                None if port is None else int(port),
                Params.parse(params) if params else Params(),
            )
            if not params or "rport" not in params.lower() or _rport_ok(via.params.get("rport")):
                return via
    return _parse_via_slowly(text)


def _rport_ok(value: str | None) -> bool:
    return not value or (
        len(value) <= 5 and value.isdigit() and value.isascii() and int(value) <= 65535
    )


def _parse_via_slowly(text: str) -> Via:
    match = _SENT_PROTOCOL_RE.match(text)
    if not match:
        raise ParseError(400, "Malformed Via")
    rest = text[match.end() :]
    sent_by, semi, params = rest.partition(";")
    sent_by = sent_by.strip()
    # "host : port" with spaces is allowed by LWS around the colon.
    if " " in sent_by or "\t" in sent_by:
        sent_by = "".join(sent_by.split())
    host, port = parse_hostport(sent_by)
    via = Via(match.group(1).upper(), host, port, Params.parse(semi + params) if semi else Params())
    if not _rport_ok(via.params.get("rport")):
        raise ParseError(400, "Malformed rport")
    return via


def parse_via_list(text: str) -> list[Via]:
    return [parse_via(part) for part in split_outside(text, ",", angles=False) if part.strip()]


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    number, _, method = text.strip().partition(" ")
    method = method.strip()
    if not number.isdigit() or not number.isascii() or not is_token(method):
        raise ParseError(400, "Malformed CSeq")
    # RFC 3261 §8.1.1.5: the number MUST be less than 2**31.
    number = number.lstrip("0") or "0"
    if len(number) > 10 or int(number) >= 2**31:
        raise ParseError(400, "CSeq number out of range")
    seq = int(number)
    return CSeq(seq, method)


@dataclass(frozen=True, slots=True)
class Product:
    """One `name/version` of a Server or User-Agent value (RFC 3261 §20.35)."""

    name: str
    version: str | None = None


def parse_products(text: str) -> list[Product | str]:
    """Split a Server or User-Agent value into products and comments.

    `Yealink SIP-T46U 108.86.0.45 (build 3; "lab") (x)` gives products and
    the comments' unescaped text, in order. A word that is not a token is
    kept as a product name, as phones in the field write such values.
    """
    items: list[Product | str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch == "(":
            comment, i = read_comment(text, i)
            items.append(comment)
        else:
            end = i
            while end < n and text[end] not in " \t(":
                end += 1
            name, _, version = text[i:end].partition("/")
            items.append(Product(name, version or None))
            i = end
    return items


def reason_value(cause: int, text: str, *, protocol: str = "SIP") -> str:
    """A Reason value (RFC 3326), `SIP;cause=480;text="..."`, its text quoted
    whatever it holds."""
    return f"{protocol};cause={cause};text={quote(display_text(text))}"
