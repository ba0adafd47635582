"""SDP (RFC 4566): parses session descriptions into frozen dataclasses and writes them back.

Owns the wire format and its read-only conveniences (rtpmap, fmtp, direction, ptime); what to
offer or answer lives in `offer_answer.py`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import pairwise
from typing import Final, NamedTuple, Self

from .errors import ParseError

MAX_SDP_BYTES: Final = 64 * 1024
MAX_SDP_LINES: Final = 1024

# RFC 4566 §5: a parser must reject a description with a type letter it does not know.
_KNOWN_TYPES: Final = frozenset("vosiuepcbtrzkam")
_SESSION_SINGLE: Final = frozenset("vosiuczk")
_MEDIA_SINGLE: Final = frozenset("ick")
_NUMBER: Final = re.compile(r"[0-9]{1,20}")
_DOTTED_QUAD: Final = re.compile(r"[0-9.]+")
_FORBIDDEN_CHARS: Final = ("\r", "\n", "\x00")


class SdpError(ParseError):
    """A malformed session description; `status` is the SIP response it warrants."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(status, reason)


class Direction(StrEnum):
    """The media direction attributes of RFC 4566 §6 / RFC 3264 §5.1."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, sends: bool, receives: bool) -> Direction:
        return _DIRECTION_BY_FLAGS[(sends, receives)]

    def intersect(self, other: Direction) -> Direction:
        """The direction both sides allow, e.g. sendrecv ∩ sendonly = sendonly."""
        return Direction.from_flags(
            sends=self.sends and other.sends, receives=self.receives and other.receives
        )


_DIRECTION_BY_FLAGS: Final = {
    (True, True): Direction.SENDRECV,
    (True, False): Direction.SENDONLY,
    (False, True): Direction.RECVONLY,
    (False, False): Direction.INACTIVE,
}


class Attribute(NamedTuple):
    """An a= line; `value` is None for a flag attribute such as `a=sendrecv`."""

    name: str
    value: str | None = None


@dataclass(frozen=True)
class Origin:
    """The o= line."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True)
class Connection:
    """A c= line; `ttl` exists only for IP4 multicast, `count` for multicast address ranges."""

    nettype: str
    addrtype: str
    address: str
    ttl: int | None = None
    count: int | None = None

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls("IN", address_type(address), address)


@dataclass(frozen=True)
class Bandwidth:
    """A b= line, e.g. `b=AS:64`."""

    bwtype: str
    bandwidth: int


