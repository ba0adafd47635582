"""StreamFramer: cutting a TCP byte stream into SIP messages and keep-alives."""

from __future__ import annotations

import time

import pytest

from callbridge.sip import Limits, parse
from callbridge.sip.framing import PONG, FramingError, KeepAlive, StreamFramer


def options(call_id: str = "a84b4c76e66710", body: bytes = b"") -> bytes:
    head = (
        "OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:carol@chicago.example.com>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 63104 OPTIONS\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def test_one_message_in_one_feed_is_one_frame() -> None:
    message = options()
    assert StreamFramer().feed(message) == [message]


def test_body_is_cut_at_content_length() -> None:
    first = options("one", body=b"v=0\r\n\r\nnot a blank line of the head")
    second = options("two")
    frames = StreamFramer().feed(first + second)
    assert frames == [first, second]
    assert parse(first, stream=True).body == b"v=0\r\n\r\nnot a blank line of the head"


def test_bytes_arriving_one_at_a_time_make_the_same_frames() -> None:
    stream = options("one", body=b"hello") + b"\r\n\r\n" + options("two")
    framer = StreamFramer()
    frames = [frame for byte in stream for frame in framer.feed(bytes([byte]))]
    assert frames == [options("one", body=b"hello"), KeepAlive.PING, options("two")]
    assert framer.buffered == 0


def test_several_messages_in_one_feed_come_out_in_order() -> None:
    messages = [options(f"call-{i}", body=b"x" * i) for i in range(10)]
    assert StreamFramer().feed(b"".join(messages)) == messages


def test_a_message_split_anywhere_is_reassembled() -> None:
    message = options(body=b"0123456789")
    for cut in range(1, len(message)):
        framer = StreamFramer()
        assert framer.feed(message[:cut]) == []
        assert framer.feed(message[cut:]) == [message]


def test_double_crlf_is_a_ping_to_answer_with_a_single_crlf() -> None:
    assert StreamFramer().feed(b"\r\n\r\n") == [KeepAlive.PING]
    assert PONG == b"\r\n"


def test_single_crlf_pong_is_ignored() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + options()) == [options()]


def test_pings_between_messages_keep_their_place() -> None:
    stream = b"\r\n\r\n" + options("one") + b"\r\n\r\n\r\n\r\n" + options("two")
    assert StreamFramer().feed(stream) == [
        KeepAlive.PING,
        options("one"),
        KeepAlive.PING,
        KeepAlive.PING,
        options("two"),
    ]


def test_half_a_ping_waits_for_the_rest() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KeepAlive.PING]


def test_bare_lf_line_ends_are_framed() -> None:
    message = options().replace(b"\r\n", b"\n")
    assert StreamFramer().feed(message) == [message]


def test_compact_content_length_is_understood() -> None:
    message = options(body=b"abc").replace(b"Content-Length:", b"l:")
    assert StreamFramer().feed(message + options("next")) == [message, options("next")]


def test_head_without_blank_line_beyond_the_limit_is_513() -> None:
    framer = StreamFramer(Limits(max_message_size=1000))
    head = options().split(b"\r\n\r\n")[0] + b"\r\n"
    framer.feed(head)
    with pytest.raises(FramingError) as caught:
        framer.feed(b"X-Filler: " + b"y" * 1000)
    assert caught.value.status == 513
    # Only whole lines are kept, for an answer addressed by the Via.
    assert caught.value.head == head


def test_content_length_beyond_the_limit_is_513_before_the_body_arrives() -> None:
    framer = StreamFramer(Limits(max_message_size=1000))
    message = options().replace(b"Content-Length: 0", b"Content-Length: 5000")
    with pytest.raises(FramingError) as caught:
        framer.feed(message)
    assert (caught.value.status, caught.value.reason) == (513, "Message Too Large")
    assert b"Call-ID: a84b4c76e66710" in caught.value.head


@pytest.mark.parametrize(
    ("content_length", "reason"),
    [
        (None, "Missing Content-Length"),
        (b"Content-Length: ten", "Malformed Content-Length"),
        (b"Content-Length: -1", "Malformed Content-Length"),
        (b"Content-Length: 99999999999", "Malformed Content-Length"),
        (b"Content-Length: 0\r\nl: 3", "Conflicting Content-Length"),
    ],
)
def test_bad_content_length_is_400(content_length: bytes | None, reason: str) -> None:
    message = options()
    replacement = b"" if content_length is None else content_length + b"\r\n"
    message = message.replace(b"Content-Length: 0\r\n", replacement)
    with pytest.raises(FramingError) as caught:
        StreamFramer().feed(message)
    assert (caught.value.status, caught.value.reason) == (400, reason)


def test_frames_before_the_error_are_handed_over_with_it() -> None:
    framer = StreamFramer()
    good = options("good")
    with pytest.raises(FramingError) as caught:
        framer.feed(good + b"\r\n\r\n" + options().replace(b"Content-Length: 0", b"l: x"))
    assert caught.value.frames == [good, KeepAlive.PING]


def test_a_broken_stream_stays_broken() -> None:
    framer = StreamFramer()
    with pytest.raises(FramingError):
        framer.feed(b"GARBAGE\r\n\r\n")
    with pytest.raises(FramingError) as again:
        framer.feed(options())
    assert again.value.frames == []


def test_a_large_message_byte_by_byte_takes_linear_time() -> None:
    # A rescan of the whole buffer per byte would be ~quadratic: 60k bytes
    # fed one at a time would then take many seconds instead of well under one.
    message = options().replace(b"Max-Forwards: 70\r\n", b"X-Big: " + b"z" * 60_000 + b"\r\n")
    framer = StreamFramer()
    started = time.perf_counter()
    frames = [frame for i in range(len(message)) for frame in framer.feed(message[i : i + 1])]
    assert frames == [message]
    assert time.perf_counter() - started < 2.0
