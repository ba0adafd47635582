"""The DTMF of one call: digits from either side, in whichever form they
come (RFC 4733 telephone-events, SIP INFO, tones in the audio when the
side's line asks for in-band detection, or the API), become one digit event
(`on_digit(side, digit)`) and reach the other side in the form it accepted:
RFC 4733 when its SDP has telephone-event (events from a side that also has
it pass through untouched: the fast path), else SIP INFO.

A side "accepts" telephone-event when its own SDP lists it: in an answer it
was offered to it, and an offerer must be ready to receive what it offers.

`CallDtmf` knows the call only through callables (`on_digit`, `send_info`,
the clock and the timer) and its two media legs, so a call model of legs
and bridges takes it as it is. Per-call state is bounded: one event in
progress per receiver, at most `QUEUE_LIMIT` digits waiting per side.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..logs import log_event
from ..media import g711
from ..media.dtmf import (
    API,
    DEFAULT_DURATION_MS,
    DIGITS,
    DTMF_RELAY,
    INFO_TYPES,
    RFC4733,
    Digit,
    EventInjector,
    EventReceiver,
    InbandDetector,
    build_info,
    parse_info,
)
from ..media.engine import Leg
from .sip_port import Timer

logger = logging.getLogger("callbridge.calls")

ROLES = ("caller", "callee")
QUEUE_LIMIT = 64
# Digits a side may send in one second: more than a finger can, fewer than
# a phone flooding the event bus and the other side would.
RATE_LIMIT = 20
# Between two INFO digits: the digit's length and this pause.
INFO_GAP = 0.08
_DECODERS = {"pcmu": g711.pcmu_decode, "pcma": g711.pcma_decode}

Clock = Callable[[], float]
OnDigit = Callable[[str, Digit], None]
SendInfo = Callable[[str, str, bytes], None]
# The SIP service's timers (SipPort.call_later): the loop's, or a test's.
CallLater = Callable[[float, Callable[[], None]], Timer]
# What the API calls: (call record id, employee id, digits); raises DigitsRefused.
SendDigits = Callable[[str, int, str], None]


@dataclass(frozen=True, slots=True)
class EventFormat:
    """telephone-event as one side's SDP names it."""

    payload_type: int
    clock_rate: int = 8000


@dataclass(frozen=True, slots=True)
class SideMedia:
    """What DTMF needs of one side's SDP: its telephone-event, if any, and
    its payload types (number → encoding name, lower case)."""

    events: EventFormat | None
    encodings: Mapping[int, str] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Side:
    role: str
    leg: Leg
    inband: bool
    media: SideMedia | None = None
    receiver: EventReceiver | None = None
    detector: InbandDetector | None = None
    injector: EventInjector | None = None
    # The telephone-event payload type of the other side that this side did
    # not accept: the relay drops it (the digit goes as INFO instead).
    drop_payload_type: int | None = None
    filtering: bool = False
    tapped: bool = False
    # Digits from this side in the current second, and from when it counts.
    window_start: float = float("-inf")
    window_count: int = 0
    dropped: int = 0
    # INFO digits waiting, each with the body type it goes in.
    infos: deque[tuple[Digit, str]] = field(default_factory=deque)
    info_free_at: float = float("-inf")

    @property
    def accepts_events(self) -> bool:
        return self.media is not None and self.media.events is not None


