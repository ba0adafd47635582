"""The mixer: the conference bridge. Each participant of a room hears every
other and not themself, in their own codec; one timer paces every room.

A participant is a media leg whose relay edge the call logic has taken
away (`MediaSession.disconnect`): the mixer reads what the leg receives
through a tap and is the only one to send into it. What arrives is decoded
from the codec of its packet's payload type (PCMU or PCMA, from the leg's
SDP) into 16-bit linear samples and queued, 20 ms a frame. Every 20 ms the
mixer takes one frame from each participant that has one (a participant
whose packets are late or lost adds silence that tick; nobody waits for
anyone), sums them in 64 bits, and sends each participant the sum minus
their own frame — turned down smoothly when it would overflow 16 bits
rather than clipped into distortion — encoded in their codec, as a stream of the
mixer's own (its SSRC, sequence numbers and timestamps, RFC 3550 §5.1).

A participant's queue holds at most `MAX_BACKLOG` frames: a burst after a
stall in their network drops the oldest, so their delay cannot grow. Its
audio is mixed once `PREFILL` frames have come (a little jitter absorbed),
and again after it ran dry. Telephone-events, comfort noise and any other
payload type are not mixed: DTMF goes its own way (pbx/dtmf.py).

Pacing follows real elapsed time, as the player's does: a tick that runs
late mixes every frame that fell due since (at most `MAX_CATCH_UP`; frames
skipped past that are counted, and the stream jumps in time with a marker
bit). A room's `stats` count frames mixed and how many went out late.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..logs import log_event
from . import g711
from .engine import Leg
from .player import (
    FRAME,
    FRAME_SAMPLES,
    MAX_CATCH_UP,
    CallLater,
    Clock,
    Timer,
    frames_since,
    next_tick_in,
)
from .rtp import payload_offset

logger = logging.getLogger("callbridge.media.mixer")

MIXABLE = frozenset({"PCMU", "PCMA"})
# Frames a participant may have queued (100 ms): older ones are dropped.
MAX_BACKLOG = 5
# Frames queued before a participant's audio is mixed (again): 20 ms of jitter.
PREFILL = 2
# A frame mixed this long after it fell due went out late (one frame's time).
LATE = FRAME
INT16_MAX = 32767
# How fast a turned-down participant's gain comes back: a tenth a frame
# (full level in 200 ms after the room quietens).
RELEASE = 0.1
_RAMP = np.linspace(1 / FRAME_SAMPLES, 1.0, FRAME_SAMPLES)

_HEADER = struct.Struct("!BBHII")
_DECODERS: dict[str, Callable[[bytes], npt.NDArray[np.int16]]] = {
    "PCMU": g711.pcmu_decode,
    "PCMA": g711.pcma_decode,
}
_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "PCMU": g711.pcmu_encode,
    "PCMA": g711.pcma_encode,
}
_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


@dataclass(slots=True)
class MixerStats:
    """What a room's mixing did since it began."""

    frames: int = 0  # frames mixed
    late: int = 0  # of them, mixed more than one frame's time after they fell due
    skipped: int = 0  # frames past MAX_CATCH_UP that were never mixed


