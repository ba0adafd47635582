"""URIs (sip, sips, tel and any other absolute URI) and name-addr / addr-spec
values as they appear in To, From, Contact, Route and Record-Route
(RFC 3261 §19.1, §20.10, §25.1; RFC 3966; RFC 5118 for IPv6)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import ParseError
from .grammar import Params, quote, read_quoted, split_outside

_BAD_URI_CHAR_RE = re.compile(r'[ \t<>"]')
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.?"
)
_IPV4_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# user = 1*( unreserved / escaped / user-unreserved ); password alike plus ":"-free.
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")


def parse_host(text: str) -> str:
    """Validate a host: hostname, IPv4 address or bracketed IPv6 reference."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise ParseError(400, "Malformed IPv6 reference")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise ParseError(400, "Malformed IPv6 address") from None
        return text
    if _IPV4_RE.fullmatch(text):
        if any(int(octet) > 255 for octet in text.split(".")):
            raise ParseError(400, "Malformed IPv4 address")
        return text
    if not _HOSTNAME_RE.fullmatch(text):
        raise ParseError(400, f"Malformed host {text!r:.60}")
    return text


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
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
        raise ParseError(400, f"Malformed port in {text!r:.60}")
    port = int(rest[1:])
    if port > 65535:
        raise ParseError(400, "Port out of range")
    return host, port


def format_hostport(host: str, port: int | None) -> str:
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
        # RFC 3261 §19.1.4, simplified: case-insensitive scheme, host and
        # parameter names, escapes decoded in the user part.
        if not isinstance(other, SipURI):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.user_unescaped == other.user_unescaped
            and self.password == other.password
            and self.host.lower() == other.host.lower()
            and self.port == other.port
            and {k.lower(): v for k, v in self.params.items()}
            == {k.lower(): v for k, v in other.params.items()}
        )

    def __hash__(self) -> int:
        return hash((self.scheme, self.user_unescaped, self.host.lower(), self.port))

    def __repr__(self) -> str:
        return f"SipURI({str(self)!r})"


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
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(400, f"Malformed URI {text!r:.60}")
    if not rest or _BAD_URI_CHAR_RE.search(rest):
        raise ParseError(400, f"Malformed URI {text!r:.60}")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(scheme, rest)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise ParseError(400, "Malformed tel URI")
        return TelURI(number, Params.parse(params))
    return AbsoluteURI(scheme, rest)


# The common shape in one pass: user[:password]@host[:port][;params][?headers].
_SIP_URI_FAST_RE = re.compile(
    r"(?:((?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+)"
    r"(?::((?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*))?@)?"
    r"([A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.?)"
    r"(?::(\d{1,5}))?(;[^?]*)?(?:\?(.*))?",
    re.S,
)


def _parse_sip_uri(scheme: str, rest: str) -> SipURI:
    fast = _SIP_URI_FAST_RE.fullmatch(rest)
    if fast is not None:
        user, password, host, port, params, headers = fast.groups()
        if not _IPV4_RE.fullmatch(host) and (port is None or int(port) <= 65535):
            return SipURI(
                scheme,
                host,
                user,
                password,
                None if port is None else int(port),
                Params.parse(params) if params else Params(),
                headers,
            )
    return _parse_sip_uri_slowly(scheme, rest)


def _parse_sip_uri_slowly(scheme: str, rest: str) -> SipURI:
    main, qmark, headers = rest.partition("?")
    user = password = None
    at = main.find("@")
    if at >= 0:
        userinfo, main = main[:at], main[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise ParseError(400, "Malformed user part in URI")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise ParseError(400, "Malformed password in URI")
            password = pw
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
        Params.parse(params) if semi else Params(),
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
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{self.params}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"


_WILDCARD_URI = AbsoluteURI("*", "")


def parse_name_addr(text: str, *, allow_wildcard: bool = False) -> NameAddr:
    """Parse one name-addr or addr-spec with its trailing parameters."""
    text = text.strip()
    display: str | None
    fast = _NAME_ADDR_FAST_RE.fullmatch(text)
    if fast is not None:
        quoted, tokens, uri_text, params = fast.groups()
        if quoted is None:
            display = tokens.rstrip() or None
        else:
            display = read_quoted(quoted, 0)[0] if "\\" in quoted else quoted[1:-1]
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


# `Token Display <uri>;params` without quotes, escapes or LWS inside <>.
_NAME_ADDR_FAST_RE = re.compile(
    r'(?:("(?:[^"\\\r\n]|\\[^\r\n])*") *|((?:[A-Za-z0-9\-.!%*_+`\'~]+ +)*))'
    r'<([^<>\s"]+)>\s*(;[^<>]*)?'
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
