"""SDP parsing and serialization (RFC 4566) against bodies real phones send."""

from __future__ import annotations

import contextlib
import string
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.sip.errors import ParseError
from callbridge.sip.sdp import (
    MAX_SDP_BYTES,
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    parse_sdp,
    serialize,
)


def crlf(body: str) -> str:
    """A dedented, indented-in-source SDP body with CRLF line endings."""
    return "".join(f"{line}\r\n" for line in textwrap.dedent(body).strip().splitlines())


BARESIP_OFFER = crlf("""
    v=0
    o=- 1938294892 3029102930 IN IP4 192.168.1.20
    s=-
    c=IN IP4 192.168.1.20
    t=0 0
    m=audio 10000 RTP/AVP 96 0 8 101
    b=AS:64
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp:10001
    a=ptime:20
    a=sendrecv
    a=label:1
""")

LINPHONE_OFFER = crlf("""
    v=0
    o=alice 2263 1234 IN IP4 10.0.0.5
    s=Talk
    c=IN IP4 10.0.0.5
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 97 0 8 18 100 101
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=fmtp:97 vbr=on
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=yes
    a=rtpmap:100 telephone-event/48000
    a=rtpmap:101 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
    m=video 9078 RTP/AVP 103
    a=rtpmap:103 VP8/90000
    a=rtcp-fb:103 nack pli
""")