class Participant:
    """One leg in the mixer: what it said waiting to be mixed, and the
    mixer's stream into it. `leave()` takes it out."""

    __slots__ = (
        "_partial",
        "_queue",
        "_room",
        "_speaking",
        "dropped",
        "encoding",
        "gain",
        "ignored",
        "leg",
        "marker",
        "missing",
        "payload_type",
        "received",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(self, room: Room, leg: Leg, payload_type: int, encoding: str, ssrc: int) -> None:
        self._room: Room | None = room
        self.leg = leg
        self.payload_type = payload_type
        self.encoding = encoding
        self.ssrc = ssrc
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.marker = True
        self._queue: deque[npt.NDArray[np.int16]] = deque()
        # Samples of a packet longer or shorter than a frame, until a frame is whole.
        self._partial: npt.NDArray[np.int16] = _SILENCE[:0]
        self._speaking = False
        self.gain = 1.0  # how loud the mix goes out to them (below 1 in a loud room)
        self.received = 0  # voice packets taken
        self.ignored = 0  # packets not mixed: other payload types, malformed
        self.dropped = 0  # frames dropped from a full queue
        self.missing = 0  # ticks mixed without a frame of theirs

    @property
    def present(self) -> bool:
        return self._room is not None

    def leave(self) -> None:
        """Out of the room: nothing more is read from or sent to the leg."""
        room, self._room = self._room, None
        if room is not None:
            self.leg.remove_tap(self.heard)
            room._forget(self)

    def heard(self, leg: Leg, packet: bytes) -> None:
        """The leg's tap: one RTP packet it received."""
        payload = _payload(packet)
        encoding = None if payload is None else leg.payload_types.get(packet[1] & 0x7F)
        decode = None if encoding is None else _DECODERS.get(encoding.upper())
        if payload is None or decode is None or not payload:
            self.ignored += 1
            return
        self.received += 1
        samples = decode(payload)
        if len(self._partial):
            samples = np.concatenate((self._partial, samples))
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            self._queue.append(samples[start : start + FRAME_SAMPLES])
        self._partial = samples[whole:]
        while len(self._queue) > MAX_BACKLOG:
            self._queue.popleft()
            self.dropped += 1

    def take(self) -> npt.NDArray[np.int16]:
        """This tick's frame of theirs, or silence."""
        if not self._speaking:
            if len(self._queue) < PREFILL:
                self.missing += 1
                return _SILENCE
            self._speaking = True
        if not self._queue:
            self._speaking = False  # ran dry: wait for PREFILL again
            self.missing += 1
            return _SILENCE
        return self._queue.popleft()

    def send(self, encoded: bytes, frames: int = 1) -> None:
        """One frame of the mix, `frames - 1` frames after the last one."""
        if frames > 1:
            self.timestamp = (self.timestamp + (frames - 1) * FRAME_SAMPLES) & 0xFFFFFFFF
            self.marker = True
        first = 0x80 | self.payload_type if self.marker else self.payload_type
        self.leg.send(_HEADER.pack(0x80, first, self.sequence, self.timestamp, self.ssrc) + encoded)
        self.marker = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF

    def __repr__(self) -> str:
        return (
            f"<Participant {getattr(self.leg, 'name', '?')} {self.encoding} ssrc={self.ssrc:08x}>"
        )


class Room:
    """One conference: its participants, mixed together on the mixer's
    timer. `close()` takes everyone out."""

    def __init__(self, mixer: Mixer) -> None:
        self._mixer = mixer
        self._participants: dict[Participant, None] = {}  # insertion-ordered set
        self._mixed = 0  # frames of the mixer's grid accounted for: mixed or skipped
        self.stats = MixerStats()

    @property
    def participants(self) -> list[Participant]:
        return list(self._participants)

    def join(self, leg: Leg, payload_type: int, encoding: str) -> Participant:
        """`leg` into the room, sent the mix as `payload_type` in `encoding`
        (one of MIXABLE, any case): it hears the others from the next tick."""
        name = encoding.upper()
        if name not in MIXABLE:
            raise ValueError(f"cannot mix {encoding!r}: only {', '.join(sorted(MIXABLE))}")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} is not 0-127")
        ssrcs = {p.ssrc for p in self._participants}
        ssrc = secrets.randbits(32)
        while ssrc in ssrcs:
            ssrc = secrets.randbits(32)
        participant = Participant(self, leg, payload_type, name, ssrc)
        if not self._participants:
            self._mixed = self._mixer._started(self)
        self._participants[participant] = None
        leg.add_tap(participant.heard)
        return participant

    def close(self) -> None:
        for participant in list(self._participants):
            participant.leave()

    def mix_due(self, grid: int, now: float, epoch: float) -> None:
        """Mix every frame of the grid due by `grid` (the frame that fell
        due at `now` or just before)."""
        due = grid - self._mixed
        skipped = max(0, due - MAX_CATCH_UP)
        if skipped:
            self.stats.skipped += skipped
            self._mixed += skipped
            due -= skipped
        for index in range(due):
            frame_due = epoch + (self._mixed + 1) * FRAME
            self._mix_one(1 + skipped if index == 0 else 1)
            self._mixed += 1
            self.stats.frames += 1
            if now - frame_due > LATE + 1e-6:
                self.stats.late += 1
            if not self._participants:
                return

    def _mix_one(self, frames: int) -> None:
        room = list(self._participants)
        heard = np.stack([p.take() for p in room]).astype(np.int64)
        mix = heard.sum(axis=0) - heard  # each row: everyone but its own
        out = _limited(mix, room)
        for encoding, encode in _ENCODERS.items():
            rows = [i for i, p in enumerate(room) if p.encoding == encoding]
            if not rows:
                continue
            encoded = encode(out[rows])
            for slot, row in enumerate(rows):
                start = slot * FRAME_SAMPLES
                self._send(room[row], encoded[start : start + FRAME_SAMPLES], frames)

    def _send(self, participant: Participant, encoded: bytes, frames: int) -> None:
        try:
            participant.send(encoded, frames)
        except Exception as error:
            # A leg that cannot send (closed under us) must not stop the others.
            log_event(
                logger,
                logging.WARNING,
                "media.mixer_send_failed",
                leg=getattr(participant.leg, "name", "?"),
                error=type(error).__name__,
            )
            participant.leave()

    def _forget(self, participant: Participant) -> None:
        self._participants.pop(participant, None)
        if not self._participants:
            self._mixer._stopped(self)


