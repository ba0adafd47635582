"""pbx/dtmf.py: the DTMF of one call with fake legs and a fake clock: which
form a digit takes to the other side, the filters on the legs, pacing,
bounds, and nothing left behind on close."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from callbridge.media import g711
from callbridge.media.dtmf import API, DTMF, DTMF_RELAY, INBAND, INFO, RFC4733, Digit
from callbridge.media.engine import Tap
from callbridge.media.rtp import RtpPacket, TelephoneEvent
from callbridge.pbx.dtmf import QUEUE_LIMIT, RATE_LIMIT, CallDtmf, DigitsRefused, side_media
from tests.unit.test_media_dtmf import a_press, dtmf, silence

WITH_EVENTS = side_media({0: "PCMU", 101: "telephone-event"}, {0: 8000, 101: 8000})
WITHOUT_EVENTS = side_media({0: "PCMU", 8: "PCMA"}, {0: 8000, 8: 8000})


class FakeLeg:
    def __init__(self, name: str) -> None:
        self.name = name
        self.taps: list[Tap] = []
        self.outbound: Callable[[bytes], bytes | None] | None = None
        self.sent: list[bytes] = []

    def add_tap(self, tap: Tap) -> None:
        self.taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        self.taps.remove(tap)

    def set_outbound(self, outbound: Callable[[bytes], bytes | None] | None) -> None:
        self.outbound = outbound

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)

    def receive(self, packet: bytes) -> None:
        """A packet from this leg's phone, as the engine hands it to taps."""
        for tap in list(self.taps):
            tap(self, packet)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, caller: object, callee: object, *, inband: bool = False) -> None:
        self.clock = Clock()
        self.digits: list[tuple[str, Digit]] = []
        self.infos: list[tuple[str, str, bytes, float]] = []
        self.dtmf = CallDtmf(
            clock=self.clock,
            on_digit=lambda role, digit: self.digits.append((role, digit)),
            send_info=lambda role, kind, body: self.infos.append(
                (role, kind, body, self.clock.now)
            ),
        )
        self.caller, self.callee = FakeLeg("caller"), FakeLeg("callee")
        self.dtmf.attach("caller", self.caller, inband=inband)  # type: ignore[arg-type]
        self.dtmf.attach("callee", self.callee)  # type: ignore[arg-type]
        for role, media in (("caller", caller), ("callee", callee)):
            if media is not None:
                self.dtmf.negotiated(role, media)  # type: ignore[arg-type]

    def run(self, until: float) -> None:
        """Fire every deadline up to `until`."""
        while (deadline := self.dtmf.next_deadline()) is not None and deadline <= until:
            self.clock.now = max(self.clock.now, deadline)
            self.dtmf.fire()
        self.clock.now = until


def test_events_between_sides_that_both_take_them_pass_through() -> None:
    call = Harness(WITH_EVENTS, WITH_EVENTS)
    for packet in a_press("5", 1000):
        call.caller.receive(packet)
    call.run(200.0)
    assert call.digits == [("caller", Digit("5", 80, RFC4733, 10))]
    assert call.infos == [] and call.callee.sent == []
    assert call.caller.outbound is None and call.callee.outbound is None  # the fast path


def test_events_to_a_side_without_them_go_as_info_and_are_dropped_from_the_relay() -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    assert call.callee.outbound is not None and call.caller.outbound is None
    event = a_press("#", 1000)[0]
    audio = RtpPacket(0, 1, 1, 1, b"\xff" * 160).to_bytes()
    assert call.callee.outbound(event) is None
    assert call.callee.outbound(audio) is audio
    for packet in a_press("#", 1000):
        call.caller.receive(packet)
    assert call.infos == [("callee", DTMF_RELAY, b"Signal=#\r\nDuration=80\r\n", 100.0)]


def test_info_digits_reach_a_side_with_events_as_rfc4733_in_its_stream() -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    audio = RtpPacket(0, 500, 16000, 0xABC, b"\xff" * 160).to_bytes()
    digit = call.dtmf.info("callee", "application/dtmf-relay", b"Signal=7\r\nDuration=100\r\n")
    assert digit == Digit("7", 100, INFO)
    assert call.caller.outbound is not None  # the injector renumbers the relayed stream
    call.run(101.0)
    packets = [RtpPacket.parse(p) for p in call.caller.sent]
    assert len(packets) == 7 and {p.payload_type for p in packets} == {101}
    assert {TelephoneEvent.parse(p.payload).event for p in packets} == {7}
    assert call.digits == [("callee", digit)] and call.infos == []
    # Relayed audio after the event continues its numbering.
    after = call.caller.outbound(audio)
    assert after is not None


