"""The SDP that crosses between a browser and a phone (pbx/webrtc_sdp.py), and
the ICE-lite agent's answers to checks (media/ice_lite.py): pure functions,
fed a browser's description as Chrome writes it."""

from __future__ import annotations

import pytest
from aioice import stun

from callbridge.media.dtls_srtp import Fingerprint
from callbridge.media.ice_lite import IceCredentials, IceLite
from callbridge.media.transcode import OpusFormats
from callbridge.media.webrtc import WebRtcLocal
from callbridge.pbx.anchor import audio_of
from callbridge.pbx.webrtc_sdp import (
    answer_setup,
    check_formats,
    is_webrtc,
    offered_mid,
    plain_of,
    plain_side,
    webrtc_of,
    webrtc_remote_of,
)
from callbridge.sip.sdp import SdpError, parse_sdp

FINGERPRINT = ":".join(["AB"] * 32)

CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2122260223 192.0.2.7 54400 typ host generation 0",
        "a=ice-ufrag:Fq2b",
        "a=ice-pwd:eRWcM3IyvKfwfRw2d5SD8KJZ",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:stream track",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:3735928559 cname:abc",
        "",
    ]
).encode()

PHONE_OFFER = b"\r\n".join(
    [
        b"v=0",
        b"o=phone 1 1 IN IP4 192.0.2.9",
        b"s=-",
        b"c=IN IP4 192.0.2.9",
        b"t=0 0",
        b"m=audio 4000 RTP/AVP 8 0 18 101",
        b"a=rtpmap:8 PCMA/8000",
        b"a=rtpmap:18 G729/8000",
        b"a=rtpmap:101 telephone-event/8000",
        b"a=fmtp:101 0-15",
        b"a=ptime:20",
        b"a=sendrecv",
        b"",
    ]
)

LOCAL = WebRtcLocal(
    IceCredentials("ours1234", "p" * 24), Fingerprint("sha-256", ":".join(["CD"] * 32))
)


def test_a_browser_offer_is_webrtc_and_not_a_hold() -> None:
    offer = parse_sdp(CHROME_OFFER)
    audio = audio_of(offer)
    assert audio.webrtc == webrtc_remote_of(offer, 0) and (audio.mid, audio.bundle) == ("0", True)
    assert is_webrtc(offer, audio.index)
    assert not audio.holds and audio.sends  # c=0.0.0.0 with ICE is no RFC 2543 hold
    assert not is_webrtc(parse_sdp(PHONE_OFFER), 0)


@pytest.mark.parametrize(
    ("proto", "attributes"),
    [
        ("RTP/SAVP", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40),
        ("UDP/TLS/RTP/SAVP", f"a=fingerprint:sha-256 {FINGERPRINT}\r\na=setup:actpass"),
    ],
)
def test_a_phones_srtp_without_ice_is_not_webrtc_and_passes_as_before(
    proto: str, attributes: str
) -> None:
    text = (
        PHONE_OFFER.decode()
        .replace("RTP/AVP", proto)
        .replace("a=sendrecv", f"{attributes}\r\na=sendrecv")
    )
    offer = parse_sdp(text)
    audio = audio_of(offer)
    assert not is_webrtc(offer, 0) and audio.webrtc is None


def test_the_browser_offer_gives_its_ice_credentials_fingerprint_and_role() -> None:
    offer = parse_sdp(CHROME_OFFER)
    remote = webrtc_remote_of(offer, audio_of(offer).index)
    assert (remote.ufrag, remote.pwd) == ("Fq2b", "eRWcM3IyvKfwfRw2d5SD8KJZ")
    assert remote.fingerprints == (Fingerprint("sha-256", FINGERPRINT),)
    assert remote.role == "server" and answer_setup(remote) == "passive"
    passive = parse_sdp(CHROME_OFFER.replace(b"setup:actpass", b"setup:passive"))
    remote = webrtc_remote_of(passive, audio_of(passive).index)
    assert remote.role == "client" and answer_setup(remote) == "active"


def test_the_phone_is_offered_plain_g711_and_events_at_our_address() -> None:
    offer = parse_sdp(CHROME_OFFER)
    plain = parse_sdp(plain_of(offer, audio_of(offer), "203.0.113.5", 30000))
    media = plain.media[0]
    assert (media.proto, media.port, media.formats) == ("RTP/AVP", 30000, ("0", "8", "126"))
    assert plain.connection is not None and plain.connection.address == "203.0.113.5"
    names = {attribute.name for attribute in media.attributes}
    assert names == {"rtpmap", "sendrecv"}
    assert plain.attributes == ()  # no BUNDLE, msid-semantic or extmap-allow-mixed
    assert b"ice" not in plain.to_bytes() and b"fingerprint" not in plain.to_bytes()