ASTERISK_OFFER = crlf("""
    v=0
    o=- 1685437642 1685437643 IN IP4 203.0.113.10
    s=Asterisk
    c=IN IP4 203.0.113.10
    t=0 0
    m=audio 18012 RTP/AVP 8 0 9 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:9 G722/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

IPV6_OFFER = crlf("""
    v=0
    o=bob 3344 3344 IN IP6 2001:db8::5
    s=-
    c=IN IP6 2001:db8::5
    t=0 0
    m=audio 40000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv
""")

# RFC 4566 §5's own example, with the optional lines it names.
RFC4566_EXAMPLE = crlf("""
    v=0
    o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
    s=SDP Seminar
    i=A Seminar on the session description protocol
    u=http://www.example.com/seminars/sdp.pdf
    e=j.doe@example.com (Jane Doe)
    p=+1 617 555-6011
    c=IN IP4 224.2.17.12/127
    b=CT:128
    t=2873397496 2873404696
    r=7d 1h 0 25h
    t=0 0
    z=2882844526 -1h 2898848070 0
    k=prompt
    a=recvonly
    m=audio 49170 RTP/AVP 0
    i=main audio
    c=IN IP4 224.2.17.12/127/2
    b=AS:64
    k=clear:secret
    m=video 51372/2 RTP/AVP 99
    a=rtpmap:99 h263-1998/90000
""")

PHONE_BODIES = {
    "baresip": BARESIP_OFFER,
    "linphone": LINPHONE_OFFER,
    "asterisk": ASTERISK_OFFER,
    "ipv6": IPV6_OFFER,
    "rfc4566": RFC4566_EXAMPLE,
}


@pytest.mark.parametrize("body", PHONE_BODIES.values(), ids=PHONE_BODIES.keys())
def test_phone_bodies_round_trip_byte_for_byte(body: str) -> None:
    parsed = parse_sdp(body.encode())
    assert serialize(parsed).decode() == body
    assert parse_sdp(serialize(parsed)) == parsed


def test_baresip_offer_exposes_codecs_in_offer_order() -> None:
    audio = parse_sdp(BARESIP_OFFER).media[0]
    assert audio.rtpmaps == {
        "96": RtpMap("opus", 48000, 2),
        "0": RtpMap("PCMU", 8000),
        "8": RtpMap("PCMA", 8000),
        "101": RtpMap("telephone-event", 8000),
    }
    assert list(audio.rtpmaps) == ["96", "0", "8", "101"]
    assert audio.fmtp("101") == "0-15"
    assert audio.fmtp("0") is None
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    assert audio.attribute("rtcp") == "10001"
    assert audio.bandwidths == (Bandwidth("AS", 64),)


def test_session_fields_of_rfc4566_example() -> None:
    sdp = parse_sdp(RFC4566_EXAMPLE)
    assert sdp.origin == Origin("jdoe", "2890844526", 2890842807, "IN", "IP4", "10.47.16.5")
    assert sdp.session_name == "SDP Seminar"
    assert sdp.phones == ("+1 617 555-6011",)
    assert sdp.timings == (
        Timing(2873397496, 2873404696, ("7d 1h 0 25h",)),
        Timing(0, 0),
    )
    assert sdp.time_zones == "2882844526 -1h 2898848070 0"
    assert sdp.media[0].info == "main audio"
    assert sdp.media[0].encryption_key == "clear:secret"
    assert sdp.media[1].port_count == 2


@pytest.mark.parametrize(
    ("payload_type", "rtpmap"),
    [
        ("0", RtpMap("PCMU", 8000)),
        ("3", RtpMap("GSM", 8000)),
        ("8", RtpMap("PCMA", 8000)),
        ("9", RtpMap("G722", 8000)),
        ("18", RtpMap("G729", 8000)),
    ],
)
def test_static_payload_types_are_known_without_rtpmap(payload_type: str, rtpmap: RtpMap) -> None:
    sdp = parse_sdp(minimal(f"m=audio 4000 RTP/AVP {payload_type}"))
    assert sdp.media[0].rtpmap(payload_type) == rtpmap


def test_unknown_dynamic_payload_type_has_no_rtpmap() -> None:
    assert parse_sdp(minimal("m=audio 4000 RTP/AVP 97")).media[0].rtpmaps == {}


@pytest.mark.parametrize(
    "rtpmap", ["97", "97 opus", "97 opus/fast", "97 opus/48000/two", "97 /8000"]
)
def test_malformed_rtpmap_is_ignored_not_fatal(rtpmap: str) -> None:
    sdp = parse_sdp(minimal(f"m=audio 4000 RTP/AVP 97\na=rtpmap:{rtpmap}"))
    assert sdp.media[0].rtpmap("97") is None


def test_explicit_rtpmap_wins_over_static_table() -> None:
    sdp = parse_sdp(minimal("m=audio 4000 RTP/AVP 0\na=rtpmap:0 pcmu/8000"))
    assert sdp.media[0].rtpmap("0") == RtpMap("pcmu", 8000)


@pytest.mark.parametrize(
    ("line", "connection"),
    [
        ("c=IN IP4 192.0.2.1", Connection("IN", "IP4", "192.0.2.1")),
        ("c=IN IP4 224.2.1.1/127", Connection("IN", "IP4", "224.2.1.1", ttl=127)),
        ("c=IN IP4 224.2.1.1/127/3", Connection("IN", "IP4", "224.2.1.1", ttl=127, count=3)),
        ("c=IN IP6 2001:db8::1", Connection("IN", "IP6", "2001:db8::1")),
        ("c=IN IP6 FF15::101/3", Connection("IN", "IP6", "FF15::101", count=3)),
        ("c=IN IP4 media.example.com", Connection("IN", "IP4", "media.example.com")),
    ],
)
def test_connection_lines(line: str, connection: Connection) -> None:
    sdp = parse_sdp(minimal(line))
    assert sdp.connection == connection
    assert parse_sdp(serialize(sdp)) == sdp


def test_lf_only_line_endings_and_trailing_whitespace_are_tolerated() -> None:
    sloppy = "\n".join(line + " \t" for line in ASTERISK_OFFER.split("\r\n")) + "\n\n"
    assert parse_sdp(sloppy) == parse_sdp(ASTERISK_OFFER)


def test_str_and_bytes_parse_alike() -> None:
    assert parse_sdp(IPV6_OFFER) == parse_sdp(IPV6_OFFER.encode())


def test_to_bytes_is_serialize() -> None:
    sdp = parse_sdp(LINPHONE_OFFER)
    assert sdp.to_bytes() == serialize(sdp)


def test_missing_t_line_means_unbounded_session() -> None:
    sdp = parse_sdp("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n")
    assert sdp.timings == (Timing(0, 0),)
    assert b"t=0 0\r\n" in serialize(sdp)


def test_out_of_order_session_lines_are_parsed_then_written_in_rfc_order() -> None:
    body = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\na=tool:x\nc=IN IP4 192.0.2.1\n"
    assert serialize(parse_sdp(body)).decode() == crlf("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        a=tool:x
    """)


