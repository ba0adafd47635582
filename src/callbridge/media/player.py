"""The player: one piece of audio, looped, sent as RTP into any number of
media legs (music on hold; IVR prompts later), paced by one timer for all.

A leg it plays to is a `Playing`: the player's own stream into that leg, with
its own SSRC, sequence numbers and timestamps (random starts, RFC 3550 §5.1),
a marker bit on its first packet, and 20 ms of G.711 per packet in the codec
the leg's peer accepted (PCMU or PCMA). The call logic disconnects the leg's
relay edge first (`MediaSession.disconnect`) and calls `stop()` before it
connects the leg again; the player only ever calls `leg.send`.

Pacing follows real elapsed time, not the number of ticks: each tick sends
every frame that has fallen due since the stream began, so a tick that runs
late (a busy loop, a collector pause) does not slow the music down. After a
long stall only the last `MAX_CATCH_UP` frames are sent; the frames skipped
advance the timestamp and the music as the time did (to the receiver a gap,
not a burst), and the packet after the gap carries the marker bit.

The music is encoded once per codec when it is given (`Music`), and a tick
costs, per leg, one slice of that and one 12-octet header: no per-tick
encoding, no allocation beyond the packet.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..logs import log_event
from . import g711
from .engine import Leg
from .melody import default_music

logger = logging.getLogger("callbridge.media.player")

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: one packet, one timestamp step
FRAME = FRAME_SAMPLES / SAMPLE_RATE
# Frames at most sent in one tick to a stream that has fallen behind: 100 ms.
MAX_CATCH_UP = 5
# The longest music kept: 10 minutes (9.6 MB of samples, 4.8 MB per codec).
MAX_SAMPLES = 600 * SAMPLE_RATE
PLAYABLE = frozenset({"PCMU", "PCMA"})

__all__ = [
    "FRAME",
    "MAX_CATCH_UP",
    "PLAYABLE",
    "Music",
    "Player",
    "Playing",
    "default_music",
    "frames_since",
    "next_tick_in",
    "playable_codec",
]

_HEADER = struct.Struct("!BBHII")
_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "PCMU": g711.pcmu_encode,
    "PCMA": g711.pcma_encode,
}

Samples = npt.NDArray[np.int16]
Clock = Callable[[], float]


def frames_since(start: float, now: float) -> int:
    """Whole 20 ms frames from `start` to `now` on the pacing grid (a clock
    that reads a hair before a grid point counts as on it: float sums drift)."""
    return int((now - start) / FRAME + 1e-6)


def next_tick_in(epoch: float, now: float) -> float:
    """Seconds from `now` to the grid point after it, the grid's from `epoch`."""
    return max(0.0, epoch + (frames_since(epoch, now) + 1) * FRAME - now)


class Timer(Protocol):
    def cancel(self) -> None: ...


# Schedules `callback` in `delay` seconds (asyncio's `call_later` by default).
CallLater = Callable[[float, Callable[[], None]], Timer]


def playable_codec(payload_types: Mapping[int, str]) -> tuple[int, str] | None:
    """The first (payload type, encoding) of an SDP's map (in its order, the
    peer's preference) that the player can send, or None when there is none
    (an Opus-only phone: no music)."""
    for payload_type, encoding in payload_types.items():
        name = encoding.upper()
        if name in PLAYABLE and 0 <= payload_type <= 127:
            return payload_type, name
    return None


class Music:
    """A loop of 8 kHz mono int16 samples with its G.711 encodings, built
    once (off the event loop when the music is large: see media/music.py)."""

    __slots__ = ("_encoded", "samples")

    def __init__(self, samples: Any) -> None:
        array = np.asarray(samples)
        if array.ndim != 1 or array.dtype != np.int16:
            raise ValueError(f"music must be 1-D int16 samples, not {array.dtype} {array.shape}")
        if not 0 < len(array) <= MAX_SAMPLES:
            raise ValueError(f"music of {len(array)} samples; 1 to {MAX_SAMPLES} are allowed")
        self.samples: Samples = array.copy()
        self.samples.setflags(write=False)
        # Each codec's loop followed by its own first frame again, so a frame
        # that starts near the end is one slice that wraps to the beginning.
        self._encoded: dict[str, bytes] = {}
        for encoding, encode in _ENCODERS.items():
            octets = encode(self.samples)
            while len(octets) < 2 * FRAME_SAMPLES:  # a loop shorter than a frame
                octets += octets
            self._encoded[encoding] = octets + octets[:FRAME_SAMPLES]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def frame(self, encoding: str, position: int) -> bytes:
        """The 160 encoded octets starting at sample `position` (< len)."""
        return self._encoded[encoding][position : position + FRAME_SAMPLES]