class DigitsRefused(Exception):
    """Digits the API asked to send that cannot go: `status` says why
    (403 not a party, 409 not answered, 429 too many waiting)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


class CallDtmf:
    """The DTMF of one call's two sides (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Clock,
        on_digit: OnDigit,
        send_info: SendInfo,
        call_later: CallLater | None = None,
    ) -> None:
        """`call_later` runs `fire()` when something is due; without it the
        owner calls `fire(now)` at `next_deadline()` itself."""
        self.clock = clock
        self.on_digit: OnDigit | None = on_digit
        self.send_info: SendInfo | None = send_info
        self.call_later = call_later
        self._timer: Timer | None = None
        self._armed_at: float | None = None
        self.sides: dict[str, _Side] = {}

    # --- set-up -------------------------------------------------------------

    def attach(self, role: str, leg: Leg, *, inband: bool = False) -> None:
        """Watch what `role`'s phone sends on `leg` (and detect tones in it
        when `inband`)."""
        side = self.sides[role] = _Side(role, leg, inband)
        if inband:
            side.detector = InbandDetector()
        self._retap(side)

    def _retap(self, side: _Side) -> None:
        """Tap a leg only while there is something to read in what it
        receives: a leg without telephone-event or in-band detection costs
        the relay nothing."""
        needed = side.receiver is not None or side.detector is not None
        if needed and not side.tapped:
            side.leg.add_tap(self._tap)
        elif side.tapped and not needed:
            side.leg.remove_tap(self._tap)
        side.tapped = needed

    def negotiated(self, role: str, media: SideMedia) -> None:
        """`role`'s SDP (its offer or answer, again on a re-INVITE)."""
        side = self.sides.get(role)
        if side is None:
            return
        old = side.media
        side.media = media
        events = media.events
        if events is None:
            side.receiver = None
        elif side.receiver is None or old is None or old.events != events:
            side.receiver = EventReceiver(events.payload_type, events.clock_rate)
        injector = side.injector
        if injector is not None and events is not None:
            # It keeps renumbering the relayed stream (a phone must not see
            # the numbers jump back); the next events go in the new format.
            injector.payload_type, injector.clock_rate = events.payload_type, events.clock_rate
        self._retap(side)
        self._refilter()

    def _refilter(self) -> None:
        """Drop the other side's telephone-events on a side that did not
        accept them; filter only the legs that need it."""
        for side in self.sides.values():
            other = self._other(side)
            drop = None
            if not side.accepts_events and other is not None and other.media is not None:
                events = other.media.events
                drop = None if events is None else events.payload_type
            side.drop_payload_type = drop
            needed = drop is not None or side.injector is not None
            if needed != side.filtering:
                side.leg.set_outbound(self._outbound_of(side) if needed else None)
                side.filtering = needed

    def _outbound_of(self, side: _Side) -> Callable[[bytes], bytes | None]:
        def outbound(packet: bytes) -> bytes | None:
            drop = side.drop_payload_type
            if drop is not None and len(packet) > 1 and packet[1] & 0x7F == drop:
                return None
            injector = side.injector
            if injector is None:
                return packet
            return injector.relayed(packet, self.clock())

        return outbound

    # --- digits in ------------------------------------------------------------

    def _tap(self, leg: Leg, packet: bytes) -> None:
        side = self.sides.get(leg.name)
        if side is None or side.media is None:
            return
        payload_type = packet[1] & 0x7F
        receiver = side.receiver
        if receiver is not None and payload_type == receiver.payload_type:
            for digit in receiver.receive(packet, self.clock()):
                self._received(side, digit)
            self._arm()
            return
        detector = side.detector
        if detector is not None:
            decode = _DECODERS.get(side.media.encodings.get(payload_type, ""))
            if decode is not None:
                offset = 12 + 4 * (packet[0] & 0x0F)
                if len(packet) > offset and not packet[0] & 0x30:  # no extension, no padding
                    for digit in detector.feed(decode(packet[offset:])):
                        self._received(side, digit)

    def info(self, role: str, content_type: str, body: bytes) -> Digit:
        """A digit `role` sent in an INFO; raises `DtmfBodyError` (a 400)."""
        digit = parse_info(content_type, body)
        side = self.sides.get(role)
        if side is not None:
            kind = content_type.split(";")[0].strip().lower()
            # Relayed as INFO, it keeps its type: the two ends chose it.
            self._received(side, digit, kind if kind in INFO_TYPES else DTMF_RELAY)
        return digit

    def send(self, role: str, digits: str, duration: int = DEFAULT_DURATION_MS) -> None:
        """Digits `role`'s side sends to the other party (the API's):
        raises `DigitsRefused` (429) when the other side has too many waiting."""
        side = self.sides.get(role)
        other = None if side is None else self._other(side)
        if side is None or other is None:
            raise DigitsRefused(409, "the call has no other side")
        if any(d not in DIGITS for d in digits):
            raise ValueError("only 0-9, *, #, A-D are DTMF digits")
        if self._waiting(other) + len(digits) > QUEUE_LIMIT:
            raise DigitsRefused(429, "too many digits are waiting to be sent")
        for character in digits:
            self._received(side, Digit(character, duration, API))

    def _received(self, side: _Side, digit: Digit, info_type: str = DTMF_RELAY) -> None:
        if digit.source != API and not self._within_rate(side):
            return
        log_event(
            logger, logging.DEBUG, "call.dtmf", side=side.role, source=digit.source
        )  # never the digit: it may be a card number typed into an IVR
        if self.on_digit is not None:
            self.on_digit(side.role, digit)
        other = self._other(side)
        if other is None:
            return
        if digit.source == RFC4733 and other.accepts_events:
            return  # passed through untouched
        self._deliver(other, digit, info_type)

    # --- digits out -------------------------------------------------------------

    def _deliver(self, side: _Side, digit: Digit, info_type: str) -> None:
        media = side.media
        events = None if media is None else media.events
        if events is not None:
            injector = side.injector
            if injector is None:
                injector = side.injector = EventInjector(events.payload_type, events.clock_rate)
                self._refilter()
            if not injector.send(digit, self.clock()):
                self._dropped(side)
            self._fire()
            return
        if len(side.infos) >= QUEUE_LIMIT:
            self._dropped(side)
            return
        side.infos.append((digit, info_type))
        self._fire()

    def _within_rate(self, side: _Side) -> bool:
        now = self.clock()
        if now - side.window_start >= 1.0:
            side.window_start, side.window_count = now, 0
        side.window_count += 1
        if side.window_count <= RATE_LIMIT:
            return True
        self._dropped(side)
        return False

    def _dropped(self, side: _Side) -> None:
        # Logged once per side: a flood must not become a flood of log lines.
        side.dropped += 1
        if side.dropped == 1:
            log_event(logger, logging.INFO, "call.dtmf_dropped", side=side.role)

    def _waiting(self, side: _Side) -> int:
        return len(side.infos) + (side.injector.pending if side.injector is not None else 0)

    # --- time -------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = []
        for side in self.sides.values():
            for deadline in (
                side.receiver.next_deadline() if side.receiver else None,
                side.injector.next_deadline() if side.injector else None,
                max(side.info_free_at, 0.0) if side.infos else None,
            ):
                if deadline is not None:
                    deadlines.append(deadline)
        return min(deadlines, default=None)

    def fire(self, now: float | None = None) -> None:
        """Do what is due at `now`: packets of events in progress, INFOs,
        digits whose end packets never came."""
        now = self.clock() if now is None else now
        for side in list(self.sides.values()):
            if side.receiver is not None:
                for digit in side.receiver.poll(now):
                    self._received(side, digit)
            if side.injector is not None:
                for packet in side.injector.due(now):
                    side.leg.send(packet)
            while side.infos and side.info_free_at <= now:
                digit, info_type = side.infos.popleft()
                if self.send_info is not None:
                    self.send_info(side.role, info_type, build_info(digit, info_type))
                side.info_free_at = now + digit.duration / 1000 + INFO_GAP
        self._arm()

    def _fire(self) -> None:
        self.fire(self.clock())

    def _arm(self) -> None:
        if self.call_later is None:
            return
        deadline = self.next_deadline()
        if deadline == self._armed_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer = self.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._armed_at = None
        self.fire()

    def close(self) -> None:
        """Stop: taps and filters off the legs, the timer cancelled, and no
        reference left to the call (no cycle outlives it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for side in self.sides.values():
            if side.tapped:
                side.leg.remove_tap(self._tap)
            if side.filtering:
                side.leg.set_outbound(None)
        self.sides.clear()
        self.on_digit = self.send_info = None
        self.call_later = None

    def _other(self, side: _Side) -> _Side | None:
        return self.sides.get("callee" if side.role == "caller" else "caller")


def side_media(payload_types: Mapping[int, str], rates: Mapping[int, int]) -> SideMedia:
    """`SideMedia` from an SDP's audio stream: encodings by payload type and
    their clock rates."""
    encodings = {pt: name.lower() for pt, name in payload_types.items()}
    events = next(
        (
            EventFormat(pt, rates.get(pt, 8000))
            for pt, name in sorted(encodings.items())
            if name == "telephone-event"
        ),
        None,
    )
    return SideMedia(events, encodings)
