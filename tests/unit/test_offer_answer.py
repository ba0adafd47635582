"""RFC 3264 offer/answer: codec choice, directions, hold and media anchoring."""

from __future__ import annotations

import pytest

from callbridge.sip.offer_answer import (
    DEFAULT_CAPABILITIES,
    G722,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    HoldStyle,
    MediaCapabilities,
    OfferAnswerError,
    answer,
    answer_direction,
    bump_version,
    hold,
    is_on_hold,
    make_offer,
    resume,
    with_connection,
)
from callbridge.sip.sdp import (
    Attribute,
    Connection,
    Direction,
    RtpMap,
    SessionDescription,
    parse_sdp,
    serialize,
)

OPUS = Codec("opus", 48000, 2, fmtp="useinbandfec=1")


def offer(*lines: str, session: str = "c=IN IP4 192.0.2.10") -> SessionDescription:
    """A peer's offer: a fixed head, `session` lines, then the given m-sections."""
    head = ["v=0", "o=peer 42 7 IN IP4 192.0.2.10", "s=-", session, "t=0 0"]
    return parse_sdp("\n".join([*filter(None, head), *lines]))


def respond(
    sdp: SessionDescription,
    local: MediaCapabilities = DEFAULT_CAPABILITIES,
    ports: tuple[int, ...] = (30000,),
) -> SessionDescription:
    return answer(sdp, local, address="198.51.100.1", ports=ports, session_id="99")


# What phones send, reduced to the lines that decide the answer.
BARESIP = offer(
    "m=audio 10000 RTP/AVP 96 0 8 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp:10001",
    "a=ptime:20",
)
LINPHONE = offer(
    "m=audio 7078 RTP/AVP 96 97 0 8 18 100 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:100 telephone-event/48000",
    "a=rtpmap:101 telephone-event/8000",
    "m=video 9078 RTP/AVP 103",
    "a=rtpmap:103 VP8/90000",
)
ASTERISK = offer(
    "m=audio 18012 RTP/AVP 8 0 9 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=sendrecv",
)
# Some gateways number even G.711 dynamically, and in lower case.
DYNAMIC_G711 = offer(
    "m=audio 5004 RTP/AVP 110 111 112",
    "a=rtpmap:110 pcma/8000",
    "a=rtpmap:111 Telephone-Event/8000",
    "a=rtpmap:112 PCMU/16000",
)
IPV6 = offer(
    "m=audio 40000 RTP/AVP 0 101",
    "c=IN IP6 2001:db8::5",
    "a=rtpmap:101 telephone-event/8000",
    session="",
)

CODEC_CHOICES = {
    "baresip: opus skipped, offerer order kept": (
        BARESIP,
        DEFAULT_CAPABILITIES,
        ["0", "8", "101"],
    ),
    "asterisk: PCMA first because the offerer put it first": (
        ASTERISK,
        MediaCapabilities(codecs=(PCMU, PCMA, TELEPHONE_EVENT)),
        ["8", "0", "101"],
    ),
    "asterisk with G722 enabled": (
        ASTERISK,
        MediaCapabilities(codecs=(G722, PCMU, PCMA, TELEPHONE_EVENT)),
        ["8", "0", "9", "101"],
    ),
    "linphone: telephone-event matched by rate at its own number": (
        LINPHONE,
        DEFAULT_CAPABILITIES,
        ["0", "8", "101"],
    ),
    "linphone with opus: offerer order beats ours": (
        LINPHONE,
        MediaCapabilities(codecs=(PCMA, PCMU, OPUS, TELEPHONE_EVENT)),
        ["96", "0", "8", "101"],
    ),
    "dynamic G711 matched by name, any case": (
        DYNAMIC_G711,
        DEFAULT_CAPABILITIES,
        ["110", "111"],
    ),
    "no telephone-event locally: none answered": (
        ASTERISK,
        MediaCapabilities(codecs=(PCMU,)),
        ["0"],
    ),
    "ipv6 offer": (IPV6, DEFAULT_CAPABILITIES, ["0", "101"]),
}


@pytest.mark.parametrize(
    ("sdp", "local", "formats"), CODEC_CHOICES.values(), ids=CODEC_CHOICES.keys()
)
def test_answer_picks_supported_codecs_in_offerer_order(
    sdp: SessionDescription, local: MediaCapabilities, formats: list[str]
) -> None:
    audio = respond(sdp, local).media[0]
    assert list(audio.formats) == formats
    assert list(audio.rtpmaps) == formats
    assert audio.port == 30000


