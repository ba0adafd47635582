"""The conference mixer with a fake clock, a fake timer and fake legs: each
participant hears everyone but themself, in their own codec; a silent or
lost participant stalls nobody; a loud room is scaled, not clipped; a
burst is trimmed; a late tick catches up; telephone-events are not mixed;
ten participants at once."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable

import numpy as np
import pytest

from callbridge.media import g711
from callbridge.media.mixer import MAX_BACKLOG, MIXABLE, PREFILL, RELEASE, Mixer, Room
from callbridge.media.player import FRAME, FRAME_SAMPLES, MAX_CATCH_UP
from callbridge.media.rtp import RtpPacket

from .test_media_player import Clock, Timers

RATE = 8000
ENCODE = {"PCMU": g711.pcmu_encode, "PCMA": g711.pcma_encode}
DECODE = {"PCMU": g711.pcmu_decode, "PCMA": g711.pcma_decode}
PAYLOAD_TYPES = {0: "PCMU", 8: "PCMA", 101: "telephone-event"}


class FakeLeg:
    """A leg that remembers what the mixer sent it, and whose tap the test
    feeds as the network would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.payload_types = PAYLOAD_TYPES
        self.sent: list[bytes] = []
        self.taps: list[Callable[[FakeLeg, bytes], None]] = []
        self.sequence = 0

    def add_tap(self, tap: Callable[[FakeLeg, bytes], None]) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Callable[[FakeLeg, bytes], None]) -> None:
        self.taps.remove(tap)

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)

    def receive(self, payload: bytes, payload_type: int, *, header: bytes = b"") -> None:
        self.sequence += 1
        packet = struct.pack("!BBHII", 0x80, payload_type, self.sequence, 0, 1) + header + payload
        for tap in list(self.taps):
            tap(self, packet)

    @property
    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(p) for p in self.sent]

    def heard(self, encoding: str) -> np.ndarray:
        return np.concatenate([DECODE[encoding](p.payload) for p in self.packets])


def tone(frequency: float, frames: int, level: float = 0.25) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / RATE
    return (np.sin(2 * np.pi * frequency * t) * level * 32767).astype(np.int16)


