"""URIs (sip, sips, tel and any other absolute URI) and name-addr / addr-spec
values as they appear in To, From, Contact, Route and Record-Route
(RFC 3261 §19.1, §20.10, §25.1; RFC 3966; RFC 5118 for IPv6)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote as percent_encode
from urllib.parse import unquote

from .errors import ParseError
from .grammar import Params, quote, read_quoted, split_outside

# Whitespace, delimiters and control characters must be escaped in a URI.
_BAD_URI_CHAR_RE = re.compile(r'[\x00-\x20\x7f<>"]')
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# The fast-path patterns below are written so that a string matches one way
# only: runs of one character class are separated by characters outside it,
# and the runs are possessive (`*+`, `++`), so no failed match backtracks.
#
# hostname = *( domainlabel "." ) toplabel [ "." ], a label being alphanums
# with inner hyphens and a toplabel starting with a letter (RFC 3261 §25.1).
_LABEL_TAIL = r"(?:-++[A-Za-z0-9]++)*+"
_HOSTNAME = rf"(?:[A-Za-z0-9]++{_LABEL_TAIL}\.)*[A-Za-z][A-Za-z0-9]*+{_LABEL_TAIL}\.?"
_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_HOSTNAME_RE = re.compile(_HOSTNAME)
_IPV4_RE = re.compile(_IPV4)
# host = hostname / IPv4address / IPv6reference as three groups of a fast
# regex; `host_of_groups` finishes the check the pattern cannot make.
HOST_GROUPS = rf"(?:({_HOSTNAME})|({_IPV4})|(\[[0-9A-Fa-f:.]+\]))"
# user = 1*( unreserved / escaped / user-unreserved );
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ).
_USER_CHARS = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]"
_PASSWORD_CHARS = r"[A-Za-z0-9\-_.!~*'()&=+$,]"
_USER = rf"(?={_USER_CHARS}|%){_USER_CHARS}*+(?:%[0-9A-Fa-f]{{2}}{_USER_CHARS}*+)*+"
_PASSWORD = rf"{_PASSWORD_CHARS}*+(?:%[0-9A-Fa-f]{{2}}{_PASSWORD_CHARS}*+)*+"
_USER_RE = re.compile(_USER)
_PASSWORD_RE = re.compile(_PASSWORD)


def parse_host(text: str) -> str:
    """Validate a host: hostname, IPv4 address or bracketed IPv6 reference."""
    if text.startswith("["):
        if not text.endswith("]") or not _is_ipv6(text[1:-1]):
            raise ParseError(400, "Malformed IPv6 reference")
        return text
    if _IPV4_RE.fullmatch(text):
        if not _is_ipv4(text):
            raise ParseError(400, "Malformed IPv4 address")
        return text
    if not _HOSTNAME_RE.fullmatch(text):
        raise ParseError(400, f"Malformed host {text!r:.60}")
    return text


def host_of_groups(name: str | None, ipv4: str | None, ipv6: str | None) -> str | None:
    """The host HOST_GROUPS matched, or None if its address is out of range."""
    if name is not None:
        return name
    if ipv4 is not None:
        return ipv4 if _is_ipv4(ipv4) else None
    return ipv6 if ipv6 is not None and _is_ipv6(ipv6[1:-1]) else None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
_IPV4_IN_RANGE_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _is_ipv4(text: str) -> bool:
    """A dotted quad whose octets are all 0-255 (1 to 3 digits each)."""
    return _IPV4_IN_RANGE_RE.fullmatch(text) is not None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        # RFC 3261's ABNF lets "2001:db8:::192.0.2.1" through; RFC 5118 §4.10
        # asks a robust parser to take it, as if the extra colon were absent.
        if ":::" not in text or "::::" in text:
            return False
        return _is_ipv6(text.replace(":::", "::", 1))
    return True


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split `host[:port]`, with IPv6 references in brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(400, "Malformed IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if _ else ""
    host = parse_host(host)
    if not rest:
        return host, None
    port = rest[1:]
    if rest[0] != ":" or not (0 < len(port) <= 5 and port.isdigit() and port.isascii()):
        raise ParseError(400, f"Malformed port in {text!r:.60}")
    if int(port) > 65535:
        raise ParseError(400, "Port out of range")
    return host, int(port)


def format_hostport(host: str, port: int | None = None) -> str:
    """`host[:port]`; an IPv6 address as the socket API writes it gets its brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


