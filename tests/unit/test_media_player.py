"""The player with a fake clock, a fake timer and fake legs: the RTP it sends
(fields, pacing from real elapsed time, capped catch-up), the loop wrapping,
several legs on one timer, stop; and the bundled melody."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from callbridge.media import g711
from callbridge.media.player import (
    FRAME,
    MAX_CATCH_UP,
    PLAYABLE,
    Music,
    Player,
    default_music,
    playable_codec,
)
from callbridge.media.rtp import RtpPacket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timer:
    def __init__(self, timers: Timers, delay: float, callback: Callable[[], None]) -> None:
        self.timers, self.delay, self.callback = timers, delay, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """A fake `call_later`: remembers what is armed; `fire()` runs it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.armed: list[Timer] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self, delay, callback)
        self.armed.append(timer)
        return timer

    @property
    def pending(self) -> list[Timer]:
        return [t for t in self.armed if not t.cancelled]

    def fire(self, late: float = 0.0) -> None:
        """Advance the clock to the one pending timer (plus `late`) and run it."""
        (timer,) = self.pending
        self.armed.remove(timer)
        self.clock.now += timer.delay + late
        timer.callback()


class FakeLeg:
    def __init__(self, name: str = "callee") -> None:
        self.name = name
        self.sent: list[bytes] = []

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)

    @property
    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(p) for p in self.sent]


def ramp(frames: float) -> np.ndarray:
    """Music whose every sample is distinct enough to find in a packet."""
    return (np.arange(int(frames * 160)) * 7 % 20000 - 10000).astype(np.int16)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timers(clock: Clock) -> Timers:
    return Timers(clock)


def player_of(samples: np.ndarray, clock: Clock, timers: Timers) -> Player:
    return Player(samples, clock=clock, call_later=timers)


def test_packets_are_rtp_with_the_legs_payload_type_and_a_marker_first(
    clock: Clock, timers: Timers
) -> None:
    music = ramp(10)
    player = player_of(music, clock, timers)
    leg = FakeLeg()
    player.play(leg, 8, "PCMA")
    for _ in range(3):
        timers.fire()
    packets = leg.packets
    assert len(packets) == 4
    assert all(p.version == 2 and p.payload_type == 8 for p in packets)
    assert [p.marker for p in packets] == [True, False, False, False]
    assert all(p.csrc == () and p.extension is None and p.padding == 0 for p in packets)
    first = packets[0]
    for n, packet in enumerate(packets):
        assert packet.sequence_number == (first.sequence_number + n) & 0xFFFF
        assert packet.timestamp == (first.timestamp + 160 * n) & 0xFFFFFFFF
        assert packet.ssrc == first.ssrc
        assert packet.payload == g711.pcma_encode(music[160 * n : 160 * (n + 1)])
    assert all(len(p) == 12 + 160 for p in leg.sent)


def test_pcmu_is_encoded_as_mu_law_whatever_the_case_of_its_name(
    clock: Clock, timers: Timers
) -> None:
    music = ramp(2)
    leg = FakeLeg()
    player_of(music, clock, timers).play(leg, 0, "pcmu")
    assert leg.packets[0].payload == g711.pcmu_encode(music[:160])
    assert leg.packets[0].payload_type == 0


def test_what_it_cannot_send_is_refused(clock: Clock, timers: Timers) -> None:
    player = player_of(ramp(2), clock, timers)
    assert frozenset({"PCMU", "PCMA"}) == PLAYABLE
    with pytest.raises(ValueError, match="opus"):
        player.play(FakeLeg(), 111, "opus")
    with pytest.raises(ValueError, match="128"):
        player.play(FakeLeg(), 128, "PCMU")
    assert player.playing == 0 and not timers.pending


def test_the_loop_wraps_to_its_beginning(clock: Clock, timers: Timers) -> None:
    music = ramp(2.5)  # 400 samples: the third frame wraps
    leg = FakeLeg()
    player_of(music, clock, timers).play(leg, 0, "PCMU")
    for _ in range(5):
        timers.fire()
    payloads = [p.payload for p in leg.packets]
    looped = np.concatenate([music] * 3)
    expected = [g711.pcmu_encode(looped[160 * n : 160 * (n + 1)]) for n in range(6)]
    assert payloads == expected
    # After exactly 2.5 frames, twice, the loop is back at sample 0.
    assert payloads[5] == g711.pcmu_encode(looped[800:960])


