"""Call recording: the audio two legs of a call receive, as one stereo WAV
(8 kHz, 16-bit PCM) on the call's real timeline, written by one thread.

Channels. `Recorder.record(left, right)` taps two legs: what the `left` leg
receives (its party's voice) is the left channel, the `right` leg's the
right. The call logic decides who is who (pbx/recordings.py: the customer
left, the employee right).

Timeline. Frame 0 is the moment `record()` is called (the answer). Each
packet lands where its RTP timestamp says, counted from where the first
packet of its stream (SSRC) arrived, so jitter and a stalled sender's burst
keep their places: frames are written `LAG` behind the clock, and a packet
later than that but within `HISTORY` rewrites the frames it falls in. A
stream is placed by its arrival again when its timestamps run more than
`AHEAD` ahead of the clock (a new stream, a forged jump) or it comes too
late `LATE_RUN` packets in a row (a phone that stops its timestamps while
silent): no peer can move audio off the wall clock or make the writer hold
more than its window. What no packet covered stays zero: loss, silence,
hold and the other side's talk keep both channels on the wall clock. G.711
(PCMU, PCMA) is decoded; telephone-event, comfort noise and every codec we
do not decode leave silence.

Threads. The taps run on the event loop and do nothing but append
`(channel, arrival, packet, payload types)` to the recording's queue (a
deque, bounded). One writer thread for all recordings wakes every
`PUMP_INTERVAL`, decodes and aligns what is queued, and appends the frames
older than `LAG` (later packets are placed into them until then) to the
file, one write per recording per pump. A call that ends wakes the thread
to finish its file (the rest of its frames, then the RIFF sizes in the
header), not to pump the others: those wait for their interval. The header
of a file being written says it holds nothing; a file killed mid-call is
made a WAV of what was written by `finalize_wav` at the next start. No disk
operation (mkdir, open, write, close) runs on the loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..logs import log_event
from .engine import Leg, Tap
from .g711 import ALAW_DECODE, ULAW_DECODE
from .rtp import payload_offset

logger = logging.getLogger("callbridge.recorder")

Clock = Callable[[], float]

RATE = 8000
CHANNELS = 2
FRAME_BYTES = 2 * CHANNELS
HEADER_SIZE = 44
# How often the writer thread appends, and how far behind the clock; a
# packet later than LAG still lands in its place if it is less than HISTORY
# later: the frames it falls in are written again (a stalled sender or a
# busy machine: the bench saw stalls over a second under load). A kill
# loses at most the last LAG + PUMP_INTERVAL of a call.
PUMP_INTERVAL = 0.5
LAG = 0.5
HISTORY = 2.5
# A stream whose timestamps run further ahead of its arrivals is placed by
# arrival again (a forged jump, a new talkspurt's fresh timestamps); so is
# one that comes too late LATE_RUN packets in a row (frozen timestamps).
AHEAD = 0.5
LATE_RUN = 5
# A writer catching up on a backlog appends at least this often (seconds of
# the packets' clock), so the window never has to hold the whole backlog.
CATCH_UP = 1.0
# Bounds on what the wire can make us hold: packets queued per recording
# (20 s of two 20 ms streams), one packet's samples, the aligner's window.
MAX_QUEUED = 2_000
MAX_PAYLOAD = 4_000
WINDOW = int(6 * RATE)
_HISTORY_FRAMES = int(HISTORY * RATE)
_STATIC_TYPES: Mapping[int, str] = {0: "PCMU", 8: "PCMA"}
_DECODERS: Mapping[str, npt.NDArray[np.int16]] = {"PCMU": ULAW_DECODE, "PCMA": ALAW_DECODE}
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")


class RecordingError(Exception):
    """A file that is not a recording of ours."""


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte header of a PCM WAV, 8 kHz, 16-bit, stereo, with
    `data_bytes` of frames after it."""
    return _HEADER.pack(
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        RATE,
        RATE * FRAME_BYTES,
        FRAME_BYTES,
        16,
        b"data",
        data_bytes,
    )