def test_attribute_with_empty_value_is_not_a_flag() -> None:
    sdp = parse_sdp(minimal("a=flag\na=empty:\na=ice-options:trickle renomination"))
    assert sdp.attributes == (
        Attribute("flag"),
        Attribute("empty", ""),
        Attribute("ice-options", "trickle renomination"),
    )


@pytest.mark.parametrize(
    ("session_attr", "media_attr", "expected"),
    [
        ("", "", Direction.SENDRECV),
        ("", "a=sendonly", Direction.SENDONLY),
        ("a=recvonly", "", Direction.RECVONLY),
        ("a=inactive", "a=sendrecv", Direction.SENDRECV),
        ("a=sendonly", "a=inactive", Direction.INACTIVE),
    ],
)
def test_media_direction_defaults_to_sendrecv_and_inherits_session_level(
    session_attr: str, media_attr: str, expected: Direction
) -> None:
    body = minimal("\n".join(filter(None, [session_attr, "m=audio 4000 RTP/AVP 0", media_attr])))
    sdp = parse_sdp(body)
    assert sdp.effective_direction(sdp.media[0]) is expected


def test_with_direction_replaces_in_place_and_leaves_original_alone() -> None:
    audio = parse_sdp(ASTERISK_OFFER).media[0]
    held = audio.with_direction(Direction.SENDONLY)
    assert held.direction is Direction.SENDONLY
    assert [a.name for a in held.attributes][-2:] == ["maxptime", "sendonly"]
    assert audio.direction is Direction.SENDRECV


def test_with_direction_appends_when_absent() -> None:
    audio = parse_sdp(minimal("m=audio 4000 RTP/AVP 0\na=ptime:20")).media[0]
    assert audio.with_direction(Direction.INACTIVE).attributes == (
        Attribute("ptime", "20"),
        Attribute("inactive"),
    )


def minimal(extra: str) -> str:
    """The shortest valid head, then `extra` (LF-separated lines)."""
    return f"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n{extra}\r\n"


HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n"