@dataclass(frozen=True)
class Timing:
    """A t= line and the r= lines that follow it (kept as text: nobody schedules SIP calls)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True)
class RtpMap:
    """The encoding named by `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`."""

    encoding: str
    clock_rate: int
    channels: int = 1

    @property
    def value(self) -> str:
        rate = f"{self.encoding}/{self.clock_rate}"
        return rate if self.channels == 1 else f"{rate}/{self.channels}"


# RFC 3551 §6: these payload types mean their codec even without an a=rtpmap line.
STATIC_PAYLOAD_TYPES: Final[dict[str, RtpMap]] = {
    "0": RtpMap("PCMU", 8000),
    "3": RtpMap("GSM", 8000),
    "4": RtpMap("G723", 8000),
    "8": RtpMap("PCMA", 8000),
    "9": RtpMap("G722", 8000),
    "13": RtpMap("CN", 8000),
    "18": RtpMap("G729", 8000),
}


def address_type(address: str) -> str:
    """The SDP addrtype for an address: IP6 if it looks like IPv6, else IP4."""
    return "IP6" if ":" in address else "IP4"


@dataclass(frozen=True, kw_only=True)
class _Attributed:
    """The a= lines shared by session and media level, in their original order."""

    attributes: tuple[Attribute, ...] = ()

    def has_attribute(self, name: str) -> bool:
        return any(attr.name == name for attr in self.attributes)

    def attribute(self, name: str) -> str | None:
        """The value of the first `name` attribute; None if absent or a flag."""
        return next((attr.value for attr in self.attributes if attr.name == name), None)

    def attribute_values(self, name: str) -> list[str]:
        return [attr.value for attr in self.attributes if attr.name == name and attr.value]

    @property
    def direction(self) -> Direction | None:
        """The direction attribute at this level, if any (not inherited)."""
        return next(
            (Direction(attr.name) for attr in self.attributes if attr.name in _DIRECTIONS), None
        )

    def with_direction(self, direction: Direction) -> Self:
        """A copy whose direction attribute is `direction`, in place of any existing one."""
        kept = self.without_attributes(*_DIRECTIONS).attributes
        if self.direction is None:
            return replace(self, attributes=(*kept, Attribute(direction.value)))
        at = next(i for i, attr in enumerate(self.attributes) if attr.name in _DIRECTIONS)
        return replace(self, attributes=(*kept[:at], Attribute(direction.value), *kept[at:]))

    def without_attributes(self, *names: str) -> Self:
        return replace(
            self, attributes=tuple(attr for attr in self.attributes if attr.name not in names)
        )


_DIRECTIONS: Final = frozenset(d.value for d in Direction)


@dataclass(frozen=True, kw_only=True)
class MediaDescription(_Attributed):
    """An m= section: the m= line plus its i=, c=, b=, k= and a= lines."""

    media_type: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    info: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    encryption_key: str | None = None

    @property
    def is_rejected(self) -> bool:
        """Port 0 marks a stream that was refused or removed (RFC 3264 §6, §8.2)."""
        return self.port == 0

    @property
    def rtpmaps(self) -> dict[str, RtpMap]:
        """Payload type → encoding for every format this m-line names, in the m-line's order.

        Static payload types are known without an rtpmap; a malformed rtpmap is ignored,
        as RFC 4566 §5.13 asks of attributes a parser cannot use.
        """
        explicit = dict(_parsed_rtpmaps(self.attribute_values("rtpmap")))
        resolved = ((pt, explicit.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)) for pt in self.formats)
        return {pt: rtpmap for pt, rtpmap in resolved if rtpmap is not None}

    def rtpmap(self, payload_type: str) -> RtpMap | None:
        return self.rtpmaps.get(payload_type)

    @property
    def fmtps(self) -> dict[str, str]:
        """Payload type → format parameters from the a=fmtp lines."""
        pairs = (value.partition(" ") for value in self.attribute_values("fmtp"))
        return {pt: params.strip() for pt, _, params in pairs}

    def fmtp(self, payload_type: str) -> str | None:
        return self.fmtps.get(payload_type)

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value is not None and _NUMBER.fullmatch(value) else None


@dataclass(frozen=True, kw_only=True)
class SessionDescription(_Attributed):
    """A whole session description; lists keep their wire order so unknown lines round-trip."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    info: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    time_zones: str | None = None
    encryption_key: str | None = None
    media: tuple[MediaDescription, ...] = ()

    def effective_direction(self, media: MediaDescription) -> Direction:
        """The m-line's direction, else the session's, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def connection_for(self, media: MediaDescription) -> Connection | None:
        return media.connection or self.connection

    def to_bytes(self) -> bytes:
        return serialize(self)


# --- parsing ---------------------------------------------------------------------------------


class _Line(NamedTuple):
    number: int
    kind: str
    value: str


def _echo(text: str) -> str:
    # Reasons may end up in a response line, so peer text is shortened and kept ASCII.
    return ascii(text[:40])


def _fail(line: _Line, problem: str) -> SdpError:
    return SdpError(f"line {line.number} ({line.kind}=): {problem}")


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises SdpError naming the first line that is wrong."""
    lines = _split_lines(_decode(data))
    if not lines:
        raise SdpError("empty SDP body")
    if lines[0].kind != "v":
        raise SdpError("SDP must start with a v= line")
    starts = [i for i, line in enumerate(lines) if line.kind == "m"] + [len(lines)]
    media = tuple(_parse_media(lines[a:b]) for a, b in pairwise(starts))
    return _parse_session(lines[: starts[0]], media)


