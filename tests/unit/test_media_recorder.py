"""The recorder: G.711 RTP from two legs into one stereo WAV on the call's
timeline (loss, silence and codecs it cannot decode give zeros, forged
timestamps cannot move audio off the clock), the file a WAV after every
append and after a crash, and the writer thread; every time is a fake
clock's."""

from __future__ import annotations

import gc
import shutil
import struct
import threading
import wave
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from callbridge.media.engine import Tap
from callbridge.media.g711 import pcma_encode, pcmu_encode
from callbridge.media.recorder import (
    FRAME_BYTES,
    HEADER_SIZE,
    HISTORY,
    LAG,
    MAX_QUEUED,
    RATE,
    Recorded,
    Recorder,
    Recording,
    RecordingError,
    StereoAligner,
    finalize_wav,
    wav_header,
)
from callbridge.media.rtp import RtpPacket

PCMU = {0: "PCMU", 101: "telephone-event"}
PCMA = {8: "PCMA"}
PACKET = 160  # 20 ms


def tone(frequency: float, samples: int, start: int = 0) -> np.ndarray:
    t = (np.arange(samples) + start) / RATE
    return (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def rtp(
    seq: int,
    timestamp: int,
    payload: bytes,
    *,
    payload_type: int = 0,
    ssrc: int = 0x1234,
    **fields: object,
) -> bytes:
    return RtpPacket(
        payload_type=payload_type,
        sequence_number=seq & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=payload,
        **fields,  # type: ignore[arg-type]
    ).to_bytes()


def stream(
    aligner: StereoAligner,
    channel: int,
    frequency: float,
    *,
    packets: int,
    start: float = 0.0,
    ts0: int = 1000,
    skip: tuple[int, ...] = (),
    encode: object = pcmu_encode,
    payload_type: int = 0,
    types: Mapping[int, str] = PCMU,
) -> None:
    """`packets` 20 ms packets of a tone, the n-th arriving when its last
    sample was captured (start + (n + 1) * 20 ms)."""
    for n in range(packets):
        if n in skip:
            continue
        samples = tone(frequency, PACKET, n * PACKET)
        payload = encode(samples)  # type: ignore[operator]
        packet = rtp(n, ts0 + n * PACKET, payload, payload_type=payload_type)
        aligner.add(channel, start + (n + 1) * 0.02, packet, types)


def channels(frames: bytes) -> tuple[np.ndarray, np.ndarray]:
    both = np.frombuffer(frames, dtype="<i2").reshape(-1, 2)
    return both[:, 0], both[:, 1]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt((x.astype(np.float64) ** 2).mean())) if len(x) else 0.0


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.fft.rfftfreq(len(x), 1 / RATE)[spectrum.argmax()])


# --- the WAV ------------------------------------------------------------------


def test_the_header_describes_8_khz_16_bit_stereo(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav_header(8 * FRAME_BYTES) + bytes(8 * FRAME_BYTES))
    with wave.open(str(path)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (2, 2, RATE)
        assert read.getnframes() == 8


def test_finalize_makes_a_file_cut_by_a_kill_a_wav_of_its_whole_frames(tmp_path: Path) -> None:
    # As a kill leaves it: frames appended after the last header rewrite,
    # the last one cut in the middle.
    path = tmp_path / "killed.wav"
    path.write_bytes(wav_header(4 * FRAME_BYTES) + bytes(range(250))[: 10 * FRAME_BYTES + 3])
    assert finalize_wav(path) == (HEADER_SIZE + 10 * FRAME_BYTES, 10)
    with wave.open(str(path)) as read:
        assert read.getnframes() == 10
    assert path.stat().st_size == HEADER_SIZE + 10 * FRAME_BYTES


def test_finalize_makes_an_empty_file_an_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "opened.wav"
    path.write_bytes(b"")
    assert finalize_wav(path) == (HEADER_SIZE, 0)
    with wave.open(str(path)) as read:
        assert read.getnframes() == 0


@pytest.mark.parametrize(
    "content",
    [b"not a wav at all, just text" * 3, wav_header(0)[:20], b"RIFF" + bytes(40)],
)
def test_finalize_refuses_a_file_that_is_not_a_recording(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.wav"
    path.write_bytes(content)
    with pytest.raises(RecordingError):
        finalize_wav(path)
    assert path.read_bytes() == content  # untouched


def test_a_mono_wav_is_not_taken_for_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(100))
    with pytest.raises(RecordingError):
        finalize_wav(path)


# --- the timeline -------------------------------------------------------------


def test_each_side_is_decoded_onto_its_own_channel() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=50)
    stream(aligner, 1, 440, packets=50, encode=pcma_encode, payload_type=8, types=PCMA)
    left, right = channels(aligner.take(1.0))
    assert len(left) == RATE
    assert peak_hz(left) == pytest.approx(1000, abs=2)
    assert peak_hz(right) == pytest.approx(440, abs=2)
    # G.711 keeps the level within a fraction of a dB.
    assert rms(left) == pytest.approx(8000 / np.sqrt(2), rel=0.05)
    assert rms(right) == pytest.approx(8000 / np.sqrt(2), rel=0.05)


