"""media/dtmf.py: RFC 4733 receiver and injector, the in-band detector, and
the INFO bodies. No sockets, no clock: time is passed in."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.media import g711
from callbridge.media.dtmf import (
    API,
    COLUMNS,
    DEFAULT_DURATION_MS,
    DIGITS,
    DTMF,
    DTMF_RELAY,
    INBAND,
    INFO,
    MAX_DURATION_MS,
    RFC4733,
    ROWS,
    Digit,
    DtmfBodyError,
    EventInjector,
    EventReceiver,
    InbandDetector,
    build_info,
    event_code,
    event_schedule,
    parse_info,
)
from callbridge.media.rtp import RtpPacket, TelephoneEvent

PT = 101
SSRC = 0x1234ABCD


def event_packet(
    digit: str,
    *,
    timestamp: int,
    duration: int,
    end: bool = False,
    seq: int = 1,
    marker: bool = False,
    ssrc: int = SSRC,
    volume: int = 10,
) -> bytes:
    payload = TelephoneEvent(event_code(digit), end, volume, duration).to_bytes()
    return RtpPacket(PT, seq, timestamp, ssrc, payload, marker=marker).to_bytes()


def audio_packet(seq: int, timestamp: int, ssrc: int = SSRC) -> bytes:
    return RtpPacket(0, seq, timestamp, ssrc, b"\xff" * 160).to_bytes()


def a_press(digit: str, timestamp: int, seq: int = 1, updates: int = 4) -> list[bytes]:
    """What a phone sends for one key: start, updates, three ends."""
    packets = [event_packet(digit, timestamp=timestamp, duration=160, marker=True, seq=seq)]
    for n in range(2, updates + 1):
        packets.append(event_packet(digit, timestamp=timestamp, duration=160 * n, seq=seq + n - 1))
    for n in range(3):
        packets.append(
            event_packet(
                digit, timestamp=timestamp, duration=160 * updates, end=True, seq=seq + updates + n
            )
        )
    return packets


# --- receiver -------------------------------------------------------------------


def receive_all(receiver: EventReceiver, packets: list[bytes], now: float = 0.0) -> list[Digit]:
    digits = []
    for n, packet in enumerate(packets):
        digits += receiver.receive(packet, now + n * 0.02)
    return digits


def test_receiver_gives_one_digit_per_event_despite_updates_and_three_ends() -> None:
    receiver = EventReceiver(PT)
    digits = receive_all(receiver, a_press("5", 1000))
    assert digits == [Digit("5", 80, RFC4733, 10)]


def test_receiver_reads_duration_and_volume() -> None:
    receiver = EventReceiver(PT)
    packet = event_packet("#", timestamp=7, duration=1600, end=True, volume=23)
    assert receiver.receive(packet, 0.0) == [Digit("#", 200, RFC4733, 23)]


def test_receiver_duration_follows_the_clock_rate() -> None:
    receiver = EventReceiver(PT, clock_rate=48000)
    packet = event_packet("1", timestamp=7, duration=4800, end=True)
    assert receiver.receive(packet, 0.0)[0].duration == 100


def test_receiver_counts_an_event_whose_start_was_lost() -> None:
    receiver = EventReceiver(PT)
    digits = receive_all(receiver, a_press("7", 5000)[2:])
    assert [d.digit for d in digits] == ["7"]


def test_receiver_ignores_end_retransmits_arriving_late() -> None:
    receiver = EventReceiver(PT)
    press = a_press("3", 100)
    digits = receive_all(receiver, press)
    # The same end packets again, even after another event began.
    digits += receive_all(receiver, a_press("4", 2000)[:2])
    digits += receive_all(receiver, press[-3:])
    digits += receiver.poll(100.0)
    assert [d.digit for d in digits] == ["3", "4"]


def test_receiver_counts_the_same_digit_pressed_twice() -> None:
    receiver = EventReceiver(PT)
    digits = receive_all(receiver, a_press("1", 100) + a_press("1", 1700, seq=20))
    assert [d.digit for d in digits] == ["1", "1"]


def test_receiver_ends_an_event_whose_end_packets_were_all_lost() -> None:
    receiver = EventReceiver(PT, end_timeout=0.3)
    packets = a_press("9", 100)[:4]
    assert receive_all(receiver, packets, now=10.0) == []
    deadline = receiver.next_deadline()
    assert deadline == pytest.approx(10.06 + 0.3)
    assert receiver.poll(deadline - 0.01) == []
    assert receiver.poll(deadline) == [Digit("9", 80, RFC4733, 10)]
    assert receiver.next_deadline() is None


def test_receiver_closes_an_event_without_end_when_the_next_begins() -> None:
    receiver = EventReceiver(PT)
    digits = receive_all(receiver, a_press("2", 100)[:3] + a_press("8", 900, seq=10))
    assert [d.digit for d in digits] == ["2", "8"]


def test_receiver_passes_over_audio_other_events_and_garbage() -> None:
    receiver = EventReceiver(PT)
    flash = RtpPacket(PT, 1, 1, SSRC, TelephoneEvent(16, True, 10, 800).to_bytes()).to_bytes()
    short = RtpPacket(PT, 2, 1, SSRC, b"\x01").to_bytes()
    for packet in (audio_packet(1, 1), flash, short, b"\x80", b""):
        assert receiver.receive(packet, 0.0) == []
    assert receiver.malformed == 1


def test_receiver_ignores_a_reordered_packet_of_an_older_event() -> None:
    receiver = EventReceiver(PT)
    first = a_press("5", 1000)
    digits = receive_all(receiver, first[:2])
    digits += receive_all(receiver, a_press("6", 3000, seq=10)[:2])
    digits += receiver.receive(first[2], 1.0)  # late update of "5", never ended
    digits += receiver.poll(100.0)
    assert [d.digit for d in digits] == ["5", "6"]


def test_receiver_memory_is_bounded() -> None:
    receiver = EventReceiver(PT, remembered=4)
    for n in range(100):
        receiver.receive(event_packet("1", timestamp=n * 1000, duration=800, end=True), 0.0)
    assert len(receiver._finished) == 4


# --- injector -------------------------------------------------------------------


def test_schedule_has_marker_updates_and_three_ends() -> None:
    packets = event_schedule(100)
    assert packets[0].marker and not packets[0].end
    assert [p.marker for p in packets[1:]] == [False] * (len(packets) - 1)
    assert [p.duration for p in packets if not p.end] == [160, 320, 480, 640]
    ends = [p for p in packets if p.end]
    assert len(ends) == 3 and {p.duration for p in ends} == {800}
    assert [p.at for p in packets] == pytest.approx([0.02 * n for n in range(7)])


def drain(injector: EventInjector, start: float, until: float) -> list[tuple[float, bytes]]:
    sent = []
    now = start
    while now <= until:
        sent += [(now, packet) for packet in injector.due(now)]
        deadline = injector.next_deadline()
        if deadline is None:
            break
        now = max(deadline, now)
    return sent


def test_injector_continues_the_relayed_stream() -> None:
    injector = EventInjector(PT)
    for n in range(5):  # 20 ms audio: seq 100-104, timestamps 8000 + 160n
        assert injector.relayed(audio_packet(100 + n, 8000 + 160 * n), n * 0.02) is not None
    assert injector.send(Digit("5", 100, API), 0.1)
    sent = drain(injector, 0.1, 1.0)
    packets = [RtpPacket.parse(p) for _, p in sent]
    assert len(packets) == 7
    assert {p.ssrc for p in packets} == {SSRC}
    assert [p.sequence_number for p in packets] == list(range(105, 112))
    # The stream's clock 20 ms after its last packet.
    assert {p.timestamp for p in packets} == {8000 + 160 * 4 + 160}
    assert [p.marker for p in packets] == [True] + [False] * 6
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert {e.event for e in events} == {5}
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert events[-1].duration == 800
    assert {p.payload_type for p in packets} == {PT}


def test_relayed_audio_after_an_event_is_renumbered_after_it() -> None:
    injector = EventInjector(PT)
    injector.relayed(audio_packet(100, 8000), 0.0)
    injector.send(Digit("1", 100, API), 0.01)
    out = injector.due(0.01)
    # Audio arriving while the event plays is dropped: the event takes its place.
    assert injector.relayed(audio_packet(101, 8160), 0.02) is None
    out += [p for _, p in drain(injector, 0.02, 1.0)]
    after = injector.relayed(audio_packet(102, 8320), 1.0)
    assert after is not None
    numbers = [RtpPacket.parse(p).sequence_number for p in out] + [
        RtpPacket.parse(after).sequence_number
    ]
    assert numbers == list(range(101, 101 + len(numbers)))
    # The payload is untouched.
    assert RtpPacket.parse(after).payload == b"\xff" * 160


def test_injector_leaves_packets_untouched_until_it_plays_an_event() -> None:
    injector = EventInjector(PT)
    packet = audio_packet(7, 7)
    assert injector.relayed(packet, 0.0) is packet


def test_a_new_relayed_source_keeps_its_own_numbering() -> None:
    injector = EventInjector(PT)
    injector.relayed(audio_packet(100, 8000), 0.0)
    injector.send(Digit("1", 40, API), 0.0)
    drain(injector, 0.0, 1.0)
    other = audio_packet(5000, 1, ssrc=99)
    assert injector.relayed(other, 1.0) == other


def test_injector_without_a_relayed_stream_uses_its_own() -> None:
    injector = EventInjector(PT, rng=random.Random(1))
    injector.send(Digit("#", 60, API), 0.0)
    packets = [RtpPacket.parse(p) for _, p in drain(injector, 0.0, 1.0)]
    assert len({p.ssrc for p in packets}) == 1
    first = packets[0].sequence_number
    assert [p.sequence_number for p in packets] == [(first + n) & 0xFFFF for n in range(5)]


def test_queued_digits_are_spaced_and_the_queue_is_bounded() -> None:
    injector = EventInjector(PT, limit=3, gap=0.08)
    assert all(injector.send(Digit(d, 100, API), 0.0) for d in "123")
    assert not injector.send(Digit("4", 100, API), 0.0)
    sent = drain(injector, 0.0, 5.0)
    starts = [at for at, p in sent if RtpPacket.parse(p).marker]
    assert len(starts) == 3
    # 7 packets 20 ms apart (the last at 120 ms), then an 80 ms gap.
    assert np.diff(starts) == pytest.approx([0.2, 0.2])
    timestamps = [RtpPacket.parse(p).timestamp for at, p in sent if RtpPacket.parse(p).marker]
    assert np.diff(timestamps).tolist() == [1600, 1600]
    assert injector.pending == 0 and injector.next_deadline() is None


def test_sequence_numbers_wrap() -> None:
    injector = EventInjector(PT)
    injector.relayed(audio_packet(0xFFFE, 1), 0.0)
    injector.send(Digit("0", 40, API), 0.0)
    packets = [RtpPacket.parse(p) for _, p in drain(injector, 0.0, 1.0)]
    assert [p.sequence_number for p in packets][:3] == [0xFFFF, 0, 1]


# --- in band ----------------------------------------------------------------------

RATE = 8000


def tone(frequencies: list[float], ms: float, amplitude: float = 6000.0) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    signal = sum(amplitude * np.sin(2 * np.pi * f * t) for f in frequencies)
    return np.asarray(signal)


def silence(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000))


def dtmf(digit: str, ms: float = 100.0, amplitude: float = 6000.0) -> np.ndarray:
    code = DIGITS.index(digit)
    row, column = next(
        (r, c)
        for r, line in enumerate(("123A", "456B", "789C", "*0#D"))
        for c, ch in enumerate(line)
        if ch == DIGITS[code]
    )
    return tone([ROWS[row], COLUMNS[column]], ms, amplitude)


def through(codec: str, signal: np.ndarray) -> np.ndarray:
    """The signal as a G.711 phone sends it and callbridge decodes it."""
    samples = np.clip(np.round(signal), -32768, 32767).astype(np.int16)
    if codec == "PCMU":
        return g711.pcmu_decode(g711.pcmu_encode(samples))
    return g711.pcma_decode(g711.pcma_encode(samples))


def detect(signal: np.ndarray, codec: str = "PCMU") -> list[Digit]:
    detector = InbandDetector()
    decoded = through(codec, np.concatenate((signal, silence(100))))
    digits = []
    for start in range(0, len(decoded), 160):  # one 20 ms packet at a time
        digits += detector.feed(decoded[start : start + 160])
    return digits


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("digit", list(DIGITS))
def test_each_digit_is_detected_in_g711(digit: str, codec: str) -> None:
    digits = detect(np.concatenate((silence(40), dtmf(digit, 100))), codec)
    assert [d.digit for d in digits] == [digit]
    assert digits[0].source == INBAND
    assert 80 <= digits[0].duration <= 120


def test_a_sequence_with_repeats_and_quiet_tones_is_detected() -> None:
    signal = np.concatenate(
        [np.concatenate((dtmf(d, 60, amplitude=1500), silence(50))) for d in "1123#"]
    )
    noise = np.random.default_rng(1).normal(0, 100, len(signal))
    assert [d.digit for d in detect(signal + noise)] == list("1123#")


def test_forty_ms_is_enough_and_twenty_is_not() -> None:
    assert [d.digit for d in detect(dtmf("5", 40))] == ["5"]
    assert detect(dtmf("5", 20)) == []
    assert detect(dtmf("5", 23)) == []


def test_noise_is_not_a_digit() -> None:
    noise = np.random.default_rng(2).normal(0, 3000, RATE)
    assert detect(noise) == []


def test_speech_like_tones_are_not_digits() -> None:
    # A vowel-like sound: 150 Hz and its harmonics, some near DTMF frequencies.
    voice = tone([150.0 * k for k in range(1, 20)], 1000, amplitude=1500)
    assert detect(voice) == []
    # One DTMF frequency alone, and two that are no DTMF pair.
    assert detect(tone([770.0], 300)) == []
    assert detect(tone([1000.0, 1500.0], 300)) == []
    # A DTMF pair buried under speech.
    assert detect(dtmf("1", 200, amplitude=800) + voice[:1600] * 2) == []


def test_twist_beyond_the_limits_is_not_a_digit() -> None:
    row, column = ROWS[1], COLUMNS[1]  # "5"
    loud_row = tone([row], 200, 8000) + tone([column], 200, 8000 / 10 ** (10 / 20))
    loud_column = tone([row], 200, 8000 / 10 ** (6 / 20)) + tone([column], 200, 8000)
    assert detect(loud_row) == []
    assert detect(loud_column) == []
    within = tone([row], 200, 8000) + tone([column], 200, 8000 / 10 ** (4 / 20))
    assert [d.digit for d in detect(within)] == ["5"]


def test_too_quiet_is_not_a_digit() -> None:
    assert detect(dtmf("5", 200, amplitude=100)) == []


def test_detector_keeps_less_than_a_window() -> None:
    detector = InbandDetector()
    detector.feed(np.zeros(10_000, dtype=np.int16))
    assert len(detector._buffer) < InbandDetector.WINDOW


# --- INFO bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit", "duration"),
    [
        (b"Signal=5\r\nDuration=160\r\n", "5", 160),
        (b"Signal=5\r\nDuration=160", "5", 160),
        (b"signal = #\nduration= 250\n", "#", 250),
        (b"Signal=*\r\n", "*", DEFAULT_DURATION_MS),
        (b"Signal=11\r\nDuration=100\r\n", "#", 100),
        (b"Signal=d\r\nDuration=100\r\n", "D", 100),
        (b"Signal=1\r\nDuration=99999\r\n", "1", MAX_DURATION_MS),
        (b"Signal=1\r\nDuration=0\r\n", "1", DEFAULT_DURATION_MS),
    ],
)
def test_dtmf_relay_bodies_parse(body: bytes, digit: str, duration: int) -> None:
    assert parse_info("application/dtmf-relay", body) == Digit(digit, duration, INFO)


@pytest.mark.parametrize(("body", "digit"), [(b"5", "5"), (b"#\r\n", "#"), (b"10", "*")])
def test_dtmf_bodies_parse(body: bytes, digit: str) -> None:
    assert parse_info("Application/DTMF; charset=x", body).digit == digit


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (DTMF_RELAY, b""),
        (DTMF_RELAY, b"Duration=100\r\n"),
        (DTMF_RELAY, b"Signal=E\r\n"),
        (DTMF_RELAY, b"Signal=16\r\n"),
        (DTMF_RELAY, b"Signal=55\r\n"),
        (DTMF_RELAY, b"Signal=1\r\nDuration=-5\r\n"),
        (DTMF_RELAY, b"Signal=1\r\nDuration=1e9\r\n"),
        (DTMF_RELAY, b"Signal=1\r\nDuration=12345678901234567890\r\n"),
        (DTMF_RELAY, b"Signal=1\r\ngarbage\r\n"),
        (DTMF_RELAY, b"Signal=\xff\r\n"),
        (DTMF_RELAY, b"Signal=1\r\n" + b"x=y\r\n" * 20),
        (DTMF_RELAY, b"Signal=1\r\nPad=" + b"x" * 300),
        (DTMF, b""),
        (DTMF, b"55"),
        (DTMF, b"5\r\n6"),
        ("application/sdp", b"Signal=1"),
    ],
)
def test_malformed_info_bodies_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(DtmfBodyError):
        parse_info(content_type, body)


def test_info_bodies_are_built() -> None:
    assert build_info(Digit("5", 160, API)) == b"Signal=5\r\nDuration=160\r\n"
    assert build_info(Digit("#", 100, API), DTMF) == b"#"
    assert (
        build_info(Digit("1", 10**6, API)) == f"Signal=1\r\nDuration={MAX_DURATION_MS}\r\n".encode()
    )
    for built in (build_info(Digit(d, 120, API)) for d in DIGITS):
        assert parse_info(DTMF_RELAY, built).digit in DIGITS
    with pytest.raises(ValueError):
        build_info(Digit("\r\nX", 100, API))


def test_event_codes() -> None:
    assert [event_code(d) for d in DIGITS] == list(range(16))
    with pytest.raises(ValueError):
        event_code("E")


# --- what a peer may send: anything ---------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([DTMF_RELAY, DTMF, "application/dtmf-relay; x=y"]), st.binary(max_size=400))
def test_any_info_body_is_a_digit_or_a_body_error(content_type: str, body: bytes) -> None:
    try:
        digit = parse_info(content_type, body)
    except DtmfBodyError:
        return
    assert digit.digit in DIGITS and 0 < digit.duration <= MAX_DURATION_MS
    assert parse_info(DTMF_RELAY, build_info(digit)).digit == digit.digit


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_any_packets_make_digits_or_nothing(packets: list[bytes]) -> None:
    receiver = EventReceiver(PT)
    injector = EventInjector(PT)
    for n, packet in enumerate(packets):
        for digit in receiver.receive(bytes([0x80, PT]) + packet, n * 0.02):
            assert digit.digit in DIGITS
        injector.relayed(packet, n * 0.02)
    assert receiver.poll(100.0) == [] or receiver.next_deadline() is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-32768, 32767), max_size=2000))
def test_any_audio_makes_digits_or_nothing(samples: list[int]) -> None:
    for digit in InbandDetector().feed(np.array(samples, dtype=np.int16)):
        assert digit.digit in DIGITS