def test_info_digits_between_sides_without_events_stay_info_of_their_type() -> None:
    call = Harness(WITHOUT_EVENTS, WITHOUT_EVENTS)
    call.dtmf.info("caller", "application/dtmf", b"4")
    call.dtmf.info("caller", "application/dtmf", b"2")
    call.run(101.0)
    assert [(role, kind, body) for role, kind, body, _ in call.infos] == [
        ("callee", DTMF, b"4"),
        ("callee", DTMF, b"2"),
    ]
    # The second waits for the first digit's length and a pause.
    assert call.infos[1][3] - call.infos[0][3] == pytest.approx(0.16 + 0.08)


def test_api_digits_go_from_the_employees_side_and_are_bounded() -> None:
    call = Harness(WITHOUT_EVENTS, WITH_EVENTS)
    call.dtmf.send("caller", "12#")
    assert [(role, d.digit, d.source) for role, d in call.digits] == [
        ("caller", "1", API),
        ("caller", "2", API),
        ("caller", "#", API),
    ]
    call.run(102.0)
    starts = [RtpPacket.parse(p) for p in call.callee.sent if RtpPacket.parse(p).marker]
    assert [TelephoneEvent.parse(p.payload).event for p in starts] == [1, 2, 11]
    with pytest.raises(DigitsRefused) as refused:
        call.dtmf.send("caller", "1" * (QUEUE_LIMIT + 1))
    assert refused.value.status == 429
    with pytest.raises(ValueError):
        call.dtmf.send("caller", "1E")


def test_a_digit_whose_end_never_comes_is_given_when_it_times_out() -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    for packet in a_press("3", 1000)[:3]:
        call.caller.receive(packet)
    assert call.digits == []
    call.run(101.0)
    assert [d.digit for _, d in call.digits] == ["3"]
    assert [body for _, _, body, _ in call.infos] == [b"Signal=3\r\nDuration=60\r\n"]


def test_tones_are_digits_only_on_a_side_that_listens_for_them() -> None:
    signal = np.concatenate((silence(60), dtmf("9", 120), silence(100)))
    payload = g711.pcmu_encode(np.round(signal).astype(np.int16))
    for inband, expected in ((True, ["9"]), (False, [])):
        call = Harness(WITHOUT_EVENTS, WITHOUT_EVENTS, inband=inband)
        for n, start in enumerate(range(0, len(payload), 160)):
            packet = RtpPacket(0, n, n * 160, 7, payload[start : start + 160]).to_bytes()
            call.caller.receive(packet)
        assert [d.digit for _, d in call.digits] == expected
        assert all(d.source == INBAND for _, d in call.digits)


def test_a_new_sdp_keeps_renumbering_what_was_renumbered() -> None:
    call = Harness(WITH_EVENTS, WITH_EVENTS)
    assert call.callee.outbound is None
    call.dtmf.send("caller", "1")
    call.run(101.0)
    assert call.callee.outbound is not None
    moved = side_media({0: "PCMU", 96: "telephone-event"}, {0: 8000, 96: 8000})
    call.dtmf.negotiated("callee", moved)
    assert call.callee.outbound is not None
    call.dtmf.send("caller", "2")
    call.run(102.0)
    assert RtpPacket.parse(call.callee.sent[-1]).payload_type == 96
    call.dtmf.negotiated("callee", WITHOUT_EVENTS)
    assert call.callee.outbound is not None


def test_a_new_sdp_with_events_lifts_the_drop_filter() -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    assert call.callee.outbound is not None
    call.dtmf.negotiated("callee", WITH_EVENTS)
    assert call.callee.outbound is None


def test_a_side_flooding_digits_is_cut_at_the_rate_limit_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    caplog.set_level("DEBUG", logger="callbridge.calls")
    for n in range(200):  # 200 one-packet events in 0.2 s
        call.clock.now = 100.0 + n * 0.001
        call.caller.receive(a_press("1", 1000 + 160 * n)[-1])
    assert len(call.digits) == RATE_LIMIT
    call.clock.now = 101.5  # a second later a human may type again
    call.caller.receive(a_press("2", 900_000)[-1])
    assert len(call.digits) == RATE_LIMIT + 1
    dropped = [r for r in caplog.records if "call.dtmf_dropped" in r.getMessage()]
    assert len(dropped) == 1
    # The digits are never in the log.
    assert not any("1" in r.getMessage().split("call.dtmf", 1)[-1] for r in caplog.records)


def test_only_legs_with_something_to_read_are_tapped() -> None:
    call = Harness(WITHOUT_EVENTS, WITH_EVENTS, inband=False)
    assert call.caller.taps == [] and len(call.callee.taps) == 1
    call.dtmf.negotiated("callee", WITHOUT_EVENTS)
    assert call.callee.taps == []
    assert len(Harness(WITHOUT_EVENTS, None, inband=True).caller.taps) == 1


def test_close_leaves_nothing_on_the_legs() -> None:
    call = Harness(WITH_EVENTS, WITHOUT_EVENTS)
    call.dtmf.info("callee", "application/dtmf", b"1")
    call.dtmf.close()
    for leg in (call.caller, call.callee):
        assert leg.taps == [] and leg.outbound is None
    assert call.dtmf.on_digit is None and call.dtmf.send_info is None