def test_music_shorter_than_a_frame_still_fills_every_packet(clock: Clock, timers: Timers) -> None:
    music = ramp(0.25)  # 40 samples
    leg = FakeLeg()
    player_of(music, clock, timers).play(leg, 0, "PCMU")
    timers.fire()
    looped = np.tile(music, 8)
    assert [p.payload for p in leg.packets] == [
        g711.pcmu_encode(looped[:160]),
        g711.pcmu_encode(looped[160:320]),
    ]


def test_stop_sends_nothing_more_and_is_idempotent(clock: Clock, timers: Timers) -> None:
    player = player_of(ramp(10), clock, timers)
    leg = FakeLeg()
    playing = player.play(leg, 0, "PCMU")
    timers.fire()
    playing.stop()
    playing.stop()
    assert playing.stopped and player.playing == 0
    assert not timers.pending  # the timer goes with the last leg
    clock.now += 1.0
    player.tick()
    assert len(leg.sent) == 2


def test_two_legs_share_one_timer_with_their_own_streams(clock: Clock, timers: Timers) -> None:
    music = ramp(10)
    player = player_of(music, clock, timers)
    alice, bob = FakeLeg("alice"), FakeLeg("bob")
    player.play(alice, 0, "PCMU")
    clock.now += 0.007  # between two ticks
    player.play(bob, 8, "PCMA")
    assert len(timers.pending) == 1
    for _ in range(9):
        timers.fire()
        assert len(timers.pending) == 1
    a, b = alice.packets, bob.packets
    assert len(a) == len(b) == 10
    assert a[0].ssrc != b[0].ssrc
    assert {p.ssrc for p in a} == {a[0].ssrc} and {p.ssrc for p in b} == {b[0].ssrc}
    assert [p.payload_type for p in b] == [8] * 10
    assert b[3].payload == g711.pcma_encode(music[480:640])
    # The timer keeps a 20 ms grid from its first leg, not from the second.
    assert clock.now == pytest.approx(100.0 + 9 * FRAME)


def test_a_late_tick_sends_every_frame_due_so_the_music_keeps_time(
    clock: Clock, timers: Timers
) -> None:
    leg = FakeLeg()
    player_of(ramp(50), clock, timers).play(leg, 0, "PCMU")
    timers.fire(late=0.045)  # 65 ms after the start: frames 0-3 are due
    packets = leg.packets
    assert len(packets) == 4
    assert [p.timestamp - packets[0].timestamp for p in packets] == [0, 160, 320, 480]
    # The next tick is back on the 20 ms grid: 80 ms after the start.
    assert timers.pending[0].delay == pytest.approx(0.015)
    timers.fire()
    assert len(leg.sent) == 5


def test_catch_up_after_a_long_stall_is_capped_and_skips_the_oldest(
    clock: Clock, timers: Timers
) -> None:
    music = ramp(100)
    leg = FakeLeg()
    player_of(music, clock, timers).play(leg, 0, "PCMU")
    timers.fire(late=0.98)  # a 1 s stall: 50 frames due after the first
    packets = leg.packets
    assert len(packets) == 1 + MAX_CATCH_UP
    first, resumed = packets[0], packets[1]
    # Sequence numbers go on without a gap; time and music jump as the clock did.
    assert resumed.sequence_number == (first.sequence_number + 1) & 0xFFFF
    assert resumed.marker and not any(p.marker for p in packets[2:])
    skipped = 50 - MAX_CATCH_UP
    frame = 1 + skipped
    assert resumed.timestamp == (first.timestamp + 160 * frame) & 0xFFFFFFFF
    assert resumed.payload == g711.pcmu_encode(music[160 * frame : 160 * (frame + 1)])
    assert packets[-1].timestamp == (first.timestamp + 160 * 50) & 0xFFFFFFFF
    timers.fire()
    assert len(leg.sent) == 2 + MAX_CATCH_UP