def finalize_wav(path: Path) -> tuple[int, int]:
    """Make the recording at `path` a valid WAV of the whole frames it holds,
    as a crash left it; returns (file size, frames). Blocking: run it in a
    thread. `RecordingError` for a file that is not one of ours."""
    with path.open("r+b") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        head = file.read(HEADER_SIZE)
        if size == 0:
            head = wav_header(0)  # opened, nothing written yet
        if len(head) < HEADER_SIZE or head[36:40] != b"data" or head[:4] != b"RIFF":
            raise RecordingError(f"{path.name} is not a recording")
        if _HEADER.unpack(head)[6:8] != (CHANNELS, RATE):
            raise RecordingError(f"{path.name} is not a recording")
        data = max(0, size - HEADER_SIZE) // FRAME_BYTES * FRAME_BYTES
        file.truncate(HEADER_SIZE + data)
        file.seek(0)
        file.write(wav_header(data))
    return HEADER_SIZE + data, data // FRAME_BYTES


@dataclass(frozen=True, slots=True)
class Recorded:
    """A finished recording: its size in bytes and its length in frames."""

    size: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / RATE


class _Stream:
    """Where one channel's current RTP stream sits on the timeline."""

    __slots__ = ("anchor_frame", "anchor_timestamp", "late_run", "ssrc")

    def __init__(self) -> None:
        self.ssrc = b""
        self.anchor_timestamp = 0
        self.anchor_frame = 0
        self.late_run = 0  # packets in a row that came after their frames were written