MALFORMED = {
    "empty": ("", "empty"),
    "blank lines only": ("\r\n\r\n", "empty"),
    "missing v=": ("o=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n", "start with a v="),
    "v= not first": ("s=-\nv=0\no=- 1 1 IN IP4 192.0.2.1\n", "start with a v="),
    "version 1": ("v=1\no=- 1 1 IN IP4 192.0.2.1\ns=-\n", "unsupported SDP version"),
    "missing o=": ("v=0\ns=-\nt=0 0\n", "missing o="),
    "missing s=": ("v=0\no=- 1 1 IN IP4 192.0.2.1\nt=0 0\n", "missing s="),
    "short o=": ("v=0\no=- 1 IN IP4 192.0.2.1\ns=-\n", "<sess-version>"),
    "o= version not a number": ("v=0\no=- 1 x IN IP4 192.0.2.1\ns=-\n", "sess-version"),
    "duplicate s=": (HEAD + "s=again\n", "duplicate"),
    "no equals sign": (HEAD + "garbage\n", "expected <type>=<value>"),
    "two-letter type": (HEAD + "ab=1\n", "expected <type>=<value>"),
    "unknown line type": (HEAD + "x=1\n", "unknown line type"),
    "m= without formats": (HEAD + "m=audio 4000 RTP/AVP\n", "<media> <port>"),
    "m= port not a number": (HEAD + "m=audio abc RTP/AVP 0\n", "port is not a valid number"),
    "m= negative port": (HEAD + "m=audio -1 RTP/AVP 0\n", "port is not a valid number"),
    "m= port too big": (HEAD + "m=audio 70000 RTP/AVP 0\n", "port is not a valid number"),
    "m= port count bad": (HEAD + "m=audio 4000/x RTP/AVP 0\n", "port count"),
    "m= unicode digits": (
        HEAD + "m=audio \uff14\uff10\uff10\uff10 RTP/AVP 0\n",
        "port is not a valid number",
    ),
    "c= missing address": (HEAD + "c=IN IP4\n", "<connection-address>"),
    "c= bad IPv4": (HEAD + "c=IN IP4 999.1.1.1\n", "invalid IP4 address"),
    "c= IPv6 under IP4": (HEAD + "c=IN IP4 ::1\n", "invalid IP4 address"),
    "c= bad IPv6": (HEAD + "c=IN IP6 2001:db8::zz\n", "invalid IP6 address"),
    "c= IPv6 with TTL": (HEAD + "c=IN IP6 FF15::101/127/3\n", "at most one /count"),
    "c= TTL not a number": (HEAD + "c=IN IP4 224.2.1.1/ttl\n", "TTL"),
    "c= too many suffixes": (HEAD + "c=IN IP4 224.2.1.1/1/2/3\n", "at most /ttl/count"),
    "duplicate media c=": (
        HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.2\n",
        "duplicate",
    ),
    "b= without colon": (HEAD + "b=AS64\n", "<bwtype>:<bandwidth>"),
    "b= not a number": (HEAD + "b=AS:lots\n", "bandwidth"),
    "t= not a number": (HEAD + "t=now 0\n", "start time"),
    "t= one field": (HEAD + "t=0\n", "<start-time> <stop-time>"),
    "r= before t=": (HEAD + "r=7d 1h 0 25h\n", "must follow a t="),
    "t= in media section": (HEAD + "m=audio 4000 RTP/AVP 0\nt=0 0\n", "not allowed in a media"),
    "attribute without name": (HEAD + "a=:value\n", "without a name"),
    "NUL in a line": (HEAD + "s2=\x00\n", "expected <type>=<value>"),
    "NUL in a value": (HEAD + "a=tool:x\x00y\n", "CR or NUL"),
    "bare CR inside a line": (HEAD + "a=tool:x\ry\n", "CR or NUL"),
}