def test_the_browser_is_answered_with_ours_in_its_mid() -> None:
    offer = parse_sdp(CHROME_OFFER)
    audio = audio_of(offer)
    remote = webrtc_remote_of(offer, audio.index)
    phone_answer = parse_sdp(
        b"v=0\r\no=phone 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 126\r\na=rtpmap:126 telephone-event/8000\r\n"
    )
    mid, bundle = offered_mid(offer, audio.index)
    answer = parse_sdp(
        webrtc_of(
            phone_answer,
            audio_of(phone_answer),
            LOCAL,
            "203.0.113.5",
            30000,
            setup=answer_setup(remote),
            mid=mid,
            bundle=bundle,
        )
    )
    media = answer.media[0]
    assert (media.proto, media.port, media.formats) == ("UDP/TLS/RTP/SAVPF", 30000, ("0", "126"))
    assert media.attribute("mid") == "0" and answer.attribute("group") == "BUNDLE 0"
    assert answer.has_attribute("ice-lite")
    assert media.attribute("ice-ufrag") == "ours1234" and media.attribute("ice-pwd") == "p" * 24
    assert media.attribute("fingerprint") == str(LOCAL.fingerprint)
    assert media.attribute("setup") == "passive" and media.has_attribute("rtcp-mux")
    candidates = media.attribute_values("candidate")
    assert candidates == ["1 1 udp 2130706431 203.0.113.5 30000 typ host"]
    assert media.rtpmap("0") is not None and media.rtpmap("0").encoding == "PCMU"  # type: ignore[union-attr]


def test_a_browser_is_offered_webrtc_with_actpass_and_the_phones_g711() -> None:
    offer = parse_sdp(PHONE_OFFER)
    ours = webrtc_of(offer, audio_of(offer), LOCAL, "203.0.113.5", 30000, setup="actpass")
    media = parse_sdp(ours).media[0]
    assert media.formats == ("8", "0", "101")  # G729 cannot pass through to a browser
    assert media.attribute("setup") == "actpass" and media.attribute("mid") == "0"
    assert media.attribute("ptime") == "20" and media.attribute("fmtp") == "101 0-15"
    assert media.has_attribute("sendrecv")