@dataclass(eq=False, slots=True)
class SipURI:
    """A sip: or sips: URI. `user` and `password` keep their %-escapes."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=Params)
    headers: str | None = None  # the text after "?", kept as received

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return None if value is None else value.lower()

    def copy(self) -> SipURI:
        return SipURI(
            self.scheme,
            self.host,
            self.user,
            self.password,
            self.port,
            self.params.copy(),
            self.headers,
        )

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(format_hostport(self.host, self.port))
        out.append(str(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        # RFC 3261 §19.1.4: user and password compare case-sensitively, the
        # rest case-insensitively; an escaped unreserved character equals the
        # character itself; a default left out differs from one written out.
        if not isinstance(other, SipURI):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and _same_escapes(self.user) == _same_escapes(other.user)
            and _same_escapes(self.password) == _same_escapes(other.password)
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and _params_match(self.params, other.params)
            and _uri_headers(self.headers) == _uri_headers(other.headers)
        )

    def __hash__(self) -> int:
        return hash((self.scheme, _same_escapes(self.user), self.host.lower(), self.port))

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"


_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_RESERVED = frozenset(";/?:@&=+$,")
# URI parameters that must match when either side has them (RFC 3261 §19.1.4).
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _unescape_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return match.group(0).upper() if char in _RESERVED else char


def _same_escapes(text: str | None) -> str | None:
    """`text` with every escape that need not be one decoded."""
    if text is None or "%" not in text:
        return text
    return _ESCAPE_RE.sub(_unescape_unreserved, text)


def _params_match(ours: Params, theirs: Params) -> bool:
    mine = {_same_escapes(k.lower()): v for k, v in ours.items()}
    other = {_same_escapes(k.lower()): v for k, v in theirs.items()}
    for name in mine.keys() & other.keys():
        a, b = mine[name], other[name]
        if (a is None) != (b is None) or (
            a is not None and b is not None and _same_escapes(a.lower()) != _same_escapes(b.lower())
        ):
            return False
    return all((name in mine) == (name in other) for name in _SIGNIFICANT_PARAMS)


def _uri_headers(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    headers: dict[str, str] = {}
    for pair in text.split("&"):
        name, _, value = pair.partition("=")
        headers[unquote(name).lower()] = unquote(value)
    return headers


@dataclass(eq=False, slots=True)
class TelURI:
    """A tel: URI (RFC 3966): a global (+...) or local number with params."""

    number: str
    params: Params = field(default_factory=Params)
    scheme: str = "tel"

    def copy(self) -> TelURI:
        return TelURI(self.number, self.params.copy())

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelURI):
            return NotImplemented
        strip = str.maketrans("", "", "-.()")
        return self.number.translate(strip) == other.number.translate(strip)

    def __hash__(self) -> int:
        return hash(self.number.translate(str.maketrans("", "", "-.()")))

    def __repr__(self) -> str:
        return f"TelURI({str(self)!r})"


@dataclass(eq=True, frozen=True, slots=True)
class AbsoluteURI:
    """Any other absolute URI (mailto:, urn:, an unknown scheme), kept opaque."""

    scheme: str
    rest: str

    def copy(self) -> AbsoluteURI:
        return self

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


URI = SipURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> URI:
    """Parse an absolute URI; sip/sips/tel are parsed into their parts."""
    scheme, colon, rest = text.partition(":")
    lowered = scheme.lower()
    if lowered == "sip" or lowered == "sips":
        fast = _SIP_URI_FAST_RE.fullmatch(rest)
        if fast is not None:
            uri = _sip_uri_from_match(lowered, fast)
            if uri is not None:
                return uri
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(400, f"Malformed URI {text!r:.60}")
    if not rest or _BAD_URI_CHAR_RE.search(rest):
        raise ParseError(400, f"Malformed URI {text!r:.60}")
    if lowered == "sip" or lowered == "sips":
        return _parse_sip_uri_slowly(lowered, rest)
    if lowered == "tel":
        number, semi, params = rest.partition(";")
        if not number:
            raise ParseError(400, "Malformed tel URI")
        return TelURI(number, Params.parse(semi + params))
    return AbsoluteURI(lowered, rest)


# The common shape in one pass: user[:password]@host[:port][;params][?headers].
# Every repeated group has branches that share no first character, and "@" ends
# the userinfo, so a failed match costs time linear in the text. No "@" may
# follow the host: where one does, the user part is the question, and the
# slow path answers it. Nothing that must be escaped matches at all.
_SIP_URI_BODY = (
    rf"(?:({_USER})(?::({_PASSWORD}))?@)?"
    rf"{HOST_GROUPS}"
    r"(?::(\d{1,5}))?"
    r'(;[^?@\x00-\x20\x7f<>"]*+)?'
    r'(?:\?([^@\x00-\x20\x7f<>"]*+))?'
)
_SIP_URI_FAST_RE = re.compile(_SIP_URI_BODY)


def _sip_uri_from_match(scheme: str, fast: re.Match[str]) -> SipURI | None:
    return _sip_uri_of(scheme, fast.groups())


def _sip_uri_of(scheme: str, groups: tuple[str | None, ...]) -> SipURI | None:
    """The SipURI whose parts _SIP_URI_BODY matched, None if out of range."""
    user, password, name, ipv4, ipv6, port, params, headers = groups
    host = host_of_groups(name, ipv4, ipv6)
    if host is None or (port is not None and int(port) > 65535):
        return None
    return SipURI(
        scheme,
        host,
        user,
        password,
        None if port is None else int(port),
        Params.parse(params) if params else Params(),
        headers,
    )


def _parse_sip_uri_slowly(scheme: str, rest: str) -> SipURI:
    user = password = None
    # The user part may itself hold ";" and "?" (RFC 4475 §3.1.1.9), so the
    # userinfo is found first: everything before the "@", if it is one.
    userinfo, at, main = rest.partition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
    elif at:
        user = userinfo
    if at and _USER_RE.fullmatch(user or "") and _PASSWORD_RE.fullmatch(password or ""):
        rest = main
    elif at and "?" not in userinfo:
        raise ParseError(400, "Malformed userinfo in URI")
    else:
        user = password = None
    main, qmark, headers = rest.partition("?")
    hostport, semi, params = main.partition(";")
    if not hostport:
        raise ParseError(400, "URI without host")
    host, port = parse_hostport(hostport)
    return SipURI(
        scheme,
        host,
        user,
        password,
        port,
        Params.parse(semi + params) if semi else Params(),
        headers if qmark else None,
    )


@dataclass(eq=False, slots=True)
class NameAddr:
    """`"Display" <uri>;params` or a bare addr-spec with header params.

    `wildcard` is the Contact: * form of a REGISTER that removes all bindings.
    """

    uri: URI
    display_name: str | None = None
    params: Params = field(default_factory=Params)
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def copy(self) -> NameAddr:
        return NameAddr(self.uri.copy(), self.display_name, self.params.copy(), self.wildcard)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        name = "" if self.display_name is None else quote(display_text(self.display_name)) + " "
        return f"{name}<{self.uri}>{self.params}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


_WILDCARD_URI = AbsoluteURI("*", "")

# What a user part may hold unescaped besides letters and digits (RFC 3261
# §25.1: unreserved and user-unreserved).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
# A quoted-string cannot carry CR or LF at all (RFC 3261 §25.1), and no
# other control character belongs in a name a phone shows; a tab is
# whitespace the grammar allows.
_CONTROL_TO_SPACE = {code: " " for code in (*range(0x20), 0x7F) if code != 0x09}
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def escape_user(user: str) -> str:
    """`user` as the user part of a sip URI: every character that is not
    allowed there as it is, percent-encoded as UTF-8."""
    # A byte that was not UTF-8 (kept as a lone surrogate) goes back as itself.
    return percent_encode(user.encode("utf-8", "surrogateescape"), safe=_USER_SAFE)


def display_text(name: str) -> str:
    """`name` as a display name can carry it: control characters but the
    tab become spaces, bytes that were not UTF-8 become U+FFFD."""
    if name.isprintable():
        return name
    name = name.translate(_CONTROL_TO_SPACE)
    return _LONE_SURROGATE_RE.sub("\ufffd", name)


def sip_uri(user: str | None, hostport: str, *, transport: str | None = None) -> SipURI:
    """The sip URI of `user` (unescaped text, escaped here) at `hostport`."""
    host, port = _own_hostport(hostport)
    params = Params() if transport is None else Params([("transport", transport)])
    return SipURI("sip", host, None if user is None else escape_user(user), None, port, params)


# The hosts we build URIs for are few (our own address, the providers'):
# each is checked once.
_own_hostport = lru_cache(maxsize=256)(parse_hostport)


def name_addr(
    user: str | None,
    hostport: str,
    *,
    display_name: str | None = None,
    tag: str | None = None,
    transport: str | None = None,
) -> str:
    """A From, To, Contact or P-Asserted-Identity value, `"Name" <sip:user@host>;tag=`:
    the display name quoted, the user part escaped, whatever they hold."""
    address = NameAddr(sip_uri(user, hostport, transport=transport), display_name)
    if tag is not None:
        address.params.set("tag", tag)
    return str(address)


def parse_name_addr(text: str, *, allow_wildcard: bool = False) -> NameAddr:
    """Parse one name-addr or addr-spec with its trailing parameters."""
    text = text.strip()
    display: str | None
    fast = _SIP_NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is not None:
        groups = fast.groups()
        uri = _sip_uri_of(groups[2].lower(), groups[3:11])
        if uri is not None:
            params = groups[11]
            return NameAddr(
                uri, _display_of(groups[0], groups[1]), Params.parse(params) if params else Params()
            )
    fast = _NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is not None:
        quoted, tokens, uri_text, params = fast.groups()
        display = _display_of(quoted, tokens)
        return NameAddr(parse_uri(uri_text), display, Params.parse(params) if params else Params())
    if not text:
        raise ParseError(400, "Empty address")
    if text == "*":
        if not allow_wildcard:
            raise ParseError(400, "Unexpected wildcard address")
        return NameAddr(_WILDCARD_URI, wildcard=True)
    display = None
    if text[0] == '"':
        display, end = read_quoted(text, 0)
        text = text[end:].lstrip()
        if not text.startswith("<"):
            raise ParseError(400, "Display name without <URI>")
    lt = text.find("<")
    if lt >= 0:
        if lt > 0:
            tokens = text[:lt].split()
            if not all(_DISPLAY_TOKEN_RE.fullmatch(t) for t in tokens):
                raise ParseError(400, "Malformed display name")
            display = " ".join(tokens)
        gt = text.find(">", lt)
        if gt < 0:
            raise ParseError(400, "Unterminated <URI>")
        uri_text = text[lt + 1 : gt].strip()
        rest = text[gt + 1 :]
        if rest.strip() and not rest.lstrip().startswith(";"):
            raise ParseError(400, "Unexpected text after <URI>")
    else:
        # addr-spec: a semicolon starts the header's own parameters.
        uri_text, _, params = text.partition(";")
        rest = ";" + params if _ else ""
        uri_text = uri_text.strip()
        if "," in uri_text or "?" in uri_text:
            raise ParseError(400, "URI with , or ? must be enclosed in <>")
    return NameAddr(parse_uri(uri_text), display, Params.parse(rest))


def _display_of(quoted: str | None, tokens: str | None) -> str | None:
    if quoted is not None:
        return read_quoted(quoted, 0)[0] if "\\" in quoted else quoted[1:-1]
    return " ".join(tokens.split()) or None if tokens else None


# `"Display" <uri>;params` or `Token Display <uri>;params`, no LWS inside <>;
# for a sip/sips URI the same pass reads the URI's parts too.
_DISPLAY = r'(?:("(?:[^"\\\r\n]++|\\[^\r\n])*+") *+|((?:[A-Za-z0-9\-.!%*_+`\'~]++ ++)*+))'
_NAME_ADDR_FAST_RE = re.compile(_DISPLAY + r'<([^<>\s"]++)>\s*+(;[^<>]*+)?')
_SIP_NAME_ADDR_FAST_RE = re.compile(
    _DISPLAY + rf"<([Ss][Ii][Pp][Ss]?):{_SIP_URI_BODY}>\s*+(;[^<>]*+)?"
)

# A display name token may be any token; quoted ones are handled apart.
_DISPLAY_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+")


def parse_name_addr_list(text: str, *, allow_wildcard: bool = False) -> list[NameAddr]:
    """Parse a comma-separated list (Contact, Route, Record-Route)."""
    return [
        parse_name_addr(part, allow_wildcard=allow_wildcard)
        for part in split_outside(text, ",")
        if part.strip()
    ]