def _decode(data: bytes | str) -> str:
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(f"SDP body larger than {MAX_SDP_BYTES} bytes")
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"SDP body is not UTF-8 (byte {exc.start})") from None


def _split_lines(text: str) -> list[_Line]:
    raw_lines = text.split("\n")
    if len(raw_lines) > MAX_SDP_LINES:
        raise SdpError(f"SDP body has more than {MAX_SDP_LINES} lines")
    # Phones differ in line endings and trailing blanks; RFC 4566 §5 lets us accept LF alone.
    stripped = ((n, raw.rstrip(" \t\r")) for n, raw in enumerate(raw_lines, start=1))
    return [_split_line(n, text) for n, text in stripped if text]


def _split_line(number: int, text: str) -> _Line:
    if len(text) < 2 or text[1] != "=":
        raise SdpError(f"line {number}: expected <type>=<value>, got {_echo(text)}")
    line = _Line(number, text[0], text[2:])
    if line.kind not in _KNOWN_TYPES:
        raise _fail(line, "unknown line type")
    if any(char in line.value for char in _FORBIDDEN_CHARS):
        raise _fail(line, "contains CR or NUL")
    return line


def _parse_session(lines: list[_Line], media: tuple[MediaDescription, ...]) -> SessionDescription:
    single: dict[str, _Line] = {}
    multi: dict[str, list[_Line]] = {"e": [], "p": [], "b": [], "a": []}
    timings: list[Timing] = []
    for line in lines:
        if line.kind == "t":
            timings.append(_parse_timing(line))
        elif line.kind == "r":
            timings.append(_add_repeat(line, timings.pop() if timings else None))
        elif line.kind in _SESSION_SINGLE:
            _put_single(single, line)
        else:
            multi[line.kind].append(line)
    for kind in "os":
        if kind not in single:
            raise SdpError(f"missing {kind}= line")
    return SessionDescription(
        version=_parse_version(single["v"]),
        origin=_parse_origin(single["o"]),
        session_name=single["s"].value,
        info=_text(single.get("i")),
        uri=_text(single.get("u")),
        emails=tuple(line.value for line in multi["e"]),
        phones=tuple(line.value for line in multi["p"]),
        connection=_optional_connection(single.get("c")),
        bandwidths=tuple(_parse_bandwidth(line) for line in multi["b"]),
        # RFC 4566 requires t=, but some phones omit it; "t=0 0" is what they mean.
        timings=tuple(timings) or (Timing(),),
        time_zones=_text(single.get("z")),
        encryption_key=_text(single.get("k")),
        attributes=tuple(_parse_attribute(line) for line in multi["a"]),
        media=media,
    )


def _parse_media(lines: list[_Line]) -> MediaDescription:
    m_line, rest = lines[0], lines[1:]
    single: dict[str, _Line] = {}
    bandwidths: list[Bandwidth] = []
    attributes: list[Attribute] = []
    for line in rest:
        if line.kind in _MEDIA_SINGLE:
            _put_single(single, line)
        elif line.kind == "b":
            bandwidths.append(_parse_bandwidth(line))
        elif line.kind == "a":
            attributes.append(_parse_attribute(line))
        else:
            raise _fail(line, "not allowed in a media section")
    media_type, port, port_count, proto, formats = _parse_m_line(m_line)
    return MediaDescription(
        media_type=media_type,
        port=port,
        port_count=port_count,
        proto=proto,
        formats=formats,
        info=_text(single.get("i")),
        connection=_optional_connection(single.get("c")),
        bandwidths=tuple(bandwidths),
        encryption_key=_text(single.get("k")),
        attributes=tuple(attributes),
    )