class StereoAligner:
    """Two channels of G.711 RTP placed on one timeline whose frame 0 is
    `started` (a clock reading); `take(until)` hands out the interleaved
    frames up to a time, zeros where nothing arrived, and `revised()` those
    handed out already that a late packet has changed since. Pure: the
    caller passes every time."""

    def __init__(self, started: float, window: Window | None = None) -> None:
        self.started = started
        self.flushed = 0  # frames handed out so far
        # Frames from `base` on: the last HISTORY handed out, then the pending.
        # A window handed in must be zeros (`Windows` keeps them so).
        self.window = window if window is not None else new_window()
        self.base = 0
        self.filled = 0  # window rows written to
        self.dirty: int | None = None  # the first handed-out frame changed since
        self.streams = (_Stream(), _Stream())
        # Packets (or parts) that came too late even for the history, or
        # beyond the window; packets ignored as not RTP or too long.
        self.late = 0
        self.ignored = 0

    def frame_at(self, when: float) -> int:
        return round((when - self.started) * RATE)

    @property
    def written_until(self) -> float:
        """The clock reading the frames handed out so far reach."""
        return self.started + self.flushed / RATE

    def add(
        self, channel: int, arrival: float, packet: bytes, payload_types: Mapping[int, str]
    ) -> None:
        """Place one RTP packet received on `channel` at `arrival`."""
        offset = payload_offset(packet)
        if offset < 0 or packet[0] >> 6 != 2:
            self.ignored += 1
            return
        end = len(packet)
        if packet[0] & 0x20:  # padding
            end -= packet[-1]
        payload_type = packet[1] & 0x7F
        name = payload_types.get(payload_type) or _STATIC_TYPES.get(payload_type, "")
        table = _DECODERS.get(name.upper())
        if table is None or end <= offset:
            return  # telephone-event, comfort noise, a codec we do not decode: silence
        if end - offset > MAX_PAYLOAD:
            self.ignored += 1
            return
        samples = table[np.frombuffer(packet, dtype=np.uint8, count=end - offset, offset=offset)]
        frame = self._frame_of(channel, arrival, packet, len(samples))
        if frame is not None:
            self._place(channel, frame, samples)

    def _frame_of(self, channel: int, arrival: float, packet: bytes, count: int) -> int | None:
        """Where the packet goes; None: too late even for the history."""
        # The packet's last sample was captured about when it arrived.
        arrived = self.frame_at(arrival) - count
        stream = self.streams[channel]
        ssrc, timestamp = packet[8:12], int.from_bytes(packet[4:8], "big")
        if stream.ssrc == ssrc:
            delta = (timestamp - stream.anchor_timestamp + 0x80000000) % 0x100000000 - 0x80000000
            frame = stream.anchor_frame + delta
            if frame - arrived <= AHEAD * RATE:
                if frame + count > self.base:
                    stream.late_run = 0
                    return frame
                # Too late: a long stall's burst loses its oldest packets
                # only; a stream late packet after packet (a phone that froze
                # its timestamps while silent) is placed by arrival again.
                stream.late_run += 1
                if stream.late_run < LATE_RUN:
                    self.late += 1
                    return None
        stream.ssrc, stream.anchor_timestamp, stream.anchor_frame = ssrc, timestamp, arrived
        stream.late_run = 0
        return arrived

    def _place(self, channel: int, frame: int, samples: npt.NDArray[np.int16]) -> None:
        start = frame - self.base
        if start < 0:
            self.late += 1
            samples = samples[-start:]
            start = 0
        end = min(start + len(samples), WINDOW)
        if end <= start:
            if len(samples):
                self.late += 1
            return
        self.window[start:end, channel] = samples[: end - start]
        self.filled = max(self.filled, end)
        first = self.base + start
        if first < self.flushed and (self.dirty is None or first < self.dirty):
            self.dirty = first

    def revised(self) -> tuple[int, bytes] | None:
        """(first frame, interleaved frames up to the last handed out) that
        late packets changed since they were handed out; None if none."""
        if self.dirty is None:
            return None
        start, self.dirty = self.dirty, None
        return start, self.window[start - self.base : self.flushed - self.base].tobytes()

    def take(self, until: float) -> bytes:
        """The interleaved frames from the last `take` up to `until`."""
        count = self.frame_at(until) - self.flushed
        if count <= 0:
            return b""
        window, head = self.window, self.flushed - self.base
        kept = max(0, min(count, WINDOW - head))
        out = window[head : head + kept].tobytes()
        if count > kept:
            out += bytes((count - kept) * FRAME_BYTES)
        self.flushed += count
        self._slide(max(0, self.flushed - _HISTORY_FRAMES))
        return out

    def _slide(self, base: int) -> None:
        """Move the window's start to frame `base`, keeping what follows it."""
        shift = base - self.base
        if shift <= 0:
            return
        window, filled = self.window, self.filled
        live = max(0, filled - shift)
        if live:
            window[:live] = window[shift : shift + live]
        window[live : max(filled, live)] = 0
        self.filled, self.base = live, base
        if self.dirty is not None and self.dirty < base:
            self.dirty = base

    def release(self) -> Window:
        """Give up the window (for another aligner); this one is done."""
        window, self.window = self.window, _NO_WINDOW
        self.base = self.filled = self.flushed = 0
        self.dirty = None
        return window


Window = npt.NDArray[np.int16]
_NO_WINDOW: Window = np.zeros((0, CHANNELS), dtype="<i2")


def new_window() -> Window:
    return np.zeros((WINDOW, CHANNELS), dtype="<i2")


class Windows:
    """Aligner windows kept for the next recordings, in the writer thread
    only. A window is 192 KB: allocated per call on the loop it cost about
    50 µs there (the allocation, and the pages faulted in as it was first
    written), and its release as much again."""

    def __init__(self, keep: int = 64) -> None:
        self.keep = keep
        self._free: list[Window] = []

    def take(self) -> Window:
        return self._free.pop() if self._free else new_window()

    def give(self, window: Window) -> None:
        if len(window) == WINDOW and len(self._free) < self.keep:
            window.fill(0)
            self._free.append(window)