class Mixer:
    """Every conference room of a process, paced by one timer for all (not
    a timer per room), as the player paces every leg it plays to. `clock` is
    monotonic seconds; `call_later` schedules the timer (the running loop's
    by default, taken at the first `join`); it runs only while some room has
    someone in it."""

    def __init__(
        self, *, clock: Clock = time.monotonic, call_later: CallLater | None = None
    ) -> None:
        self._clock = clock
        self._call_later = call_later
        self._rooms: dict[Room, None] = {}  # the rooms with someone in them
        self._timer: Timer | None = None
        self._epoch = 0.0  # when the timer started: frames fall due on a 20 ms grid from it

    def room(self) -> Room:
        """A new, empty room."""
        return Room(self)

    @property
    def rooms(self) -> int:
        """How many rooms have someone in them."""
        return len(self._rooms)

    def tick(self) -> None:
        """Mix what is due in every room (the timer calls this; a call by
        hand takes the pending timer's place)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        grid = self._grid(now)
        for room in list(self._rooms):
            room.mix_due(grid, now, self._epoch)
        if self._rooms:
            self._arm(now)

    def _grid(self, now: float) -> int:
        """The grid point at or just before `now`."""
        return frames_since(self._epoch, now)

    def _started(self, room: Room) -> int:
        """`room` has its first participant: the grid point it starts from."""
        now = self._clock()
        if self._timer is None and not self._rooms:
            self._epoch = now
            self._arm(now)
        self._rooms[room] = None
        return self._grid(now)

    def _stopped(self, room: Room) -> None:
        self._rooms.pop(room, None)
        if not self._rooms and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, now: float) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(next_tick_in(self._epoch, now), self.tick)


def _limited(mix: npt.NDArray[np.int64], room: list[Participant]) -> npt.NDArray[np.int16]:
    """Each row of `mix` (one participant's) within 16 bits: a loud room is
    turned down rather than clipped into distortion, and smoothly: the gain
    falls within the frame that needs it (a ramp from the last gain, not a
    step) and comes back by `RELEASE` a frame. What a ramp still leaves
    over full scale is clipped."""
    peaks = np.abs(mix).max(axis=1)
    gains = np.array([p.gain for p in room])
    needed = np.minimum(1.0, INT16_MAX / np.maximum(peaks, 1))
    target = np.where(needed < gains, needed, np.minimum(needed, gains + RELEASE))
    if (gains == 1.0).all() and (target == 1.0).all():
        return mix.astype(np.int16)  # the common case: nobody loud, nothing to scale
    ramps = gains[:, None] + (target - gains)[:, None] * _RAMP[None, :]
    for participant, gain in zip(room, target, strict=True):
        participant.gain = float(gain)
    scaled: npt.NDArray[np.float64] = np.clip(np.rint(mix * ramps), -INT16_MAX - 1, INT16_MAX)
    return scaled.astype(np.int16)


def _payload(packet: bytes) -> bytes | None:
    """An RTP packet's payload, without padding (RFC 3550 §5.1); None when
    the packet is malformed."""
    start = payload_offset(packet)
    if start < 0 or packet[0] & 0xC0 != 0x80:
        return None
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    return packet[start:end] if start <= end else None
