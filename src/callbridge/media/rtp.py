"""RTP packets (RFC 3550 §5.1) and telephone events (RFC 4733 §2.3): a parsed
form for code that needs every field, and cheap helpers for the relay path."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
RTCP_HEADER_SIZE = 8

_FIXED = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")
_EVENT = struct.Struct("!BBH")

Buffer = bytes | bytearray | memoryview


class RtpError(ValueError):
    """A packet that is not valid RTP; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. `padding` is the number of padding octets (0 = none);
    `extension` is `(profile, data)` when the X bit is set."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        """Parse `data`; raises `RtpError` for anything RFC 3550 §5.1 forbids."""
        view = memoryview(data)
        if len(view) < RTP_HEADER_SIZE:
            raise RtpError(f"{len(view)} bytes is shorter than the RTP header")
        first, second, seq, timestamp, ssrc = _FIXED.unpack_from(view)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}")
        offset = payload_offset(view)
        if offset < 0:
            raise RtpError("CSRC list or header extension runs past the packet")
        csrc_count = first & 0x0F
        csrc = struct.unpack_from(f"!{csrc_count}I", view, RTP_HEADER_SIZE)
        extension = None
        if first & 0x10:
            at = RTP_HEADER_SIZE + 4 * csrc_count
            profile, _ = _EXTENSION.unpack_from(view, at)
            extension = (profile, bytes(view[at + 4 : offset]))
        end = len(view)
        padding = 0
        if first & 0x20:
            padding = view[-1]
            if padding == 0 or offset + padding > end:
                raise RtpError(f"padding of {padding} octets does not fit the packet")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(view[offset:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension=extension,
            padding=padding,
            version=version,
        )

    def to_bytes(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs; at most 15 fit the header")
        first = (self.version << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _FIXED.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError("header extension length must be a multiple of 4 octets")
            parts += [_EXTENSION.pack(profile, len(data) // 4), data]
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


# Helpers for the relay path: they read a few octets in place and never raise
# on a short or foreign packet (a negative or False answer instead).


def is_rtp(data: Buffer) -> bool:
    """Long enough for the fixed header and version 2: all the relay checks."""
    return len(data) >= RTP_HEADER_SIZE and data[0] >> 6 == RTP_VERSION


def is_rtcp(data: Buffer) -> bool:
    """Long enough for an RTCP header, version 2, packet type 192-223 (RFC 5761 §4)."""
    return len(data) >= RTCP_HEADER_SIZE and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def payload_type(data: Buffer) -> int:
    return data[1] & 0x7F


def sequence_number(data: Buffer) -> int:
    return (data[2] << 8) | data[3]


def timestamp(data: Buffer) -> int:
    return int.from_bytes(data[4:8], "big")


def ssrc(data: Buffer) -> int:
    return int.from_bytes(data[8:12], "big")


def payload_offset(data: Buffer) -> int:
    """Where the payload starts, past CSRCs and extension; -1 when they do not fit."""
    if len(data) < RTP_HEADER_SIZE:
        return -1
    offset = RTP_HEADER_SIZE + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < offset + 4:
            return -1
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    return offset if offset <= len(data) else -1


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """An RFC 4733 named event: `event` 0-9 are the digits, 10 `*`, 11 `#`,
    12-15 A-D; `volume` is -dBm0 (0-63); `duration` is in timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int

    SIZE = 4

    @classmethod
    def parse(cls, payload: Buffer) -> TelephoneEvent:
        if len(payload) < cls.SIZE:
            raise RtpError(f"telephone-event payload of {len(payload)} bytes; 4 expected")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def to_bytes(self) -> bytes:
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _EVENT.pack(self.event, flags, self.duration)

    @property
    def digit(self) -> str | None:
        """The DTMF character for events 0-15, else None."""
        return _DTMF_DIGITS[self.event] if self.event < len(_DTMF_DIGITS) else None


_DTMF_DIGITS = "0123456789*#ABCD"