class Recording:
    """One call's recording: its two taps' queue, its aligner and its file.
    `taps` run on the loop; `pump` and `finish` in the writer thread, which
    also makes the aligner (its window from `windows`) on the first pump."""

    def __init__(
        self,
        call_id: str,
        path: Path,
        started: float,
        clock: Clock,
        windows: Windows | None = None,
    ) -> None:
        self.call_id = call_id
        self.path = path
        self.started = started
        self._windows = windows if windows is not None else Windows(keep=0)
        self._aligner: StereoAligner | None = None
        self.queue: deque[tuple[int, float, bytes, Mapping[int, str]]] = deque()
        self.stopped_at: float | None = None
        # Packets the full queue turned away, counted by the taps in a cell
        # of their own: a tap that held the recording would be a reference
        # cycle, and every recording (with its 192 KB window) would wait for
        # the collector's full pass, minutes away, to be freed.
        self._dropped = [0]
        self.data_bytes = 0
        self.failed = False
        self._fd: int | None = None
        self.taps = (self._tap(0, clock), self._tap(1, clock))

    @property
    def dropped(self) -> int:
        """Packets the full queue turned away."""
        return self._dropped[0]

    @property
    def aligner(self) -> StereoAligner:
        """The timeline (writer thread only: made on first use)."""
        if self._aligner is None:
            self._aligner = StereoAligner(self.started, self._windows.take())
        return self._aligner

    def _tap(self, channel: int, clock: Clock) -> Tap:
        queue, dropped = self.queue, self._dropped

        def tap(leg: Leg, packet: bytes) -> None:
            if len(queue) < MAX_QUEUED:
                queue.append((channel, clock(), packet, leg.payload_types))
            else:
                dropped[0] += 1

        return tap

    def pump(self, now: float) -> None:
        """Place what is queued and write what is older than `LAG` (all of
        it up to the stop, once stopped). A writer that fell behind (a busy
        machine) catches up on the packets' own clock: it writes as it goes
        through them, so a backlog never overflows the aligner's window."""
        queue, aligner = self.queue, self.aligner
        while queue:
            channel, arrival, packet, payload_types = queue.popleft()
            if arrival - LAG > aligner.written_until + CATCH_UP:
                self._write_out(arrival - LAG)
            aligner.add(channel, arrival, packet, payload_types)
        self._write_out(self.stopped_at if self.stopped_at is not None else now - LAG)

    def _write_out(self, until: float) -> None:
        revised = self.aligner.revised()
        if revised is not None and self._fd is not None and not self.failed:
            frame, frames = revised
            try:
                os.pwrite(self._fd, frames, HEADER_SIZE + frame * FRAME_BYTES)
            except OSError as error:
                self._failed(error)
        self._append(self.aligner.take(until))

    def _failed(self, error: OSError) -> None:
        self.failed = True
        log_event(
            logger, logging.ERROR, "recording.write_failed", call_id=self.call_id, error=error
        )

    def _append(self, frames: bytes) -> None:
        if self.failed or (not frames and self._fd is not None):
            return
        try:
            if self._fd is None:
                self._fd = self._open()
                _write_all(self._fd, wav_header(0) + frames)  # one write for both
            else:
                _write_all(self._fd, frames)
            self.data_bytes += len(frames)
        except OSError as error:
            self._failed(error)

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            return os.open(self.path, flags, 0o640)
        except FileNotFoundError:  # the day's directory, made on its first call
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, flags, 0o640)

    def finish(self) -> Recorded | None:
        """Write the rest, the header's sizes, and close the file; what it
        holds, or None when it could not be made."""
        self.pump(self.stopped_at or 0.0)
        if self._fd is not None:
            if not self.failed:
                try:
                    os.pwrite(self._fd, wav_header(self.data_bytes), 0)
                except OSError as error:
                    self._failed(error)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._aligner is not None:
            self._windows.give(self._aligner.release())
        if self.failed:
            try:
                size, frames = finalize_wav(self.path)
            except (OSError, RecordingError):
                return None
            return Recorded(size, frames)
        return Recorded(HEADER_SIZE + self.data_bytes, self.data_bytes // FRAME_BYTES)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


Finished = Callable[[str, "Recorded | None"], None]


class Recorder:
    """Every recording of the process, and the one thread that writes them.

    `record()` and `stop()` are called on the event loop and touch no disk;
    `on_finished(call_id, recorded)` is called in the writer thread once a
    stopped recording's file is complete (None: it could not be written):
    hand it to the loop with `call_soon_threadsafe`."""

    def __init__(
        self,
        directory: Path,
        on_finished: Finished,
        *,
        clock: Clock = time.monotonic,
        pump_interval: float = PUMP_INTERVAL,
    ) -> None:
        self.directory = directory
        self.on_finished = on_finished
        self.clock = clock
        self.pump_interval = pump_interval
        self._recordings: dict[str, Recording] = {}
        self._windows = Windows()  # the writer thread's
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._started = False
        # Packets turned away by full queues, over all finished recordings.
        self.dropped = 0

    def record(self, call_id: str, relative: str, left: Leg, right: Leg) -> Recording:
        """Start recording `left` and `right` into `relative` (under the
        directory); frame 0 is now."""
        recording = Recording(
            call_id, self.directory / relative, self.clock(), self.clock, self._windows
        )
        with self._lock:
            self._recordings[call_id] = recording
        left.add_tap(recording.taps[0])
        right.add_tap(recording.taps[1])
        if not self._started:
            self._started = True
            self._thread.start()
        return recording

    def stop(self, recording: Recording, legs: tuple[Leg | None, ...] = ()) -> None:
        """The call ended: take the taps off its legs; the thread writes the
        rest and closes the file."""
        if recording.stopped_at is not None:
            return
        for leg in legs:
            if leg is not None:
                for tap in recording.taps:
                    leg.remove_tap(tap)
        recording.stopped_at = self.clock()
        self._wake.set()

    @property
    def active(self) -> int:
        return len(self._recordings)

    def close(self) -> None:
        """Stop every recording, finish their files and end the thread
        (blocking: call it in a thread)."""
        with self._lock:
            recordings = list(self._recordings.values())
        now = self.clock()
        for recording in recordings:
            if recording.stopped_at is None:
                recording.stopped_at = now
        self._closing = True
        self._wake.set()
        if self._started:
            self._thread.join()
        else:
            self._pump_all()

    def _run(self) -> None:
        due = self.clock() + self.pump_interval
        while not self._closing:
            self._wake.wait(max(0.0, due - self.clock()))
            self._wake.clear()
            # A call's end wakes us to finish its file; the others are
            # pumped on their interval only (200 calls ending a second
            # would otherwise write every file 200 times a second).
            now = self.clock()
            pump = now >= due
            if pump:
                due = now + self.pump_interval
            self._pump_all(live=pump)
        self._pump_all()

    def _pump_all(self, live: bool = True) -> None:
        with self._lock:
            recordings = list(self._recordings.values())
        now = self.clock()
        for recording in recordings:
            try:
                if recording.stopped_at is None:
                    if live:
                        recording.pump(now)
                    continue
                recorded = recording.finish()
            except Exception:  # one broken recording must not stop the others
                logger.exception("recording.failed call_id=%s", recording.call_id)
                recorded = None
            with self._lock:
                self._recordings.pop(recording.call_id, None)
            self.dropped += recording.dropped
            aligner = recording.aligner
            if recording.dropped or aligner.late or aligner.ignored:
                # Audio the file lacks though it reached us: worth a line.
                log_event(
                    logger,
                    logging.WARNING,
                    "recording.incomplete",
                    call_id=recording.call_id,
                    queue_full=recording.dropped,
                    late=aligner.late,
                    ignored=aligner.ignored,
                )
            try:
                self.on_finished(recording.call_id, recorded)
            except Exception:
                logger.exception("recording.report_failed call_id=%s", recording.call_id)
