"""DTMF in its three forms, sans-IO (time is passed in, nothing here owns a
socket or a timer): RFC 4733 telephone-events read off a stream
(`EventReceiver`) and written into one (`EventInjector`), DTMF tones found
in G.711 audio (`InbandDetector`), and the bodies of SIP INFO that carry a
digit (`parse_info`, `build_info`). Each yields the same `Digit`.

Injected events and relayed packets share one RTP stream: the peer sees one
SSRC and one run of sequence numbers, so its jitter buffer is not reset by
a second source. `EventInjector` is a filter on what a leg sends: it keeps
the relayed stream's SSRC, gives its own packets the next sequence numbers
and shifts the relayed packets' numbers after them by as many, and drops
the relayed audio while an event of its own plays (as a phone does while a
key is down: the other party hears the tone its phone renders, not speech
under it). Event timestamps continue the relayed stream's clock.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .rtp import RTP_HEADER_SIZE, RtpError, RtpPacket, TelephoneEvent

DIGITS: Final = "0123456789*#ABCD"
# Where a digit came from.
RFC4733: Final = "rfc4733"
INFO: Final = "info"
INBAND: Final = "inband"
API: Final = "api"

DTMF_RELAY: Final = "application/dtmf-relay"
DTMF: Final = "application/dtmf"
INFO_TYPES: Final = (DTMF_RELAY, DTMF)
# A digit's length when its sender names none (INFO without Duration, the API).
DEFAULT_DURATION_MS: Final = 160
# Longer is cut: a key held down for minutes is one digit, not a timer.
MAX_DURATION_MS: Final = 8000
MIN_DURATION_MS: Final = 40
# An INFO body longer than this is no DTMF.
MAX_INFO_BODY: Final = 256
_MAX_INFO_LINES: Final = 8


@dataclass(frozen=True, slots=True)
class Digit:
    """One key press: `digit` one of `DIGITS`, its `duration` in ms, its
    `volume` in -dBm0 when the sender said (RFC 4733), and its `source`."""

    digit: str
    duration: int
    source: str
    volume: int | None = None


def event_code(digit: str) -> int:
    """The RFC 4733 event number of a DTMF digit (`*` 10, `#` 11, A-D 12-15)."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"{digit!r} is not a DTMF digit")
    return code


def _bounded_duration(ms: int) -> int:
    return max(0, min(MAX_DURATION_MS, ms))


# --- RFC 4733 in --------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    ssrc: int
    timestamp: int
    digit: str
    duration: int  # timestamp units
    volume: int
    last_seen: float


class EventReceiver:
    """Turns the telephone-event packets of one stream into one `Digit` per
    event (RFC 4733 §2.5.2): an event is known by its SSRC and timestamp,
    so its updates and the three copies of its end packet make one digit; a
    start packet that was lost changes nothing (any packet of a new
    timestamp starts the event), and the same key pressed again is a new
    event because it has a new timestamp. A digit is given at its end (its
    duration is known then), or `end_timeout` seconds after its last packet
    when every end packet was lost. Memory is bounded: one event in progress
    and the keys of the last `remembered` ones."""

    def __init__(
        self,
        payload_type: int,
        clock_rate: int = 8000,
        *,
        end_timeout: float = 0.3,
        remembered: int = 16,
    ) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self._current: _Event | None = None
        self._finished: deque[tuple[int, int]] = deque(maxlen=remembered)
        self.malformed = 0

    def receive(self, packet: bytes, now: float) -> list[Digit]:
        """Read one RTP packet of the stream (others than telephone-events
        are passed over); the digits it completes."""
        if len(packet) < RTP_HEADER_SIZE or packet[1] & 0x7F != self.payload_type:
            return []
        try:
            rtp = RtpPacket.parse(packet)
            event = TelephoneEvent.parse(rtp.payload)
        except RtpError:
            self.malformed += 1
            return []
        digit = event.digit
        if digit is None:
            return []  # a flash, a tone: not a key
        key = (rtp.ssrc, rtp.timestamp)
        if key in self._finished:
            return []  # a retransmitted end, or a late update
        done: list[Digit] = []
        current = self._current
        if current is not None and (current.ssrc, current.timestamp) != key:
            if current.ssrc == rtp.ssrc and _older(rtp.timestamp, current.timestamp):
                return []  # a reordered packet of an event already over
            done.append(self._finish(current))
            current = None
        if current is None:
            current = self._current = _Event(
                rtp.ssrc, rtp.timestamp, digit, event.duration, event.volume, now
            )
        else:
            current.duration = max(current.duration, event.duration)
            current.last_seen = now
        if event.end:
            done.append(self._finish(current))
        return done

    def poll(self, now: float) -> list[Digit]:
        """The digit whose end packets were all lost, once it timed out."""
        current = self._current
        if current is not None and now >= current.last_seen + self.end_timeout:
            return [self._finish(current)]
        return []

    def next_deadline(self) -> float | None:
        current = self._current
        return None if current is None else current.last_seen + self.end_timeout

    def _finish(self, event: _Event) -> Digit:
        self._current = None
        self._finished.append((event.ssrc, event.timestamp))
        ms = event.duration * 1000 // self.clock_rate
        return Digit(event.digit, _bounded_duration(ms), RFC4733, event.volume)