def test_static_payload_types_decode_without_an_rtpmap() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=10, encode=pcma_encode, payload_type=8, types={})
    left, _ = channels(aligner.take(0.2))
    assert peak_hz(left) == pytest.approx(1000, abs=50)
    assert rms(left) > 4000


def test_a_lost_packet_is_silence_in_its_place_and_the_rest_keeps_time() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=50, skip=(10,))
    left, _ = channels(aligner.take(1.0))
    assert not left[10 * PACKET : 11 * PACKET].any()
    # Every other packet sits exactly where it was captured.
    np.testing.assert_array_equal(left[11 * PACKET : 50 * PACKET], channels_of_tone(11, 50))


def channels_of_tone(first: int, last: int) -> np.ndarray:
    from callbridge.media.g711 import pcmu_decode

    return np.concatenate(
        [pcmu_decode(pcmu_encode(tone(1000, PACKET, n * PACKET))) for n in range(first, last)]
    )


def test_a_silent_stretch_is_zeros_and_both_channels_keep_the_wall_clock() -> None:
    # The caller talks for the first second, then stops (VAD): no packets,
    # timestamps go on. The callee starts at 1.5 s and talks to the end.
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=50)
    stream(aligner, 0, 1000, packets=50, start=2.0, ts0=1000 + 100 * PACKET)
    stream(aligner, 1, 440, packets=75, start=1.5, ts0=77)
    left, right = channels(aligner.take(3.0))
    assert len(left) == 3 * RATE
    assert rms(left[: RATE - PACKET]) > 4000 and not left[RATE : 2 * RATE].any()
    assert rms(left[2 * RATE :]) > 4000
    assert not right[: int(1.5 * RATE)].any() and rms(right[int(1.5 * RATE) :]) > 4000


def test_telephone_events_and_unknown_codecs_are_silence() -> None:
    aligner = StereoAligner(started=0.0)
    event = bytes([1, 0x0A, 0, 160])  # digit 1, volume 10, 160 samples
    for n in range(10):
        aligner.add(0, (n + 1) * 0.02, rtp(n, 1000, event, payload_type=101), PCMU)
        aligner.add(
            1, (n + 1) * 0.02, rtp(n, n * 960, b"\x55" * 80, payload_type=111), {111: "opus"}
        )
    left, right = channels(aligner.take(0.2))
    assert len(left) == 0.2 * RATE and not left.any() and not right.any()


def test_a_forged_timestamp_jump_is_placed_by_its_arrival() -> None:
    # Timestamps 10 minutes ahead would put the audio far off the clock (and
    # ask for a window to match): the packet lands where it arrived.
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=10)
    jump = rtp(10, 1000 + 10 * PACKET + 600 * RATE, pcmu_encode(tone(1000, PACKET)))
    aligner.add(0, 0.22, jump, PCMU)
    left, _ = channels(aligner.take(0.3))
    assert rms(left[11 * PACKET - PACKET : 11 * PACKET]) > 4000  # ends at its arrival
    assert not left[11 * PACKET :].any()