def peaks(samples: np.ndarray, count: int) -> set[int]:
    """The `count` strongest frequencies, to 10 Hz."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    frequencies = np.fft.rfftfreq(len(samples), 1 / RATE)
    found: set[int] = set()
    for index in np.argsort(spectrum)[::-1]:
        rounded = int(round(frequencies[index] / 10) * 10)
        if all(abs(rounded - f) > 30 for f in found):
            found.add(rounded)
        if len(found) == count:
            break
    return found


def share_near(samples: np.ndarray, frequency: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(spectrum[np.abs(frequencies - frequency) <= 20].sum() / spectrum.sum())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timers(clock: Clock) -> Timers:
    return Timers(clock)


def talk(legs: dict[FakeLeg, tuple[np.ndarray | None, str]], frame: int) -> None:
    """Each leg with a signal sends its frame `frame` in its codec."""
    for leg, (signal, encoding) in legs.items():
        if signal is not None:
            chunk = signal[frame * FRAME_SAMPLES : (frame + 1) * FRAME_SAMPLES]
            leg.receive(ENCODE[encoding](chunk), 0 if encoding == "PCMU" else 8)


def run(
    mixer: Room, timers: Timers, legs: dict[FakeLeg, tuple[np.ndarray | None, str]], frames: int
) -> None:
    for frame in range(frames):
        talk(legs, frame)
        timers.fire()


def test_each_hears_the_others_and_not_themself_in_their_own_codec(
    clock: Clock, timers: Timers
) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    frequencies = {"a": 440.0, "b": 697.0, "c": 1209.0}
    codecs = {"a": "PCMU", "b": "PCMA", "c": "PCMU"}
    legs = {FakeLeg(n): (tone(f, 100), codecs[n]) for n, f in frequencies.items()}
    for leg, (_, encoding) in legs.items():
        mixer.join(leg, 0 if encoding == "PCMU" else 8, encoding)
    run(mixer, timers, legs, 100)
    for leg, (_, encoding) in legs.items():
        packets = leg.packets
        assert {p.payload_type for p in packets} == {0 if encoding == "PCMU" else 8}
        assert len({p.ssrc for p in packets}) == 1 and packets[0].marker
        steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(packets)}
        assert steps == {FRAME_SAMPLES}
        heard = leg.heard(encoding)[PREFILL * FRAME_SAMPLES :]
        others = {int(f) for n, f in frequencies.items() if n != leg.name}
        assert {round(f, -1) for f in peaks(heard, 2)} == {round(f, -1) for f in others}
        own = frequencies[leg.name]
        assert share_near(heard, own) < 0.001, (leg.name, share_near(heard, own))
    ssrcs = {leg.packets[0].ssrc for leg in legs}
    assert len(ssrcs) == 3


def test_a_silent_or_lost_participant_stalls_nobody(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    talker, mute, lossy = FakeLeg("talker"), FakeLeg("mute"), FakeLeg("lossy")
    signal = tone(440, 50)
    for leg in (talker, mute, lossy):
        mixer.join(leg, 0, "PCMU")
    participants = {p.leg: p for p in mixer.participants}
    for frame in range(50):
        talk({talker: (signal, "PCMU")}, frame)
        if frame % 3:  # a third of its packets lost
            talk({lossy: (tone(697, 50), "PCMU")}, frame)
        timers.fire()
    for leg in (mute, lossy):
        assert len(leg.sent) == 50  # a packet every tick, whatever the others did
    heard = mute.heard("PCMU")[PREFILL * FRAME_SAMPLES :]
    assert share_near(heard, 440) > 0.5
    # The talker's first frame waited for a second one (PREFILL) before it was mixed.
    assert participants[mute].missing == 50 and participants[talker].missing == PREFILL - 1


def test_a_loud_room_is_scaled_not_clipped(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    loud = tone(440, 30, level=0.9)
    a, b, listener = FakeLeg("a"), FakeLeg("b"), FakeLeg("listener")
    for leg in (a, b, listener):
        mixer.join(leg, 0, "PCMU")
    run(mixer, timers, {a: (loud, "PCMU"), b: (loud, "PCMU")}, 30)
    heard = listener.heard("PCMU")[PREFILL * FRAME_SAMPLES :].astype(np.float64)
    # Twice a 0.9 full-scale tone: scaled to full scale, still a sine (a
    # clipped one would be near-square: its peak close to its RMS).
    assert heard.max() > 0.9 * 32767
    crest = heard.max() / np.sqrt((heard**2).mean())
    assert crest > 1.3, crest
    assert share_near(heard, 440) > 0.95


def test_the_gain_falls_within_a_frame_and_comes_back_slowly(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    a, b, listener = FakeLeg("a"), FakeLeg("b"), FakeLeg("listener")
    for leg in (a, b, listener):
        mixer.join(leg, 0, "PCMU")
    [heard_by] = [p for p in mixer.participants if p.leg is listener]
    loud = tone(440, 12, level=0.9)
    gains = []
    for frame in range(30):
        if frame < 12:
            talk({a: (loud, "PCMU"), b: (loud, "PCMU")}, frame)
        timers.fire()
        gains.append(heard_by.gain)
    # Turned down to about half while both shout (0.9 + 0.9 of full scale)...
    assert min(gains) == pytest.approx(1 / 1.8, rel=0.05)
    # ... and back to full by a tenth a frame once they stop, never a jump.
    steps = [b - a for a, b in itertools.pairwise(gains[12:])]
    assert max(steps) <= RELEASE + 1e-9 and gains[-1] == 1.0
    # What the listener got: never past full scale.
    assert np.abs(listener.heard("PCMU").astype(np.int32)).max() <= 32767


def test_a_burst_is_trimmed_to_the_backlog(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    burst, listener = FakeLeg("burst"), FakeLeg("listener")
    mixer.join(burst, 0, "PCMU")
    mixer.join(listener, 0, "PCMU")
    signal = tone(440, 20)
    for frame in range(20):  # 400 ms at once, after a stall
        talk({burst: (signal, "PCMU")}, frame)
    [participant] = [p for p in mixer.participants if p.leg is burst]
    assert participant.dropped == 20 - MAX_BACKLOG


def test_a_late_tick_catches_up_and_skips_what_is_too_old(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    leg = FakeLeg("a")
    mixer.join(leg, 0, "PCMU")
    timers.fire()
    timers.fire(late=3 * FRAME)  # three frames late: four due at once
    assert len(leg.sent) == 1 + 4
    # Due 60, 40, 20 and 0 ms ago: two more than a frame's time late.
    assert mixer.stats.late == 2 and mixer.stats.skipped == 0
    timers.fire(late=(MAX_CATCH_UP + 4) * FRAME)  # a long stall: the oldest skipped
    packets = leg.packets
    assert len(packets) == 5 + MAX_CATCH_UP
    assert mixer.stats.skipped == 5
    jump = (packets[5].timestamp - packets[4].timestamp) % 2**32
    assert jump == (1 + 5) * FRAME_SAMPLES and packets[5].marker


def test_telephone_events_and_malformed_packets_are_not_mixed(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    keypad, listener = FakeLeg("keypad"), FakeLeg("listener")
    for leg in (keypad, listener):
        mixer.join(leg, 0, "PCMU")
    for _ in range(10):
        keypad.receive(bytes([5, 0x0A, 0, 160]), 101)
        for tap in keypad.taps:
            tap(keypad, b"\x80\x00")  # shorter than a header
        timers.fire()
    [participant] = [p for p in mixer.participants if p.leg is keypad]
    assert participant.received == 0 and participant.ignored == 20
    assert set(listener.heard("PCMU")) == {0}


def test_csrcs_extension_and_padding_are_skipped(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    talker, listener = FakeLeg("talker"), FakeLeg("listener")
    mixer.join(talker, 8, "PCMA")
    mixer.join(listener, 0, "PCMU")
    signal = tone(440, 20)
    for frame in range(20):
        chunk = g711.pcma_encode(signal[frame * FRAME_SAMPLES : (frame + 1) * FRAME_SAMPLES])
        # One CSRC, a one-word extension, four octets of padding.
        packet = (
            struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 1, 8, frame, 0, 1)
            + struct.pack("!I", 7)
            + struct.pack("!HHI", 0xBEDE, 1, 0)
            + chunk
            + b"\x00\x00\x00\x04"
        )
        for tap in talker.taps:
            tap(talker, packet)
        timers.fire()
    heard = listener.heard("PCMU")[PREFILL * FRAME_SAMPLES :]
    assert share_near(heard, 440) > 0.95


def test_ten_participants_each_hear_nine(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    frequencies = [300.0 + 170 * i for i in range(10)]
    legs = {FakeLeg(f"p{i}"): (tone(f, 60, level=0.08), "PCMU") for i, f in enumerate(frequencies)}
    for leg in legs:
        mixer.join(leg, 0, "PCMU")
    run(mixer, timers, legs, 60)
    for index, leg in enumerate(legs):
        heard = leg.heard("PCMU")[PREFILL * FRAME_SAMPLES :]
        assert share_near(heard, frequencies[index]) < 0.002
        assert all(share_near(heard, f) > 0.05 for i, f in enumerate(frequencies) if i != index)


def test_leaving_stops_the_stream_and_an_empty_room_its_timer(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers).room()
    a, b = FakeLeg("a"), FakeLeg("b")
    first = mixer.join(a, 0, "PCMU")
    mixer.join(b, 0, "PCMU")
    timers.fire()
    first.leave()
    assert a.taps == [] and not first.present
    timers.fire()
    assert len(a.sent) == 1 and len(b.sent) == 2
    mixer.close()
    assert timers.pending == [] and mixer.participants == []


def test_rooms_share_one_timer_and_each_mixes_its_own(clock: Clock, timers: Timers) -> None:
    mixer = Mixer(clock=clock, call_later=timers)
    first, second = mixer.room(), mixer.room()
    a, b, c, d = (FakeLeg(n) for n in "abcd")
    first.join(a, 0, "PCMU")
    first.join(b, 0, "PCMU")
    timers.fire()
    second.join(c, 0, "PCMU")  # between two ticks: mixed from the next one
    second.join(d, 0, "PCMU")
    signal = tone(440, 10)
    for frame in range(10):
        talk({a: (signal, "PCMU"), c: (tone(697, 10), "PCMU")}, frame)
        assert len(timers.pending) == 1  # one timer for both rooms
        timers.fire()
    assert mixer.rooms == 2 and len(a.sent) == 11 and len(c.sent) == 10
    assert share_near(b.heard("PCMU")[PREFILL * FRAME_SAMPLES :], 440) > 0.9
    assert share_near(d.heard("PCMU")[PREFILL * FRAME_SAMPLES :], 697) > 0.9
    first.close()
    assert mixer.rooms == 1 and len(timers.pending) == 1
    second.close()
    assert mixer.rooms == 0 and timers.pending == []


def test_only_g711_is_mixed() -> None:
    assert {"PCMU", "PCMA"} == MIXABLE
    with pytest.raises(ValueError, match="cannot mix"):
        Mixer().room().join(FakeLeg("x"), 111, "opus")