def _older(timestamp: int, than: int) -> bool:
    """RTP timestamp order, modulo 2**32 (RFC 3550 §5.1)."""
    return timestamp != than and (than - timestamp) & 0xFFFFFFFF < 0x80000000


# --- RFC 4733 out -------------------------------------------------------------

_SEQ_TS_SSRC = struct.Struct("!HII")


@dataclass(frozen=True, slots=True)
class EventPacket:
    """A packet of an event: when it is due (seconds after the event
    starts), and its fields."""

    at: float
    marker: bool
    end: bool
    duration: int  # timestamp units


def event_schedule(
    duration_ms: int, clock_rate: int = 8000, interval: float = 0.02
) -> list[EventPacket]:
    """The packets of one event (RFC 4733 §2.5.1): the first with the
    marker, an update every `interval` with the duration so far, then the
    end packet three times, `interval` apart, all with the final duration."""
    total = max(1, round(max(duration_ms, 1) * clock_rate / 1000))
    step = round(interval * clock_rate)
    packets: list[EventPacket] = []
    elapsed, at = step, 0.0
    while elapsed < total:
        packets.append(EventPacket(at, not packets, False, elapsed))
        elapsed += step
        at += interval
    for copy in range(3):
        packets.append(EventPacket(at, not packets and copy == 0, True, total))
        at += interval
    return packets


@dataclass(slots=True)
class _Sending:
    digit: Digit
    packets: list[EventPacket]
    started: float
    timestamp: int
    sent: int = 0