def test_a_new_stream_is_placed_by_its_arrival() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=10)
    # Another SSRC (a re-INVITE, a transfer) with unrelated timestamps.
    aligner.add(0, 1.0, rtp(0, 5, pcmu_encode(tone(1000, PACKET)), ssrc=99), PCMU)
    left, _ = channels(aligner.take(1.0))
    assert not left[10 * PACKET : RATE - PACKET].any()
    assert rms(left[RATE - PACKET :]) > 4000


def test_a_packet_later_than_what_was_written_revises_it() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=10, skip=(3,))
    first = aligner.take(0.2)
    assert aligner.revised() is None
    late = pcmu_encode(tone(1000, PACKET, 3 * PACKET))
    aligner.add(0, 0.25, rtp(3, 1000 + 3 * PACKET, late), PCMU)
    assert aligner.late == 0
    revised = aligner.revised()
    assert revised is not None
    frame, frames = revised
    assert frame == 3 * PACKET and len(frames) == (10 - 3) * PACKET * FRAME_BYTES
    left, _ = channels(first[: frame * FRAME_BYTES] + frames)
    np.testing.assert_array_equal(left, channels_of_tone(0, 10))
    assert aligner.revised() is None  # once


def test_a_packet_later_than_the_history_is_dropped_and_counted() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=10)
    written = aligner.take(0.2) + aligner.take(HISTORY + 1.0)
    aligner.add(0, HISTORY + 1.0, rtp(3, 1000 + 3 * PACKET, pcmu_encode(tone(1000, 160))), PCMU)
    assert aligner.late == 1 and aligner.revised() is None
    assert len(written) == round((HISTORY + 1.0) * RATE) * FRAME_BYTES


def test_frames_come_out_once_in_order_whatever_the_take_sizes() -> None:
    # 4 s of packets, more than the aligner's window, taken as they come.
    aligner = StereoAligner(started=0.0)
    parts = []
    for until in (0.04, 0.04, 0.5, 1.38, 2.0, 2.5, 4.0):
        stream(aligner, 0, 1000, packets=round(until * 50))
        parts.append(aligner.take(until))
    left, _ = channels(b"".join(parts))
    np.testing.assert_array_equal(left, channels_of_tone(0, 200))


def test_a_packet_beyond_the_window_is_dropped_not_buffered() -> None:
    aligner = StereoAligner(started=0.0)
    stream(aligner, 0, 1000, packets=400)  # 8 s without a take: the window holds 6
    assert aligner.late > 0
    left, _ = channels(aligner.take(8.0))
    assert len(left) == 8 * RATE and rms(left[: 5 * RATE]) > 4000


def test_garbage_and_oversized_packets_are_ignored() -> None:
    aligner = StereoAligner(started=0.0)
    aligner.add(0, 0.02, b"\x80\x00", PCMU)
    aligner.add(0, 0.02, b"\x00" * 200, PCMU)  # version 0
    aligner.add(0, 0.02, bytes([0x8F]) + bytes(20), PCMU)  # 15 CSRCs that are not there
    aligner.add(0, 0.6, rtp(1, 1, b"\xff" * 5000), PCMU)  # 0.6 s in one packet
    assert aligner.ignored == 4
    assert not aligner.take(1.0).strip(b"\x00")


def test_padding_is_not_decoded_as_audio() -> None:
    aligner = StereoAligner(started=0.0)
    aligner.add(0, 0.02, rtp(0, 0, pcmu_encode(tone(1000, PACKET)), padding=4), PCMU)
    left, _ = channels(aligner.take(0.04))
    assert rms(left[:PACKET]) > 4000 and not left[PACKET:].any()


# --- a recording: queue, file, crash ----------------------------------------