class Playing:
    """The player's stream into one leg; `stop()` ends it."""

    __slots__ = (
        "_player",
        "encoding",
        "leg",
        "marker",
        "payload_type",
        "position",
        "sent",
        "sequence",
        "ssrc",
        "started",
        "timestamp",
    )

    def __init__(
        self, player: Player, leg: Leg, payload_type: int, encoding: str, ssrc: int, now: float
    ) -> None:
        self._player: Player | None = player
        self.leg = leg
        self.payload_type = payload_type
        self.encoding = encoding
        self.ssrc = ssrc
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self.position = 0  # the next sample of the music to send
        self.started = now
        self.sent = 0  # frames accounted for since `started`: sent or skipped
        self.marker = True

    @property
    def stopped(self) -> bool:
        return self._player is None

    def stop(self) -> None:
        """Send nothing more to the leg; idempotent."""
        player, self._player = self._player, None
        if player is not None:
            player._forget(self)

    def restart(self) -> None:
        """Play the music from its beginning (new music has come)."""
        self.position = 0

    def send_due(self, now: float, music: Music) -> None:
        """Send every frame due by `now`; past `MAX_CATCH_UP`, skip the oldest."""
        due = frames_since(self.started, now) + 1 - self.sent
        if due <= 0:
            return
        if due > MAX_CATCH_UP:
            skipped = due - MAX_CATCH_UP
            self._advance(skipped, len(music))
            self.marker = True
            due = MAX_CATCH_UP
        leg, encoding, header = self.leg, self.encoding, _HEADER
        for _ in range(due):
            first = 0x80 | self.payload_type if self.marker else self.payload_type
            packet = header.pack(0x80, first, self.sequence, self.timestamp, self.ssrc)
            leg.send(packet + music.frame(encoding, self.position))
            self.marker = False
            self.sequence = (self.sequence + 1) & 0xFFFF
            self._advance(1, len(music))

    def _advance(self, frames: int, length: int) -> None:
        self.sent += frames
        self.timestamp = (self.timestamp + frames * FRAME_SAMPLES) & 0xFFFFFFFF
        self.position = (self.position + frames * FRAME_SAMPLES) % length

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "playing"
        return f"<Playing {self.encoding} ssrc={self.ssrc:08x} {state}>"


class Player:
    """Plays one piece of audio (8 kHz mono int16 samples, looped) into
    media legs as RTP: its own SSRC, sequence and timestamp per leg, 20 ms
    packets encoded in the leg's codec (PCMU or PCMA), paced by one shared
    timer for every leg it plays to (not a task or a timer per leg).

    `clock` is monotonic seconds; `call_later(delay, callback)` schedules
    the timer (the running loop's by default, taken at the first `play`).
    The timer runs only while something plays."""

    def __init__(
        self,
        samples: Any,
        *,
        clock: Clock = time.monotonic,
        call_later: CallLater | None = None,
    ) -> None:
        self.music = samples if isinstance(samples, Music) else Music(samples)
        self._clock = clock
        self._call_later = call_later
        self._streams: dict[Playing, None] = {}  # insertion-ordered set
        self._timer: Timer | None = None
        self._epoch = 0.0  # when the timer started: ticks fall on a 20 ms grid from it

    @property
    def playing(self) -> int:
        """How many legs it plays to."""
        return len(self._streams)

    def play(self, leg: Leg, payload_type: int, encoding: str) -> Playing:
        """Start sending the music into `leg` with `payload_type`, encoded as
        `encoding` (one of PLAYABLE, any case): the first frame at once."""
        name = encoding.upper()
        if name not in PLAYABLE:
            raise ValueError(f"cannot play {encoding!r}: only {', '.join(sorted(PLAYABLE))}")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type {payload_type} is not 0-127")
        ssrcs = {stream.ssrc for stream in self._streams}
        ssrc = secrets.randbits(32)
        while ssrc in ssrcs:
            ssrc = secrets.randbits(32)
        now = self._clock()
        if self._timer is None:
            self._epoch = now
        # A leg that joins between two ticks starts on the last one, so each
        # tick sends it one frame, as to every other leg.
        start = self._epoch + frames_since(self._epoch, now) * FRAME
        stream = Playing(self, leg, payload_type, name, ssrc, start)
        self._streams[stream] = None
        self._send(stream, now)
        if self._timer is None and not stream.stopped:
            self._arm(now)
        return stream

    def replace(self, samples: Any) -> None:
        """New music, at once: every leg playing goes on from its beginning
        (their streams go on: same SSRC, sequence and timestamps)."""
        self.music = samples if isinstance(samples, Music) else Music(samples)
        for stream in self._streams:
            stream.restart()

    def tick(self) -> None:
        """Send what is due to every leg (the timer calls this; a call by
        hand takes the pending timer's place)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        for stream in list(self._streams):
            self._send(stream, now)
        if self._streams:
            self._arm(now)

    def stop(self) -> None:
        """Stop every stream and the timer."""
        for stream in list(self._streams):
            stream.stop()

    def _send(self, stream: Playing, now: float) -> None:
        try:
            stream.send_due(now, self.music)
        except Exception as error:
            # A leg that cannot send (closed under us) must not stop the others.
            log_event(
                logger,
                logging.WARNING,
                "media.player_send_failed",
                leg=getattr(stream.leg, "name", "?"),
                error=type(error).__name__,
            )
            stream.stop()

    def _arm(self, now: float) -> None:
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._timer = call_later(next_tick_in(self._epoch, now), self.tick)

    def _forget(self, stream: Playing) -> None:
        self._streams.pop(stream, None)
        if not self._streams and self._timer is not None:
            self._timer.cancel()
            self._timer = None
