"""RTP headers (RFC 3550 §5.1) and telephone events (RFC 4733 §2.3)."""

from __future__ import annotations

import pytest

from callbridge.media import rtp
from callbridge.media.rtp import RtpError, RtpPacket, TelephoneEvent

# PCMU, seq 4660, ts 0x11223344, SSRC 0xdeadbeef, marker, 4 payload octets.
PCMU_PACKET = bytes.fromhex("8080123411223344deadbeef") + b"\xff\xfe\xfd\xfc"
# Two CSRCs, a 1-word extension (profile 0xBEDE), 2 payload octets, 3 padding.
FULL_PACKET = (
    bytes.fromhex("b2e50001000000a000000001")
    + bytes.fromhex("0000000a0000000b")
    + bytes.fromhex("bede000112345678")
    + b"\x01\x02"
    + b"\x00\x00\x03"
)
# RFC 4733 event 5 ("5"), end bit, volume 10, duration 800.
EVENT_PAYLOAD = bytes.fromhex("058a0320")


def test_parse_reads_every_field_of_a_plain_packet() -> None:
    packet = RtpPacket.parse(PCMU_PACKET)
    assert packet == RtpPacket(
        payload_type=0,
        sequence_number=0x1234,
        timestamp=0x11223344,
        ssrc=0xDEADBEEF,
        payload=b"\xff\xfe\xfd\xfc",
        marker=True,
    )


def test_parse_reads_csrc_extension_and_padding() -> None:
    packet = RtpPacket.parse(FULL_PACKET)
    assert packet.csrc == (10, 11)
    assert packet.extension == (0xBEDE, bytes.fromhex("12345678"))
    assert packet.padding == 3
    assert packet.payload == b"\x01\x02"
    assert packet.payload_type == 101 and packet.marker
    assert packet.sequence_number == 1 and packet.timestamp == 160 and packet.ssrc == 1


@pytest.mark.parametrize("data", [PCMU_PACKET, FULL_PACKET])
def test_serialize_round_trips_the_parsed_bytes(data: bytes) -> None:
    assert RtpPacket.parse(data).to_bytes() == data


def test_parse_accepts_a_memoryview_without_copying_the_caller() -> None:
    assert RtpPacket.parse(memoryview(PCMU_PACKET)).payload == b"\xff\xfe\xfd\xfc"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter"),
        (PCMU_PACKET[:11], "shorter"),
        (b"\x40" + PCMU_PACKET[1:], "version 1"),
        (b"\x82" + PCMU_PACKET[1:12] + b"\x00\x00\x00\x01", "CSRC"),
        (b"\x90" + PCMU_PACKET[1:12] + b"\xbe\xde\x00\x05", "extension"),
        (b"\x90" + PCMU_PACKET[1:12] + b"\xbe", "extension"),
        (b"\xa0" + PCMU_PACKET[1:12] + b"\x01\x09", "padding"),
        (b"\xa0" + PCMU_PACKET[1:12] + b"\x01\x00", "padding"),
    ],
)
def test_parse_invalid_and_truncated_packets_raise_rtp_error(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as caught:
        RtpPacket.parse(data)
    assert reason in caught.value.reason


def test_relay_helpers_read_fields_in_place() -> None:
    view = memoryview(FULL_PACKET)
    assert rtp.is_rtp(view)
    assert rtp.payload_type(view) == 101
    assert rtp.sequence_number(view) == 1
    assert rtp.timestamp(view) == 160
    assert rtp.ssrc(view) == 1
    assert rtp.payload_offset(view) == 12 + 8 + 8


@pytest.mark.parametrize(
    "data", [b"", b"\x80" * 11, b"\x40" + PCMU_PACKET[1:], b"\x00" * 12, b"\xc0" * 12]
)
def test_is_rtp_refuses_short_and_foreign_packets(data: bytes) -> None:
    assert not rtp.is_rtp(data)


def test_payload_offset_is_negative_when_the_header_runs_past_the_packet() -> None:
    assert rtp.payload_offset(b"\x8f" + PCMU_PACKET[1:12]) == -1
    assert rtp.payload_offset(b"\x90" + PCMU_PACKET[1:12] + b"\xbe\xde\x00\x09") == -1
    assert rtp.payload_offset(b"\x80") == -1


def test_is_rtcp_accepts_a_receiver_report_and_refuses_rtp() -> None:
    receiver_report = bytes.fromhex("80c9000100000001")
    assert rtp.is_rtcp(receiver_report)
    assert not rtp.is_rtcp(PCMU_PACKET)
    assert not rtp.is_rtcp(receiver_report[:7])


def test_telephone_event_parse_reads_event_end_volume_duration() -> None:
    event = TelephoneEvent.parse(EVENT_PAYLOAD)
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.digit == "5"
    assert event.to_bytes() == EVENT_PAYLOAD


@pytest.mark.parametrize(("code", "digit"), [(10, "*"), (11, "#"), (15, "D"), (16, None)])
def test_telephone_event_digits(code: int, digit: str | None) -> None:
    assert TelephoneEvent(code, end=False, volume=0, duration=0).digit == digit


def test_telephone_event_ignores_the_reserved_bit() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("01400010")) == TelephoneEvent(1, False, 0, 16)


def test_telephone_event_truncated_raises() -> None:
    with pytest.raises(RtpError):
        TelephoneEvent.parse(EVENT_PAYLOAD[:3])


def test_telephone_event_inside_an_rtp_packet() -> None:
    packet = RtpPacket(101, 7, 8000, 42, payload=EVENT_PAYLOAD, marker=True)
    parsed = RtpPacket.parse(packet.to_bytes())
    assert TelephoneEvent.parse(parsed.payload).event == 5


def test_serialize_refuses_what_the_header_cannot_carry() -> None:
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))).to_bytes()
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, extension=(1, b"abc")).to_bytes()