def test_answer_keeps_offerers_payload_numbers_and_names() -> None:
    audio = respond(DYNAMIC_G711).media[0]
    assert audio.rtpmaps == {
        "110": RtpMap("pcma", 8000),
        "111": RtpMap("Telephone-Event", 8000),
    }


@pytest.mark.parametrize(
    ("sdp", "payload_type", "fmtp"),
    [
        (BARESIP, "101", "0-15"),  # the offerer's event range is echoed
        (LINPHONE, "101", "0-16"),  # none offered: ours fills the gap
        (ASTERISK, "101", "0-16"),
    ],
)
def test_telephone_event_is_answered_with_its_fmtp(
    sdp: SessionDescription, payload_type: str, fmtp: str
) -> None:
    assert respond(sdp).media[0].fmtp(payload_type) == fmtp


def test_offered_codec_fmtp_is_echoed() -> None:
    local = MediaCapabilities(codecs=(Codec("G729", 8000, payload_type=18),))
    assert respond(LINPHONE, local).media[0].fmtp("18") == "annexb=yes"


def test_answer_is_a_complete_description() -> None:
    wire = serialize(respond(ASTERISK)).decode()
    assert wire == (
        "v=0\r\n"
        "o=- 99 1 IN IP4 198.51.100.1\r\n"
        "s=-\r\n"
        "c=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/AVP 8 0 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def test_answer_over_ipv6_uses_ip6_connection() -> None:
    answered = answer(IPV6, address="2001:db8::1", ports=[30000], session_id="1")
    assert answered.connection == Connection("IN", "IP6", "2001:db8::1")
    assert answered.origin.addrtype == "IP6"


def test_unsupported_video_is_kept_with_port_zero() -> None:
    answered = respond(LINPHONE)
    assert len(answered.media) == len(LINPHONE.media)
    video = answered.media[1]
    assert (video.media_type, video.port, video.formats) == ("video", 0, ("103",))
    assert video.attributes == ()


REJECTED_STREAMS = {
    "only opus offered": offer("m=audio 4000 RTP/AVP 96", "a=rtpmap:96 opus/48000/2"),
    "only telephone-event matches": offer(
        "m=audio 4000 RTP/AVP 96 101",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:101 telephone-event/8000",
    ),
    "SRTP profile": offer("m=audio 4000 RTP/SAVP 0"),
    "stream already disabled": offer("m=audio 0 RTP/AVP 0"),
    "video only": offer("m=video 4000 RTP/AVP 96", "a=rtpmap:96 H264/90000"),
    "T.38 fax": offer("m=image 4000 udptl t38"),
    "no m-lines at all": offer(),
}


@pytest.mark.parametrize("sdp", REJECTED_STREAMS.values(), ids=REJECTED_STREAMS.keys())
def test_offer_with_nothing_acceptable_is_refused_with_488(sdp: SessionDescription) -> None:
    with pytest.raises(OfferAnswerError) as caught:
        respond(sdp)
    assert caught.value.status == 488
    assert caught.value.reason == "no acceptable media in offer"


@pytest.mark.parametrize("sdp", REJECTED_STREAMS.values(), ids=REJECTED_STREAMS.keys())
def test_unacceptable_stream_next_to_a_good_one_gets_port_zero(sdp: SessionDescription) -> None:
    combined = offer(*serialize(sdp).decode().split("\r\n")[5:], "m=audio 6000 RTP/AVP 0")
    answered = respond(combined)
    assert [m.port for m in answered.media] == [0] * len(sdp.media) + [30000]


def test_streams_beyond_the_ports_given_are_rejected() -> None:
    two_audio = offer("m=audio 4000 RTP/AVP 0", "m=audio 4002 RTP/AVP 8")
    assert [m.port for m in respond(two_audio).media] == [30000, 0]
    assert [m.port for m in respond(two_audio, ports=(30000, 30002)).media] == [30000, 30002]


def test_answer_does_not_touch_the_offer() -> None:
    before = serialize(BARESIP)
    respond(BARESIP)
    assert serialize(BARESIP) == before


@pytest.mark.parametrize(
    ("offered", "local", "expected"),
    [
        (Direction.SENDRECV, Direction.SENDRECV, Direction.SENDRECV),
        (Direction.SENDONLY, Direction.SENDRECV, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDRECV, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.SENDRECV, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.RECVONLY, Direction.RECVONLY),
        (Direction.SENDRECV, Direction.SENDONLY, Direction.SENDONLY),
        (Direction.RECVONLY, Direction.RECVONLY, Direction.INACTIVE),
        (Direction.SENDONLY, Direction.INACTIVE, Direction.INACTIVE),
    ],
)
def test_answer_direction_is_the_complement_limited_by_ours(
    offered: Direction, local: Direction, expected: Direction
) -> None:
    assert answer_direction(offered, local) is expected
    sdp = offer("m=audio 4000 RTP/AVP 0", f"a={offered}")
    answered = respond(sdp, MediaCapabilities(direction=local))
    assert answered.media[0].direction is expected


@pytest.mark.parametrize(
    ("session", "media_lines", "expected"),
    [
        ("c=IN IP4 192.0.2.10\na=sendonly", [], Direction.RECVONLY),
        ("c=IN IP4 0.0.0.0", [], Direction.RECVONLY),
        ("c=IN IP4 192.0.2.10", ["c=IN IP4 0.0.0.0", "a=recvonly"], Direction.INACTIVE),
        ("c=IN IP4 0.0.0.0", ["a=inactive"], Direction.INACTIVE),
    ],
)
def test_offer_direction_inherits_session_level_and_legacy_null_address(
    session: str, media_lines: list[str], expected: Direction
) -> None:
    sdp = offer("m=audio 4000 RTP/AVP 0", *media_lines, session=session)
    assert respond(sdp).media[0].direction is expected


# --- offers ----------------------------------------------------------------------------------


def test_default_offer_carries_pcmu_pcma_and_telephone_event() -> None:
    sdp = make_offer(address="198.51.100.1", port=30000, session_id="5", session_version=3)
    assert serialize(sdp).decode() == (
        "v=0\r\n"
        "o=- 5 3 IN IP4 198.51.100.1\r\n"
        "s=-\r\n"
        "c=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


@pytest.mark.parametrize(
    ("codecs", "payload_types"),
    [
        ((OPUS, PCMU), ["96", "0"]),
        ((Codec("L16", 8000), Codec("speex", 8000), PCMU), ["96", "97", "0"]),
        ((TELEPHONE_EVENT, Codec("x", 8000, payload_type=101)), ["101", "96"]),
        ((Codec("a", 8000, payload_type=96), Codec("b", 8000)), ["96", "97"]),
    ],
)
def test_offer_gives_dynamic_payload_types_to_codecs_without_one(
    codecs: tuple[Codec, ...], payload_types: list[str]
) -> None:
    sdp = make_offer(MediaCapabilities(codecs=codecs), address="::1", port=1, session_id="1")
    assert list(sdp.media[0].formats) == payload_types
    assert sdp.connection == Connection("IN", "IP6", "::1")


def test_our_offer_is_answerable_by_our_answer() -> None:
    ours = make_offer(address="198.51.100.1", port=30000, session_id="5")
    theirs = answer(ours, address="192.0.2.10", ports=[4000], session_id="77")
    assert list(theirs.media[0].formats) == ["0", "8", "101"]
    assert theirs.media[0].direction is Direction.SENDRECV


# --- hold, resume, anchoring -----------------------------------------------------------------


def our_offer() -> SessionDescription:
    return make_offer(address="198.51.100.1", port=30000, session_id="5", session_version=3)


@pytest.mark.parametrize(
    ("before", "style", "after"),
    [
        (Direction.SENDRECV, "sendonly", Direction.SENDONLY),
        (Direction.RECVONLY, "sendonly", Direction.INACTIVE),
        (Direction.SENDRECV, "inactive", Direction.INACTIVE),
        (Direction.SENDONLY, "inactive", Direction.INACTIVE),
    ],
)
def test_hold_lowers_direction_and_bumps_version(
    before: Direction, style: HoldStyle, after: Direction
) -> None:
    sdp = make_offer(
        MediaCapabilities(direction=before), address="198.51.100.1", port=1, session_id="5"
    )
    held = hold(sdp, style=style)
    assert held.media[0].direction is after
    assert held.origin.sess_version == sdp.origin.sess_version + 1
    assert sdp.media[0].direction is before


def test_holding_twice_changes_nothing_the_second_time() -> None:
    held = hold(our_offer())
    assert hold(held) is held


def test_hold_leaves_rejected_streams_alone() -> None:
    sdp = offer("m=audio 4000 RTP/AVP 0", "m=video 0 RTP/AVP 31")
    held = hold(sdp)
    assert held.media[1] == sdp.media[1]
    assert held.media[0].direction is Direction.SENDONLY


def test_hold_overrides_session_level_direction() -> None:
    sdp = offer("m=audio 4000 RTP/AVP 0", session="c=IN IP4 192.0.2.10\na=recvonly")
    assert hold(sdp).media[0].direction is Direction.INACTIVE


def test_resume_restores_sendrecv_and_bumps_version() -> None:
    held = hold(our_offer())
    resumed = resume(held)
    assert resumed.media[0].direction is Direction.SENDRECV
    assert resumed.origin.sess_version == held.origin.sess_version + 1
    assert resume(resumed) is resumed


ON_HOLD = {
    "sendonly": ("c=IN IP4 192.0.2.10", ["a=sendonly"], True),
    "inactive": ("c=IN IP4 192.0.2.10", ["a=inactive"], True),
    "session-level sendonly": ("c=IN IP4 192.0.2.10\na=sendonly", [], True),
    "RFC 2543 null session address": ("c=IN IP4 0.0.0.0", [], True),
    "RFC 2543 null media address": ("", ["c=IN IP4 0.0.0.0"], True),
    "IPv6 null address": ("c=IN IP6 ::", [], True),
    "sendrecv": ("c=IN IP4 192.0.2.10", ["a=sendrecv"], False),
    "recvonly is the peer holding us back, not holding": ("", ["a=recvonly"], False),
    "media address overrides null session address": (
        "c=IN IP4 0.0.0.0",
        ["c=IN IP4 192.0.2.10"],
        False,
    ),
}


@pytest.mark.parametrize(("session", "media_lines", "held"), ON_HOLD.values(), ids=ON_HOLD.keys())
def test_is_on_hold(session: str, media_lines: list[str], held: bool) -> None:
    sdp = offer("m=audio 4000 RTP/AVP 0", *media_lines, session=session)
    assert is_on_hold(sdp) is held


def test_call_is_on_hold_only_when_every_active_stream_is() -> None:
    assert not is_on_hold(offer("m=audio 4000 RTP/AVP 0\na=sendonly", "m=audio 4002 RTP/AVP 0"))
    assert is_on_hold(offer("m=audio 4000 RTP/AVP 0\na=sendonly", "m=video 0 RTP/AVP 31"))
    assert not is_on_hold(offer("m=audio 0 RTP/AVP 0\na=sendonly"))


def test_with_connection_anchors_every_stream_at_the_relay() -> None:
    sdp = offer(
        "m=audio 10000 RTP/AVP 0",
        "c=IN IP4 192.0.2.99",
        "a=rtcp:10001",
        "a=sendrecv",
        "m=video 0 RTP/AVP 31",
    )
    anchored = with_connection(sdp, "203.0.113.5", [40000, 40002])
    assert anchored.connection == Connection("IN", "IP4", "203.0.113.5")
    assert [m.port for m in anchored.media] == [40000, 0]
    assert anchored.media[0].connection is None
    assert anchored.media[0].attributes == (Attribute("sendrecv"),)
    assert anchored.origin.sess_version == sdp.origin.sess_version + 1
    assert sdp.media[0].port == 10000


def test_with_connection_to_ipv6_relay() -> None:
    anchored = with_connection(BARESIP, "2001:db8::7", [40000])
    assert anchored.connection == Connection("IN", "IP6", "2001:db8::7")


def test_with_connection_unchanged_keeps_version() -> None:
    sdp = our_offer()
    assert with_connection(sdp, "198.51.100.1", [30000]) is sdp


def test_with_connection_needs_one_port_per_m_line() -> None:
    with pytest.raises(ValueError, match="one per m-line"):
        with_connection(LINPHONE, "203.0.113.5", [40000])


def test_bump_version_increments_only_the_version() -> None:
    sdp = our_offer()
    bumped = bump_version(sdp)
    assert bumped.origin.sess_version == 4
    assert bumped.origin.sess_id == sdp.origin.sess_id
    assert bumped.media == sdp.media
    assert sdp.origin.sess_version == 3