def _put_single(seen: dict[str, _Line], line: _Line) -> None:
    if line.kind in seen:
        raise _fail(line, f"duplicate line, first seen on line {seen[line.kind].number}")
    seen[line.kind] = line


def _text(line: _Line | None) -> str | None:
    return None if line is None else line.value


def _number(line: _Line, text: str, what: str, *, maximum: int | None = None) -> int:
    if not _NUMBER.fullmatch(text) or (maximum is not None and int(text) > maximum):
        raise _fail(line, f"{what} is not a valid number: {_echo(text)}")
    return int(text)


def _fields(line: _Line, count: int, what: str) -> list[str]:
    fields = line.value.split()
    if len(fields) != count:
        raise _fail(line, f"expected {what}")
    return fields


def _parse_version(line: _Line) -> int:
    if line.value.strip() != "0":
        raise _fail(line, f"unsupported SDP version {_echo(line.value)}")
    return 0


def _parse_origin(line: _Line) -> Origin:
    username, sess_id, version, nettype, addrtype, address = _fields(
        line, 6, "<username> <sess-id> <sess-version> <nettype> <addrtype> <address>"
    )
    return Origin(
        username, sess_id, _number(line, version, "sess-version"), nettype, addrtype, address
    )


def _optional_connection(line: _Line | None) -> Connection | None:
    return None if line is None else _parse_connection(line)


def _parse_connection(line: _Line) -> Connection:
    nettype, addrtype, spec = _fields(line, 3, "<nettype> <addrtype> <connection-address>")
    address, *suffixes = spec.split("/")
    numbers = [_number(line, suffix, "TTL or address count") for suffix in suffixes]
    _check_address(line, addrtype, address)
    if addrtype == "IP6":
        # RFC 4566 §5.7: IPv6 multicast has no TTL, only an optional address count.
        if len(numbers) > 1:
            raise _fail(line, "IP6 connection address takes at most one /count")
        return Connection(nettype, addrtype, address, count=numbers[0] if numbers else None)
    if len(numbers) > 2:
        raise _fail(line, "connection address takes at most /ttl/count")
    ttl, count = [*numbers, None, None][:2]
    return Connection(nettype, addrtype, address, ttl=ttl, count=count)


def _check_address(line: _Line, addrtype: str, address: str) -> None:
    # Hostnames are allowed (RFC 4566 §5.7), so only what claims to be a literal is checked.
    if addrtype == "IP4" and (":" in address or _DOTTED_QUAD.fullmatch(address)):
        valid = _parses_as(ipaddress.IPv4Address, address)
    elif addrtype == "IP6" and ":" in address:
        valid = _parses_as(ipaddress.IPv6Address, address)
    else:
        valid = bool(address)
    if not valid:
        raise _fail(line, f"invalid {addrtype} address {_echo(address)}")


def _parses_as(kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], address: str) -> bool:
    try:
        kind(address)
    except ValueError:
        return False
    return True


def _parse_bandwidth(line: _Line) -> Bandwidth:
    bwtype, colon, value = line.value.partition(":")
    if not colon or not bwtype:
        raise _fail(line, "expected <bwtype>:<bandwidth>")
    return Bandwidth(bwtype, _number(line, value, "bandwidth"))


def _parse_timing(line: _Line) -> Timing:
    start, stop = _fields(line, 2, "<start-time> <stop-time>")
    return Timing(_number(line, start, "start time"), _number(line, stop, "stop time"))


def _add_repeat(line: _Line, timing: Timing | None) -> Timing:
    if timing is None:
        raise _fail(line, "r= must follow a t= line")
    return replace(timing, repeats=(*timing.repeats, line.value))


def _parse_attribute(line: _Line) -> Attribute:
    name, colon, value = line.value.partition(":")
    if not name:
        raise _fail(line, "attribute without a name")
    return Attribute(name, value if colon else None)