class EventInjector:
    """What goes out of one leg to its peer when callbridge plays
    telephone-events into the relayed stream (see the module docstring).

    `relayed(packet, now)` filters each relayed packet (None: drop it);
    `send(digit, now)` queues a digit (False when `limit` are waiting);
    `due(now)` gives the packets to send now, and `next_deadline()` when to
    ask again. `gap` seconds of silence separate queued digits."""

    def __init__(
        self,
        payload_type: int,
        clock_rate: int = 8000,
        *,
        interval: float = 0.02,
        gap: float = 0.08,
        volume: int = 10,
        limit: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.interval = interval
        self.gap = gap
        self.volume = volume
        self.limit = limit
        self._rng = rng or random.Random()
        self._queue: deque[Digit] = deque()
        self._sending: _Sending | None = None
        self._free_at = float("-inf")  # when the next digit may start
        # The stream we continue: its SSRC, the last sequence number out,
        # the last timestamp and when it was seen.
        self._ssrc: int | None = None
        self._seq = 0
        self._timestamp = 0
        self._seen_at = 0.0
        # Added to the relayed packets' sequence numbers (modulo 2**16).
        self._offset = 0

    @property
    def pending(self) -> int:
        """Digits waiting or playing."""
        return len(self._queue) + (self._sending is not None)

    def relayed(self, packet: bytes, now: float) -> bytes | None:
        if len(packet) < RTP_HEADER_SIZE:
            return packet
        seq, timestamp, ssrc = _SEQ_TS_SSRC.unpack_from(packet, 2)
        if ssrc != self._ssrc:
            # Another stream (the first, or a new source): its own numbering.
            self._ssrc, self._offset = ssrc, 0
            self._seq = (seq - 1) & 0xFFFF
        self._timestamp, self._seen_at = timestamp, now
        if self._sending is not None:
            self._offset -= 1  # its place in the numbering goes to our events
            return None
        out = (seq + self._offset) & 0xFFFF
        if (out - self._seq) & 0xFFFF < 0x8000:
            self._seq = out
        if self._offset == 0:
            return packet
        rewritten = bytearray(packet)
        rewritten[2:4] = out.to_bytes(2, "big")
        return bytes(rewritten)

    def send(self, digit: Digit, now: float) -> bool:
        if self.pending >= self.limit:
            return False
        self._queue.append(digit)
        return True

    def due(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        while True:
            sending = self._sending
            if sending is None:
                if not self._queue or now < self._free_at:
                    return out
                sending = self._start(self._queue.popleft(), now)
            while sending.sent < len(sending.packets):
                packet = sending.packets[sending.sent]
                if sending.started + packet.at > now + 1e-9:
                    return out
                out.append(self._packet(sending, packet))
                sending.sent += 1
            self._sending = None
            self._free_at = sending.started + sending.packets[-1].at + self.gap

    def next_deadline(self) -> float | None:
        sending = self._sending
        if sending is not None:
            return sending.started + sending.packets[sending.sent].at
        if self._queue:
            return self._free_at
        return None

    def _start(self, digit: Digit, now: float) -> _Sending:
        if self._ssrc is None:
            # Nothing relayed yet: a stream of our own, numbered at random
            # (RFC 3550 §5.1), which a relayed one replaces when it comes.
            self._ssrc = self._rng.getrandbits(32)
            self._seq = self._rng.getrandbits(16)
            self._timestamp = self._rng.getrandbits(32)
            self._seen_at = now
        elapsed = max(0.0, now - self._seen_at)
        timestamp = (self._timestamp + round(elapsed * self.clock_rate)) & 0xFFFFFFFF
        schedule = event_schedule(digit.duration, self.clock_rate, self.interval)
        self._sending = _Sending(digit, schedule, now, timestamp)
        return self._sending

    def _packet(self, sending: _Sending, packet: EventPacket) -> bytes:
        self._seq = (self._seq + 1) & 0xFFFF
        self._offset += 1
        assert self._ssrc is not None
        event = TelephoneEvent(
            event_code(sending.digit.digit),
            packet.end,
            self.volume if sending.digit.volume is None else sending.digit.volume,
            min(packet.duration, 0xFFFF),
        )
        return RtpPacket(
            payload_type=self.payload_type,
            sequence_number=self._seq,
            timestamp=sending.timestamp,
            ssrc=self._ssrc,
            payload=event.to_bytes(),
            marker=packet.marker,
        ).to_bytes()


# --- in band ------------------------------------------------------------------

ROWS: Final = (697.0, 770.0, 852.0, 941.0)
COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD: Final = ("123A", "456B", "789C", "*0#D")


class InbandDetector:
    """DTMF tones in 8 kHz linear audio (decoded G.711), in the manner of
    ITU-T Q.24 receivers: the power at the eight DTMF frequencies over a
    20 ms window every 10 ms (the Goertzel value of each frequency, taken
    for all eight at once as one matrix product), and a window holds a
    digit when

    - each of its two tones is loud enough (`min_level`, linear amplitude),
    - the two carry most of the window's energy (`min_share`: speech, music
      and noise spread theirs),
    - each is the clear peak of its group (`min_peak_ratio` over the rest),
    - the twist is within bounds (the row tone at most 8 dB louder than the
      column's, the column at most 4 dB louder than the row's).

    A digit needs `min_windows` windows in a row (40 ms of tone; 20 ms is
    never enough) and ends after `end_windows` without it. Time is the
    samples fed: nothing here reads a clock."""

    WINDOW = 160
    HOP = 80

    def __init__(
        self,
        sample_rate: int = 8000,
        *,
        min_level: float = 300.0,
        min_share: float = 0.7,
        min_peak_ratio: float = 4.0,
        max_row_louder_db: float = 8.0,
        max_column_louder_db: float = 4.0,
        min_windows: int = 3,
        end_windows: int = 2,
    ) -> None:
        self.sample_rate = sample_rate
        self.min_level = min_level
        self.min_share = min_share
        self.min_peak_ratio = min_peak_ratio
        self.max_row_louder = 10 ** (max_row_louder_db / 10)
        self.max_column_louder = 10 ** (max_column_louder_db / 10)
        self.min_windows = min_windows
        self.end_windows = end_windows
        n = np.arange(self.WINDOW)
        frequencies = np.array(ROWS + COLUMNS)
        self._basis: npt.NDArray[np.complex128] = np.exp(
            -2j * np.pi * np.outer(frequencies, n) / sample_rate
        )
        self._buffer: npt.NDArray[np.float64] = np.zeros(0)
        self._candidate: str | None = None
        self._count = 0
        self._confirmed: str | None = None
        self._windows = 0  # windows the confirmed digit has held
        self._misses = 0

    def feed(self, samples: Any) -> list[Digit]:
        """Take the next samples (int16 array-like); the digits that ended."""
        data = np.asarray(samples, dtype=np.float64)
        # Bounded: what is kept between calls is less than one window.
        buffer = np.concatenate((self._buffer, data[-8 * self.WINDOW :]))
        done: list[Digit] = []
        start = 0
        while start + self.WINDOW <= len(buffer):
            window = buffer[start : start + self.WINDOW]
            digit = self._classify(window)
            finished = self._step(digit)
            if finished is not None:
                done.append(finished)
            start += self.HOP
        self._buffer = buffer[start:]
        return done

    def _classify(self, window: npt.NDArray[np.float64]) -> str | None:
        energy = float(np.dot(window, window))
        if energy <= 0.0:
            return None
        # Power of a sine of amplitude A over N samples: |X|^2 = (A*N/2)^2;
        # 2|X|^2/N is then its share of the window's energy (A^2*N/2).
        powers = np.abs(self._basis @ window) ** 2 * (2.0 / self.WINDOW)
        rows, columns = powers[:4], powers[4:]
        row, column = int(np.argmax(rows)), int(np.argmax(columns))
        row_power, column_power = float(rows[row]), float(columns[column])
        floor = (self.min_level**2) * self.WINDOW / 2
        if row_power < floor or column_power < floor:
            return None
        if (row_power + column_power) < self.min_share * energy:
            return None
        others = max(float(np.delete(rows, row).max()), float(np.delete(columns, column).max()))
        if others * self.min_peak_ratio > min(row_power, column_power):
            return None
        if row_power > column_power * self.max_row_louder:
            return None
        if column_power > row_power * self.max_column_louder:
            return None
        return _KEYPAD[row][column]

    def _step(self, digit: str | None) -> Digit | None:
        confirmed = self._confirmed
        if confirmed is not None:
            if digit == confirmed:
                self._windows += self._misses + 1  # a dropout inside the tone counts
                self._misses = 0
                return None
            self._misses += 1
            if digit is None and self._misses < self.end_windows:
                return None
            self._confirmed, self._misses = None, 0
            self._candidate, self._count = digit, (0 if digit is None else 1)
            # A window holds the digit once 70% of it is tone: one more hop.
            ms = (self._windows + 1) * self.HOP * 1000 // self.sample_rate
            return Digit(confirmed, _bounded_duration(ms), INBAND)
        if digit is not None and digit == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = digit, (0 if digit is None else 1)
        if digit is not None and self._count >= self.min_windows:
            self._confirmed, self._windows, self._misses = digit, self._count, 0
        return None


# --- SIP INFO -------------------------------------------------------------------


class DtmfBodyError(ValueError):
    """An INFO body that is no digit: `reason` says why (for a 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _digit_of(value: str) -> str:
    value = value.strip()
    if len(value) == 1 and value.upper() in DIGITS:
        return value.upper()
    if value.isdigit() and len(value) <= 2 and int(value) < len(DIGITS):
        return DIGITS[int(value)]  # an event number: 10 is *, 11 #
    raise DtmfBodyError("the signal is not a DTMF digit")


def parse_info(content_type: str, body: bytes) -> Digit:
    """The digit of an INFO body, `application/dtmf-relay`
    (`Signal=5\\r\\nDuration=160`) or `application/dtmf` (`5`)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind not in INFO_TYPES:
        raise DtmfBodyError("not a DTMF body")
    if len(body) > MAX_INFO_BODY:
        raise DtmfBodyError("body too long")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfBodyError("body is not ASCII") from None
    if kind == DTMF:
        return Digit(_digit_of(text), DEFAULT_DURATION_MS, INFO)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > _MAX_INFO_LINES:
        raise DtmfBodyError("too many lines")
    fields: dict[str, str] = {}
    for line in lines:
        name, equals, value = line.partition("=")
        if not equals:
            raise DtmfBodyError("a line is not name=value")
        fields.setdefault(name.strip().lower(), value.strip())
    if "signal" not in fields:
        raise DtmfBodyError("no Signal")
    digit = _digit_of(fields["signal"])
    duration = DEFAULT_DURATION_MS
    if "duration" in fields:
        value = fields["duration"]
        if not value.isdigit() or len(value) > 6:
            raise DtmfBodyError("Duration is not a number of milliseconds")
        duration = _bounded_duration(int(value)) or DEFAULT_DURATION_MS
    return Digit(digit, duration, INFO)


def build_info(digit: Digit, content_type: str = DTMF_RELAY) -> bytes:
    """The INFO body for `digit` in `content_type`."""
    event_code(digit.digit)  # only a digit goes on the wire
    if content_type == DTMF:
        return digit.digit.encode("ascii")
    if content_type != DTMF_RELAY:
        raise ValueError(f"{content_type!r} is not a DTMF body type")
    duration = _bounded_duration(digit.duration) or DEFAULT_DURATION_MS
    return f"Signal={digit.digit}\r\nDuration={duration}\r\n".encode("ascii")
