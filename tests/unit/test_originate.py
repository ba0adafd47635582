"""The pure parts of click-to-call: reading a number as a phone dials it,
and which codecs of an SDP carry the voice."""

from __future__ import annotations

import pytest

from callbridge.pbx.originate import _voice_formats, dialled_number
from callbridge.sip.sdp import parse_sdp


@pytest.mark.parametrize(
    ("typed", "dialled"),
    [
        ("+7 916 123-45-67", "+79161234567"),
        ("8 (916) 1234567", "89161234567"),
        ("102", "102"),
        ("12-", "12"),
    ],
)
def test_a_number_is_read_as_a_phone_dials_it(typed: str, dialled: str) -> None:
    assert dialled_number(typed) == dialled


@pytest.mark.parametrize("typed", ["", "+", "--", "1+2", "abc", "101;x", "++7"])
def test_what_is_not_a_number_is_a_value_error(typed: str) -> None:
    with pytest.raises(ValueError):
        dialled_number(typed)


def sdp(m_line: str, *attributes: str) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    return ("\r\n".join([*lines, m_line, *attributes]) + "\r\n").encode()


def test_voice_formats_keep_the_order_and_leave_out_dtmf_and_comfort_noise() -> None:
    described = parse_sdp(
        sdp(
            "m=audio 4000 RTP/AVP 8 101 0 13",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
        )
    )
    assert _voice_formats(described) == ["8", "0"]


def test_voice_formats_of_the_first_audio_stream_in_use() -> None:
    described = parse_sdp(
        sdp("m=audio 0 RTP/AVP 0") + b"m=audio 4002 RTP/AVP 8\r\nm=video 4004 RTP/AVP 96\r\n"
    )
    assert _voice_formats(described) == ["8"]
    assert _voice_formats(parse_sdp(sdp("m=video 4004 RTP/AVP 96"))) == []