class FakeLeg:
    def __init__(self, payload_types: Mapping[int, str]) -> None:
        self.payload_types = payload_types
        self.taps: list[Tap] = []

    def add_tap(self, tap: Tap) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        self.taps = [t for t in self.taps if t is not tap]

    def receive(self, packet: bytes) -> None:
        for tap in self.taps:
            tap(self, packet)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def talk(clock: FakeClock, left: FakeLeg, right: FakeLeg, seconds: float, n0: int = 0) -> int:
    """Both sides send 20 ms packets of their tone for `seconds`; the next n."""
    n = n0
    for _ in range(round(seconds / 0.02)):
        clock.now += 0.02
        left.receive(rtp(n, n * PACKET, pcmu_encode(tone(1000, PACKET, n * PACKET))))
        right.receive(rtp(n, 7 + n * PACKET, pcmu_encode(tone(440, PACKET, n * PACKET)), ssrc=9))
        n += 1
    return n


def test_a_file_killed_after_any_append_is_made_a_wav_of_what_was_written(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    recording = Recording("c1", tmp_path / "2026/12/07/c1.wav", clock(), clock)
    left, right = FakeLeg(PCMU), FakeLeg(PCMU)
    left.add_tap(recording.taps[0])
    right.add_tap(recording.taps[1])
    talk(clock, left, right, 2.0)
    recording.pump(clock())
    # Killed here: the header says nothing was written (sizes are written
    # at the end), and the next start's finalize_wav makes it a WAV.
    killed = tmp_path / "killed.wav"
    shutil.copy(recording.path, killed)
    assert finalize_wav(killed) == (
        HEADER_SIZE + round((2.0 - LAG) * RATE) * FRAME_BYTES,
        round((2.0 - LAG) * RATE),
    )
    with wave.open(str(killed)) as read:
        assert read.getnframes() == round((2.0 - LAG) * RATE)
    talk(clock, left, right, 1.0, 100)
    recording.stopped_at = clock()
    assert recording.finish() == Recorded(HEADER_SIZE + 3 * RATE * FRAME_BYTES, 3 * RATE)
    with wave.open(str(recording.path)) as read:
        frames = read.readframes(read.getnframes())
    left_channel, right_channel = channels(frames)
    assert len(left_channel) == 3 * RATE
    assert peak_hz(left_channel) == pytest.approx(1000, abs=1)
    assert peak_hz(right_channel) == pytest.approx(440, abs=1)


def test_a_kill_between_an_append_and_its_header_leaves_a_file_recovery_completes(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    path = tmp_path / "c2.wav"
    recording = Recording("c2", path, clock(), clock)
    left, right = FakeLeg(PCMU), FakeLeg(PCMU)
    left.add_tap(recording.taps[0])
    right.add_tap(recording.taps[1])
    talk(clock, left, right, 1.0)
    recording.pump(clock())
    written = path.read_bytes()
    # The last append reached the disk, its header rewrite did not.
    path.write_bytes(written + bytes(RATE * FRAME_BYTES + 2))
    size, frames = finalize_wav(path)
    assert frames == round((1.0 - LAG) * RATE) + RATE
    with wave.open(str(path)) as read:
        assert read.getnframes() == frames
        head = read.readframes(round((1.0 - LAG) * RATE))
    assert head == written[HEADER_SIZE:]
    assert size == path.stat().st_size


def test_a_full_queue_turns_packets_away_and_counts_them(tmp_path: Path) -> None:
    clock = FakeClock()
    recording = Recording("c3", tmp_path / "c3.wav", clock(), clock)
    leg = FakeLeg(PCMU)
    leg.add_tap(recording.taps[0])
    for n in range(MAX_QUEUED + 25):
        leg.receive(rtp(n, n * PACKET, b"\xff" * PACKET))
    assert len(recording.queue) == MAX_QUEUED and recording.dropped == 25


def test_a_disk_that_fails_ends_the_recording_not_the_call(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    clock = FakeClock()
    recording = Recording("c4", blocker / "c4.wav", clock(), clock)
    recording.taps[0](FakeLeg(PCMU), rtp(0, 0, b"\xff" * PACKET))  # type: ignore[arg-type]
    recording.pump(clock() + 5)
    assert recording.failed
    recording.stopped_at = clock() + 6
    assert recording.finish() is None


# --- the writer thread ------------------------------------------------------


def test_the_thread_writes_each_recording_and_reports_it_when_stopped(tmp_path: Path) -> None:
    clock = FakeClock()
    finished: dict[str, Recorded | None] = {}
    done = threading.Event()

    def on_finished(call_id: str, recorded: Recorded | None) -> None:
        finished[call_id] = recorded
        if len(finished) == 2:
            done.set()

    recorder = Recorder(tmp_path, on_finished, clock=clock, pump_interval=0.01)
    legs = [FakeLeg(PCMU) for _ in range(4)]
    first = recorder.record("a" * 32, "2026/12/07/a.wav", legs[0], legs[1])
    second = recorder.record("b" * 32, "2026/12/07/b.wav", legs[2], legs[3])
    talk(clock, legs[0], legs[1], 1.0)
    talk(clock, legs[2], legs[3], 0.5)
    recorder.stop(first, (legs[0], legs[1]))
    assert legs[0].taps == [] and legs[1].taps == []  # nothing more queued for it
    clock.now += 0.5
    recorder.stop(second, (legs[2], legs[3]))
    assert done.wait(5), finished
    assert finished["a" * 32] == Recorded(HEADER_SIZE + round(1.5 * RATE) * 4, round(1.5 * RATE))
    assert finished["b" * 32] == Recorded(HEADER_SIZE + 2 * RATE * 4, 2 * RATE)
    recorder.close()
    assert recorder.active == 0
    with wave.open(str(tmp_path / "2026/12/07/b.wav")) as read:
        assert read.getnframes() == 2 * RATE


def test_a_call_ending_finishes_its_file_without_pumping_the_others(tmp_path: Path) -> None:
    # 200 calls ending a second must not make the thread write every live
    # recording 200 times a second: the others wait for their interval.
    clock = FakeClock()
    finished = threading.Event()
    recorder = Recorder(tmp_path, lambda *_: finished.set(), clock=clock, pump_interval=3600.0)
    legs = [FakeLeg(PCMU) for _ in range(4)]
    ending = recorder.record("a" * 32, "a.wav", legs[0], legs[1])
    recorder.record("b" * 32, "b.wav", legs[2], legs[3])
    talk(clock, legs[0], legs[1], 1.0)
    talk(clock, legs[2], legs[3], 1.0)
    recorder.stop(ending, (legs[0], legs[1]))
    assert finished.wait(5)
    with wave.open(str(tmp_path / "a.wav")) as read:
        assert read.getnframes() == 2 * RATE  # both talks: the clock ran through both
    assert not (tmp_path / "b.wav").exists()  # not pumped: no file opened yet
    recorder.close()
    with wave.open(str(tmp_path / "b.wav")) as read:
        assert read.getnframes() == 2 * RATE


def test_close_completes_every_recording_still_running(tmp_path: Path) -> None:
    clock = FakeClock()
    finished: list[str] = []
    recorder = Recorder(tmp_path, lambda call_id, _: finished.append(call_id), clock=clock)
    left, right = FakeLeg(PCMU), FakeLeg(PCMU)
    recorder.record("c" * 32, "c.wav", left, right)
    talk(clock, left, right, 0.4)
    recorder.close()
    assert finished == ["c" * 32]
    with wave.open(str(tmp_path / "c.wav")) as read:
        assert read.getnframes() == round(0.4 * RATE)


def test_header_fields_are_little_endian_riff() -> None:
    header = wav_header(400)
    assert header[:4] == b"RIFF" and struct.unpack("<I", header[4:8])[0] == 436
    assert header[36:40] == b"data" and struct.unpack("<I", header[40:44])[0] == 400


@pytest.mark.parametrize("stall", [0.4, 2.0])
def test_a_stalled_senders_burst_keeps_its_place(stall: float) -> None:
    # Nothing for a while (shorter than LAG, or longer), then the packets of
    # that while at once with the rest: each lands where it was captured,
    # written late where it was later than LAG, and nothing is lost.
    aligner = StereoAligner(started=0.0)
    written = bytearray()
    for n in range(200):
        samples = pcmu_encode(tone(1000, PACKET, n * PACKET))
        captured = (n + 1) * 0.02
        arrival = max(captured, 0.4 + stall) if captured > 0.4 else captured
        aligner.add(0, arrival, rtp(n, 1000 + n * PACKET, samples), PCMU)
        if n % 10 == 9:  # the writer, LAG behind
            if (revised := aligner.revised()) is not None:
                frame, frames = revised
                written[frame * FRAME_BYTES : frame * FRAME_BYTES + len(frames)] = frames
            written += aligner.take(arrival - LAG)
    written += aligner.take(5.0)
    left, _ = channels(bytes(written))
    np.testing.assert_array_equal(left[: 200 * PACKET], channels_of_tone(0, 200))
    assert aligner.late == 0


def test_a_phone_that_freezes_its_timestamps_while_silent_is_placed_by_arrival() -> None:
    aligner = StereoAligner(started=0.0)
    parts = []
    for n in range(100):
        # 1 s of talk, 4 s of silence (no packets, timestamps frozen), 1 s of talk.
        arrival = (n + 1) * 0.02 + (4.0 if n >= 50 else 0.0)
        aligner.add(0, arrival, rtp(n, n * PACKET, pcmu_encode(tone(1000, PACKET))), PCMU)
        parts.append(aligner.take(arrival - LAG))
    parts.append(aligner.take(6.0))
    left, _ = channels(b"".join(parts))
    assert rms(left[: RATE - PACKET]) > 4000
    assert not left[RATE + PACKET : 5 * RATE].any()
    # The second talkspurt is there, but for the packets it took to see it was late.
    assert rms(left[int(5.2 * RATE) : 6 * RATE]) > 4000
    assert 0 < aligner.late < 10


def test_a_writer_that_fell_behind_catches_up_without_losing_audio(tmp_path: Path) -> None:
    # The writer thread did not run for 8 s (a starved machine): more than
    # the aligner's window is queued, and all of it reaches the file.
    clock = FakeClock()
    recording = Recording("c5", tmp_path / "c5.wav", clock(), clock)
    left, right = FakeLeg(PCMU), FakeLeg(PCMU)
    left.add_tap(recording.taps[0])
    right.add_tap(recording.taps[1])
    talk(clock, left, right, 8.0)
    recording.pump(clock())
    recording.stopped_at = clock()
    recording.finish()
    assert recording.aligner.late == 0
    with wave.open(str(recording.path)) as read:
        left_channel, right_channel = channels(read.readframes(read.getnframes()))
    np.testing.assert_array_equal(left_channel, channels_of_tone(0, 400))
    assert rms(right_channel) > 4000


def test_a_late_packet_is_written_into_the_file_where_it_belongs(tmp_path: Path) -> None:
    clock = FakeClock()
    recording = Recording("c6", tmp_path / "c6.wav", clock(), clock)
    leg = FakeLeg(PCMU)
    leg.add_tap(recording.taps[0])
    late = None
    for n in range(100):
        clock.now += 0.02
        packet = rtp(n, n * PACKET, pcmu_encode(tone(1000, PACKET, n * PACKET)))
        if n == 10:
            late = packet  # held up in the network for 1.5 s
        else:
            leg.receive(packet)
        if n == 85:
            assert late is not None
            leg.receive(late)
        if n % 10 == 0:
            recording.pump(clock())
    recording.stopped_at = clock()
    recording.finish()
    with wave.open(str(recording.path)) as read:
        left, _ = channels(read.readframes(read.getnframes()))
    np.testing.assert_array_equal(left, channels_of_tone(0, 100))


def test_a_finished_recording_is_freed_at_once_not_by_the_collector(tmp_path: Path) -> None:
    """No reference cycle: a recording (and its window) goes with its last
    reference, not at the collector's full pass minutes later (the
    bench saw 150 KB a call pile up at 200 calls/s)."""
    recording = Recording("c1", tmp_path / "c1.wav", 0.0, lambda: 0.0)
    gone = weakref.ref(recording)
    gc.disable()
    try:
        del recording
        assert gone() is None
    finally:
        gc.enable()