def _parse_m_line(line: _Line) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    fields = line.value.split()
    if len(fields) < 4:
        raise _fail(line, "expected <media> <port>[/<count>] <proto> <fmt> ...")
    media_type, port_spec, proto, *formats = fields
    port_text, slash, count_text = port_spec.partition("/")
    port = _number(line, port_text, "port", maximum=65535)
    count = _number(line, count_text, "port count") if slash else None
    return media_type, port, count, proto, tuple(formats)


def _parsed_rtpmaps(values: Iterable[str]) -> Iterator[tuple[str, RtpMap]]:
    for value in values:
        pt, _, spec = value.partition(" ")
        encoding, _, rest = spec.strip().partition("/")
        rate, _, channels = rest.partition("/")
        if encoding and _NUMBER.fullmatch(rate) and (not channels or _NUMBER.fullmatch(channels)):
            yield pt, RtpMap(encoding, int(rate), int(channels) if channels else 1)


# --- serialization ---------------------------------------------------------------------------


def serialize(sdp: SessionDescription) -> bytes:
    """The description as CRLF-terminated lines in RFC 4566 §5 order."""
    lines = [*_session_lines(sdp)]
    for media in sdp.media:
        lines.extend(_media_lines(media))
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8")


def _session_lines(sdp: SessionDescription) -> Iterator[str]:
    o = sdp.origin
    yield _line("v", str(sdp.version))
    yield _line(
        "o", f"{o.username} {o.sess_id} {o.sess_version} {o.nettype} {o.addrtype} {o.address}"
    )
    yield _line("s", sdp.session_name)
    yield from _optional_line("i", sdp.info)
    yield from _optional_line("u", sdp.uri)
    yield from (_line("e", email) for email in sdp.emails)
    yield from (_line("p", phone) for phone in sdp.phones)
    yield from _optional_line("c", _format_connection(sdp.connection))
    yield from _bandwidth_lines(sdp.bandwidths)
    for timing in sdp.timings or (Timing(),):
        yield _line("t", f"{timing.start} {timing.stop}")
        yield from (_line("r", repeat) for repeat in timing.repeats)
    yield from _optional_line("z", sdp.time_zones)
    yield from _optional_line("k", sdp.encryption_key)
    yield from _attribute_lines(sdp.attributes)


def _media_lines(media: MediaDescription) -> Iterator[str]:
    port = f"{media.port}" if media.port_count is None else f"{media.port}/{media.port_count}"
    yield _line("m", " ".join((media.media_type, port, media.proto, *media.formats)))
    yield from _optional_line("i", media.info)
    yield from _optional_line("c", _format_connection(media.connection))
    yield from _bandwidth_lines(media.bandwidths)
    yield from _optional_line("k", media.encryption_key)
    yield from _attribute_lines(media.attributes)


def _line(kind: str, value: str) -> str:
    # A CR or LF in a value would let a caller-supplied string inject whole SDP lines.
    if any(char in value for char in _FORBIDDEN_CHARS):
        raise SdpError(f"{kind}= value contains CR, LF or NUL: {_echo(value)}")
    return f"{kind}={value}"


def _optional_line(kind: str, value: str | None) -> Iterator[str]:
    if value is not None:
        yield _line(kind, value)


def _bandwidth_lines(bandwidths: Iterable[Bandwidth]) -> Iterator[str]:
    return (_line("b", f"{bw.bwtype}:{bw.bandwidth}") for bw in bandwidths)


def _attribute_lines(attributes: Iterable[Attribute]) -> Iterator[str]:
    for name, value in attributes:
        yield _line("a", name if value is None else f"{name}:{value}")


def _format_connection(connection: Connection | None) -> str | None:
    if connection is None:
        return None
    suffixes = (f"/{n}" for n in (connection.ttl, connection.count) if n is not None)
    return f"{connection.nettype} {connection.addrtype} {connection.address}{''.join(suffixes)}"