@pytest.mark.parametrize(("body", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_sdp_raises_sdp_error_with_status_400(body: str, problem: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(body)
    assert problem in caught.value.reason
    assert caught.value.status == 400
    assert isinstance(caught.value, ParseError)
    assert isinstance(caught.value, ValueError)


def test_error_names_the_offending_line() -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(HEAD + "t=0 0\nm=audio port RTP/AVP 0\n")
    assert caught.value.reason.startswith("line 5 (m=): port")


def test_error_reason_echoes_peer_text_as_short_ascii() -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(HEAD + "m=audio ÿ" + "9" * 100 + " RTP/AVP 0\n")
    assert caught.value.reason.isascii()
    assert len(caught.value.reason) < 120


def test_oversized_body_is_refused_before_parsing() -> None:
    body = minimal("a=x:" + "y" * MAX_SDP_BYTES)
    with pytest.raises(SdpError, match="larger than"):
        parse_sdp(body.encode())


def test_too_many_lines_is_refused() -> None:
    with pytest.raises(SdpError, match="more than"):
        parse_sdp(minimal("a=x\n" * 2000))


def test_non_utf8_body_is_refused() -> None:
    with pytest.raises(SdpError, match="not UTF-8"):
        parse_sdp(minimal("s2=").encode() + b"\xff\xfe\r\n")


def test_serialize_refuses_values_that_would_inject_lines() -> None:
    sdp = parse_sdp(ASTERISK_OFFER)
    evil = Connection.for_address("192.0.2.1\r\na=sendonly")
    with pytest.raises(SdpError, match="CR, LF or NUL"):
        serialize(SessionDescription(origin=sdp.origin, connection=evil))


# --- properties ------------------------------------------------------------------------------

TOKEN = st.text(string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=10)
# Free text as SDP carries it: no CR, LF or NUL, and no trailing blanks (the parser trims them).
TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=20
).map(lambda text: text.rstrip(" \t"))
NUMBER = st.integers(min_value=0, max_value=2**64 - 1)
ATTRIBUTES = st.lists(st.builds(Attribute, TOKEN, st.none() | TEXT), max_size=4).map(tuple)
BANDWIDTHS = st.lists(st.builds(Bandwidth, TOKEN, NUMBER), max_size=2).map(tuple)
HOSTNAME = st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True)

CONNECTIONS = st.one_of(
    st.builds(Connection, st.just("IN"), st.just("IP4"), st.ip_addresses(v=4).map(str)),
    st.builds(Connection, st.just("IN"), st.just("IP4"), HOSTNAME),
    st.builds(
        Connection,
        st.just("IN"),
        st.just("IP4"),
        st.ip_addresses(v=4).map(str),
        ttl=st.integers(0, 255),
        count=st.none() | st.integers(1, 16),
    ),
    st.builds(
        Connection,
        st.just("IN"),
        st.just("IP6"),
        st.ip_addresses(v=6).map(str),
        count=st.none() | st.integers(1, 16),
    ),
)

MEDIA = st.builds(
    MediaDescription,
    media_type=TOKEN,
    port=st.integers(0, 65535),
    port_count=st.none() | st.integers(1, 8),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl"]) | TOKEN,
    formats=st.lists(TOKEN, min_size=1, max_size=5).map(tuple),
    info=st.none() | TEXT,
    connection=st.none() | CONNECTIONS,
    bandwidths=BANDWIDTHS,
    encryption_key=st.none() | TEXT,
    attributes=ATTRIBUTES,
)

SESSIONS = st.builds(
    SessionDescription,
    origin=st.builds(
        Origin, TOKEN, NUMBER.map(str), NUMBER, st.just("IN"), st.just("IP4"), HOSTNAME
    ),
    session_name=TEXT,
    info=st.none() | TEXT,
    uri=st.none() | TEXT,
    emails=st.lists(TEXT, max_size=2).map(tuple),
    phones=st.lists(TEXT, max_size=2).map(tuple),
    connection=st.none() | CONNECTIONS,
    bandwidths=BANDWIDTHS,
    timings=st.lists(
        st.builds(Timing, NUMBER, NUMBER, st.lists(TEXT, max_size=2).map(tuple)),
        min_size=1,
        max_size=2,
    ).map(tuple),
    time_zones=st.none() | TEXT,
    encryption_key=st.none() | TEXT,
    attributes=ATTRIBUTES,
    media=st.lists(MEDIA, max_size=3).map(tuple),
)


@given(SESSIONS)
def test_parse_of_serialize_is_identity(sdp: SessionDescription) -> None:
    wire = serialize(sdp)
    assert parse_sdp(wire) == sdp
    assert serialize(parse_sdp(wire)) == wire


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_arbitrary_input_either_parses_or_raises_sdp_error(data: str | bytes) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp(data)


@given(st.lists(st.sampled_from(BARESIP_OFFER.splitlines(keepends=True)), max_size=30))
def test_shuffled_phone_lines_either_parse_or_raise_sdp_error(lines: list[str]) -> None:
    try:
        sdp = parse_sdp("".join(lines))
    except SdpError:
        return
    assert parse_sdp(serialize(sdp)) == sdp