def test_replace_plays_the_new_music_from_its_beginning(clock: Clock, timers: Timers) -> None:
    player = player_of(ramp(10), clock, timers)
    leg = FakeLeg()
    player.play(leg, 0, "PCMU")
    timers.fire()
    new = np.full(800, 1000, dtype=np.int16)
    player.replace(new)
    timers.fire()
    packets = leg.packets
    assert packets[2].payload == g711.pcmu_encode(new[:160])
    assert packets[2].ssrc == packets[0].ssrc
    assert packets[2].sequence_number == (packets[0].sequence_number + 2) & 0xFFFF


def test_a_leg_that_fails_to_send_is_dropped_and_the_others_play_on(
    clock: Clock, timers: Timers
) -> None:
    class Broken(FakeLeg):
        def send(self, packet: bytes) -> None:
            if len(self.sent) == 1:
                raise OSError("closed")
            super().send(packet)

    player = player_of(ramp(10), clock, timers)
    broken, fine = Broken("broken"), FakeLeg("fine")
    stream = player.play(broken, 0, "PCMU")
    player.play(fine, 0, "PCMU")
    timers.fire()
    timers.fire()
    assert stream.stopped and player.playing == 1
    assert len(broken.sent) == 1 and len(fine.sent) == 3


def test_music_must_be_int16_mono_and_bounded() -> None:
    with pytest.raises(ValueError, match="int16"):
        Music(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        Music(np.zeros((160, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="samples"):
        Music(np.zeros(0, dtype=np.int16))


def test_the_bundled_melody_is_a_few_seconds_at_minus_18_dbfs() -> None:
    music = default_music()
    assert music.dtype == np.int16 and music.ndim == 1
    assert 4.0 <= len(music) / 8000 <= 12.0
    level = 20 * np.log10(np.sqrt(np.mean(music.astype(np.float64) ** 2)) / 32768)
    assert level == pytest.approx(-18.0, abs=0.5)
    assert np.abs(music).max() < 32000  # no clipping
    assert default_music() is music  # made once
    # Its energy is in the telephone band, on musical notes (C major).
    spectrum = np.abs(np.fft.rfft(music.astype(np.float64)))
    frequencies = np.fft.rfftfreq(len(music), 1 / 8000)
    band = (frequencies > 300) & (frequencies < 3400)
    assert (spectrum[band] ** 2).sum() > 0.5 * (spectrum**2).sum()
    peak = frequencies[np.argmax(spectrum * band)]
    semitones = 12 * np.log2(peak / 440.0)
    assert abs(semitones - round(semitones)) < 0.1
    # No click at the loop point: the end fades into the beginning.
    assert abs(int(music[-1])) < 200 and abs(int(music[0])) < 200


def test_a_tick_by_hand_takes_the_timers_place(clock: Clock, timers: Timers) -> None:
    leg = FakeLeg()
    player = player_of(ramp(10), clock, timers)
    player.play(leg, 0, "PCMU")
    clock.now += FRAME
    player.tick()
    assert len(timers.pending) == 1 and len(leg.sent) == 2


def test_the_melody_sounds_only_its_own_frequencies() -> None:
    from callbridge.media.melody import frequencies

    music = default_music().astype(np.float64)
    spectrum = np.abs(np.fft.rfft(music * np.hanning(len(music)))) ** 2
    bins = np.fft.rfftfreq(len(music), 1 / 8000)
    near = np.zeros(len(bins), dtype=bool)
    for frequency in frequencies():
        assert 60 < frequency < 3400
        near |= np.abs(bins - frequency) <= 8
    assert spectrum[near].sum() > 0.95 * spectrum.sum()


def test_the_codec_played_is_the_first_playable_one_the_peer_offered() -> None:
    assert playable_codec({8: "PCMA", 0: "PCMU", 101: "telephone-event"}) == (8, "PCMA")
    assert playable_codec({111: "opus", 0: "pcmu"}) == (0, "PCMU")
    assert playable_codec({111: "opus", 101: "telephone-event"}) is None
    assert playable_codec({}) is None