OPUS_ONLY = CHROME_OFFER.replace(b"111 63 9 0 8 13 110 126", b"111 110")
PHONE_ANSWER = parse_sdp(
    b"v=0\r\no=phone 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def test_a_browser_with_g711_is_relayed_not_transcoded() -> None:
    assert audio_of(parse_sdp(CHROME_OFFER)).opus is None


def test_an_opus_only_browser_is_transcoded_and_the_phone_offered_g711() -> None:
    offer = parse_sdp(OPUS_ONLY)
    audio = audio_of(offer)
    assert audio.opus == OpusFormats(opus=111, events=110, voice=0, plain_events=101)
    check_formats(offer, audio.index)
    plain = parse_sdp(plain_of(offer, audio, "203.0.113.5", 30000)).media[0]
    assert (plain.proto, plain.formats) == ("RTP/AVP", ("0", "8", "101"))
    assert plain.rtpmap("101").clock_rate == 8000  # type: ignore[union-attr]
    assert b"opus" not in plain_of(offer, audio, "203.0.113.5", 30000)


def test_an_opus_only_browser_is_answered_opus_and_events_at_48_khz() -> None:
    offer = parse_sdp(OPUS_ONLY)
    audio = audio_of(offer)
    assert audio.opus is not None
    answer = webrtc_of(
        PHONE_ANSWER,
        audio_of(PHONE_ANSWER),
        LOCAL,
        "203.0.113.5",
        30000,
        setup="passive",
        opus=audio.opus,
    )
    media = parse_sdp(answer).media[0]
    assert media.formats == ("111", "110")
    assert media.rtpmap("111").encoding == "opus" and media.rtpmap("111").clock_rate == 48000  # type: ignore[union-attr]
    assert media.rtpmap("110").clock_rate == 48000  # type: ignore[union-attr]
    assert b"PCMA" not in answer
    # The transcoder speaks the phone's answer: PCMA and its events.
    assert plain_side(audio.opus, audio_of(PHONE_ANSWER)) == OpusFormats(111, 110, 8, 101)


def test_a_browser_offer_names_opus_after_the_phones_g711() -> None:
    offer = parse_sdp(PHONE_OFFER)
    ours = webrtc_of(
        offer, audio_of(offer), LOCAL, "203.0.113.5", 30000, setup="actpass", offer_opus=True
    )
    media = parse_sdp(ours).media[0]
    assert media.formats == ("8", "0", "101", "111", "126")
    assert media.rtpmap("126").clock_rate == 48000  # type: ignore[union-attr]


def test_a_browser_answering_opus_to_a_phones_offer_gives_the_phone_its_own_g711() -> None:
    phone = audio_of(parse_sdp(PHONE_OFFER))
    browser_answer = parse_sdp(OPUS_ONLY.replace(b"a=setup:actpass", b"a=setup:active"))
    plain = plain_of(browser_answer, audio_of(browser_answer), "203.0.113.5", 30000, plain=phone)
    media = parse_sdp(plain).media[0]
    assert media.formats == ("8", "0", "101")  # the phone's PCMA first, as it offered


def test_an_offer_with_neither_g711_nor_opus_is_refused_with_488() -> None:
    offer = parse_sdp(CHROME_OFFER.replace(b"111 63 9 0 8 13 110 126", b"9 126"))
    with pytest.raises(SdpError) as refused:
        check_formats(offer, audio_of(offer).index)
    assert refused.value.status == 488 and "Opus" in refused.value.reason


@pytest.mark.parametrize(
    ("find", "replace", "named"),
    [
        (b"a=ice-ufrag:Fq2b", b"a=ice-ufrag:F", "ice-ufrag"),
        (b"a=ice-ufrag:Fq2b", b"a=ice-ufrag:Fq2b\x7f!", "ice-ufrag"),
        (b"a=ice-pwd:eRWcM3IyvKfwfRw2d5SD8KJZ", b"a=ice-pwd:short", "ice-pwd"),
        (
            f"a=fingerprint:sha-256 {FINGERPRINT}".encode(),
            b"a=fingerprint:md2 AB:CD",
            "fingerprint",
        ),
        (FINGERPRINT.encode(), b"AB:CD:zz", "fingerprint"),
        (b"a=setup:actpass", b"a=setup:holdconn", "setup"),
        (b"a=rtcp-mux\r\n", b"", "rtcp-mux"),
        (b"a=mid:0", b"a=mid:" + b"m" * 40, "mid"),
    ],
)
def test_bad_webrtc_attributes_get_488_naming_them(find: bytes, replace: bytes, named: str) -> None:
    text = CHROME_OFFER.replace(find, replace)
    assert text != CHROME_OFFER
    try:
        offer = parse_sdp(text)
    except SdpError as error:  # the SDP parser refused it first: also a 4xx
        assert error.status in (400, 488)
        return
    with pytest.raises(SdpError) as refused:
        audio_of(offer)  # reads the WebRTC attributes of a UDP/TLS/RTP/SAVPF stream
    assert refused.value.status == 488 and named in refused.value.reason
    with pytest.raises(SdpError):
        webrtc_remote_of(offer, 0)
        offered_mid(offer, 0)


def binding(username: str, key: bytes, *, use_candidate: bool = False) -> bytes:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    if use_candidate:
        request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(key)
    return bytes(request)


def test_ice_lite_answers_a_check_that_knows_our_password() -> None:
    ice = IceLite(IceCredentials("ours", "p" * 24))
    ice.set_remote("them")
    result = ice.receive(binding("ours:them", b"p" * 24), ("127.0.0.1", 5000))
    assert result.selected and ice.selected == ("127.0.0.1", 5000)
    reply = stun.parse_message(result.reply or b"")
    assert reply.message_class == stun.Class.RESPONSE
    assert reply.attributes["XOR-MAPPED-ADDRESS"] == ("127.0.0.1", 5000)
    assert reply.check_message_integrity(b"p" * 24)


@pytest.mark.parametrize(
    ("username", "key"),
    [
        ("ours:them", b"q" * 24),  # wrong password
        ("other:them", b"p" * 24),  # not our ufrag
        ("ours:else", b"p" * 24),  # not the peer's ufrag
        ("ours", b"p" * 24),  # no colon
    ],
)
def test_ice_lite_ignores_checks_that_do_not_prove_themselves(username: str, key: bytes) -> None:
    ice = IceLite(IceCredentials("ours", "p" * 24))
    ice.set_remote("them")
    result = ice.receive(binding(username, key), ("127.0.0.1", 5000))
    assert result.reply is None and ice.selected is None and ice.refused == 1


def test_ice_lite_moves_only_to_a_nominated_pair() -> None:
    ice = IceLite(IceCredentials("ours", "p" * 24))
    key = b"p" * 24
    assert ice.receive(binding("ours:them", key), ("127.0.0.1", 5000)).selected
    assert not ice.receive(binding("ours:them", key), ("127.0.0.1", 6000)).selected
    assert ice.receive(binding("ours:them", key, use_candidate=True), ("127.0.0.1", 6000)).selected
    assert ice.selected == ("127.0.0.1", 6000)
    assert not ice.receive(
        binding("ours:them", key, use_candidate=True), ("127.0.0.1", 7000)
    ).selected


@pytest.mark.parametrize("data", [b"\x00\x01", b"\x00\x01\x00\x08" + bytes(16), bytes(2000)])
def test_ice_lite_drops_truncated_and_oversized_stun(data: bytes) -> None:
    ice = IceLite(IceCredentials("ours", "p" * 24))
    assert ice.receive(data, ("127.0.0.1", 5000)).reply is None
