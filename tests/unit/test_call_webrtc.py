"""Calls with a browser on one side (pbx/call.py with pbx/webrtc_sdp.py): a
browser's WebRTC offer reaches a phone as plain RTP and the phone's answer
comes back as ours (ICE-lite, DTLS, one host candidate); a call to a line
with a desk phone and a browser offers each the SDP it takes, and the one
that answers gets the matching media leg. No sockets, a fake clock."""

from __future__ import annotations

import dataclasses

from callbridge.media.transcode import OpusFormats
from callbridge.pbx.originate import Originator
from callbridge.sip import Response
from callbridge.sip.sdp import parse_sdp

from .call_harness import ALICE, BOB, MEDIA_ADDRESS, Dialog, World, browser_sdp, sdp


async def test_a_browser_calls_a_phone_through_plain_rtp_and_gets_a_webrtc_answer() -> None:
    world = World()
    phone = world.register(BOB)
    _, _, first = world.invite(ALICE, "102", browser_sdp(9))
    assert isinstance(first, Response) and first.status == 100
    await world.settle()
    session = world.media.sessions[world.recorder.only().id]
    caller_leg = session.legs[0]
    assert caller_leg.webrtc is not None and caller_leg.webrtc_remote is not None
    assert caller_leg.webrtc_remote.ufrag == "Brws" and caller_leg.webrtc_remote.role == "server"
    assert caller_leg.payload_types == {111: "opus", 0: "PCMU", 8: "PCMA", 126: "telephone-event"}

    fork = world.sip.last_request("INVITE", to=phone)
    offer = parse_sdp(fork.request.body)
    media = offer.media[0]
    assert (media.proto, media.formats) == ("RTP/AVP", ("0", "8", "126"))
    assert b"ice-" not in fork.request.body and b"fingerprint" not in fork.request.body

    fork.respond(200, to_tag="bob-tag", body=sdp(8000))
    ok = world.sip.responses[-1][1]
    assert ok.status == 200
    answer = parse_sdp(ok.body)
    media = answer.media[0]
    assert (media.proto, media.port) == ("UDP/TLS/RTP/SAVPF", caller_leg.local_address[1])
    assert media.attribute("setup") == "passive" and media.attribute("mid") == "0"
    assert media.attribute("ice-ufrag") == caller_leg.webrtc.ice.ufrag
    assert media.attribute_values("candidate") == [
        f"1 1 udp 2130706431 {MEDIA_ADDRESS} {caller_leg.local_address[1]} typ host"
    ]
    assert answer.has_attribute("ice-lite") and answer.attribute("group") == "BUNDLE 0"
    assert caller_leg.peer is session.legs[1]


def opus_only(body: bytes) -> bytes:
    return body.replace(b"111 0 8 126", b"111 110").replace(
        b"a=rtpmap:126 telephone-event/8000", b"a=rtpmap:110 telephone-event/48000"
    )


async def test_a_browser_with_g711_is_relayed_untouched() -> None:
    world = World()
    world.register(BOB)
    world.invite(ALICE, "102", browser_sdp(9))
    await world.settle()
    caller_leg = world.media.sessions[world.recorder.only().id].legs[0]
    assert caller_leg.webrtc is not None and caller_leg.transcoding is None


async def test_a_browser_offering_only_opus_is_transcoded_to_the_phones_g711() -> None:
    world = World()
    phone = world.register(BOB)
    world.invite(ALICE, "102", opus_only(browser_sdp(9)))
    await world.settle()
    session = world.media.sessions[world.recorder.only().id]
    caller_leg = session.legs[0]
    assert caller_leg.transcoding == OpusFormats(opus=111, events=110, voice=0, plain_events=101)
    # Inside the relay the browser's leg carries what the phone was offered.
    assert caller_leg.payload_types == {0: "PCMU", 8: "PCMA", 101: "telephone-event"}

    fork = world.sip.last_request("INVITE", to=phone)
    media = parse_sdp(fork.request.body).media[0]
    assert (media.proto, media.formats) == ("RTP/AVP", ("0", "8", "101"))
    assert b"opus" not in fork.request.body

    pcma = sdp(8000).replace(b"RTP/AVP 0 101", b"RTP/AVP 8 101").replace(b"0 PCMU", b"8 PCMA")
    fork.respond(200, to_tag="bob-tag", body=pcma)
    ok = world.sip.responses[-1][1]
    assert ok.status == 200
    media = parse_sdp(ok.body).media[0]
    assert media.proto == "UDP/TLS/RTP/SAVPF" and media.formats == ("111", "110")
    assert caller_leg.transcoding == OpusFormats(opus=111, events=110, voice=8, plain_events=101)
    assert caller_leg.peer is session.legs[1]


async def test_a_browser_that_offers_g711_again_is_relayed_not_decoded() -> None:
    world = World()
    phone = world.register(BOB)
    world.invite(ALICE, "102", opus_only(browser_sdp(9)))
    await world.settle()
    caller_leg = world.media.sessions[world.recorder.only().id].legs[0]
    world.sip.last_request("INVITE", to=phone).respond(200, to_tag="bob-tag", body=sdp(8000))
    ok = world.sip.responses[-1][1]
    assert caller_leg.transcoding is not None
    dialog = Dialog(ok.call_id, ok.from_.tag or "", ok.to.tag or "", cseq=2)
    world.in_dialog(dialog, "ACK", cseq=2)
    world.in_dialog(dialog, "INVITE", browser_sdp(9))  # G.711 among its formats again
    relayed = world.sip.last_request("INVITE", to=phone)
    relayed.respond(200, to_tag="bob-tag", body=sdp(8000))
    assert caller_leg.transcoding is None


async def test_a_browser_offering_neither_g711_nor_opus_is_refused_with_488() -> None:
    world = World()
    world.register(BOB)
    g722 = browser_sdp(9).replace(b"111 0 8 126", b"9").replace(b"111 opus/48000/2", b"9 G722/8000")
    _, _, answer = world.invite(ALICE, "102", g722)
    assert isinstance(answer, Response) and answer.status == 488


async def test_a_browser_answering_only_opus_to_a_phone_is_transcoded() -> None:
    world = World()
    browser = world.register(BOB, host="127.0.0.21", browser=True)
    world.invite(ALICE, "102", sdp(7000))
    await world.settle()
    fork = world.sip.last_request("INVITE", to=browser)
    offered = parse_sdp(fork.request.body).media[0]
    assert offered.formats == ("0", "101", "111", "126")  # G.711 first, Opus for who insists
    answer = browser_sdp(9, setup="active").replace(b"111 0 8 126", b"111 126")
    answer = answer.replace(
        b"a=rtpmap:126 telephone-event/8000", b"a=rtpmap:126 telephone-event/48000"
    )
    fork.respond(200, to_tag="browser-tag", body=answer)
    ok = world.sip.responses[-1][1]
    assert ok.status == 200
    media = parse_sdp(ok.body).media[0]
    assert (media.proto, media.formats) == ("RTP/AVP", ("0", "101"))
    session = world.media.sessions[world.recorder.only().id]
    browser_leg = next(leg for leg in session.legs if leg.webrtc is not None)
    assert browser_leg.transcoding == OpusFormats(opus=111, events=126, voice=0, plain_events=101)


async def test_a_line_with_a_desk_phone_and_a_browser_rings_each_in_its_own_sdp() -> None:
    world = World()
    desk = world.register(BOB)
    browser = world.register(BOB, host="127.0.0.21", browser=True)
    world.invite(ALICE, "102", sdp(7000))
    await world.settle()
    session = world.media.sessions[world.recorder.only().id]
    webrtc_legs = [leg for leg in session.legs if leg.webrtc is not None]
    assert len(session.legs) == 3 and len(webrtc_legs) == 1

    desk_fork = world.sip.last_request("INVITE", to=desk)
    desk_fork.respond(180, to_tag="desk-tag")
    to_desk = parse_sdp(desk_fork.request.body)
    to_browser_fork = world.sip.last_request("INVITE", to=browser)
    to_browser = parse_sdp(to_browser_fork.request.body)
    assert to_desk.media[0].proto == "RTP/AVP"
    media = to_browser.media[0]
    assert media.proto == "UDP/TLS/RTP/SAVPF" and media.attribute("setup") == "actpass"
    assert media.port == webrtc_legs[0].local_address[1] and media.has_attribute("rtcp-mux")

    # The browser answers (DTLS active): its leg becomes the callee's.
    to_browser_fork.respond(
        200, to_tag="browser-tag", body=browser_sdp(9, setup="active").replace(b"111 0", b"0")
    )
    ok = world.sip.responses[-1][1]
    assert ok.status == 200
    to_alice = parse_sdp(ok.body)
    assert to_alice.media[0].proto == "RTP/AVP"
    assert to_alice.media[0].formats == ("0", "8", "126")
    browser_leg = webrtc_legs[0]
    assert browser_leg.webrtc_remote is not None and browser_leg.webrtc_remote.role == "server"
    assert session.legs[0].peer is browser_leg
    cancel = world.sip.last_request("CANCEL", to=desk)
    assert cancel.request.call_id == world.sip.last_request("INVITE", to=desk).request.call_id


async def delayed_offer_answered_by_a_browser(world: World) -> tuple[object, Dialog, object]:
    """A delayed offer (no SDP) to a line with a desk phone and a browser;
    the browser answers our own offer. The browser, the caller's dialog and
    the session."""
    desk = world.register(BOB)
    browser = world.register(BOB, host="127.0.0.21", browser=True)
    _, transaction, _ = world.invite(ALICE, "102", b"")
    await world.settle()
    session = world.media.sessions[world.recorder.only().id]
    assert world.sip.last_request("INVITE", to=desk).request.body == b""  # it offers in its 2xx
    to_browser = world.sip.last_request("INVITE", to=browser)
    offer = parse_sdp(to_browser.request.body)  # ours: the relay's formats, WebRTC
    media = offer.media[0]
    # G.711 and its events first, then Opus (transcoded only if the browser insists).
    assert media.proto == "UDP/TLS/RTP/SAVPF" and media.formats[:3] == ("0", "8", "101")
    assert media.attribute("setup") == "actpass" and offer.has_attribute("ice-lite")
    to_browser.respond(
        200,
        to_tag="browser-tag",
        body=browser_sdp(9, setup="active")
        .replace(b"111 0 8 126", b"0 8 101")
        .replace(b"126 telephone", b"101 telephone"),
    )
    assert world.sip.last_request("ACK", to=browser).request.body == b""  # answered already
    assert world.sip.answers_to(transaction)[-1] == 200
    ok = world.sip.responses[-1][1]
    # Our offer to alice, from the browser's answer: its first voice format
    # only (it sends PCMU whatever alice would pick), and its events.
    to_alice = parse_sdp(ok.body)
    assert to_alice.media[0].proto == "RTP/AVP" and to_alice.media[0].formats == ("0", "101")
    assert to_alice.media[0].port == session.legs[0].local_address[1]
    dialog = Dialog(ok.call_id, ok.from_.tag or "", ok.to.tag or "", cseq=2)
    return browser, dialog, session


async def test_a_delayed_offer_rings_a_browser_with_our_own_offer() -> None:
    world = World()
    _, dialog, session = await delayed_offer_answered_by_a_browser(world)
    world.in_dialog(dialog, "ACK", sdp(7000), cseq=2)  # alice answers in her ACK
    assert session.legs[0].remote == ("127.0.0.9", 7000)
    browser_leg = next(leg for leg in session.legs if leg.webrtc is not None)
    assert session.legs[0].peer is browser_leg
    assert world.recorder.only().status == "in_progress"


async def test_a_delayed_offer_whose_ack_has_no_answer_ends_the_call() -> None:
    world = World()
    browser, dialog, _ = await delayed_offer_answered_by_a_browser(world)
    world.in_dialog(dialog, "ACK", b"", cseq=2)
    record = world.recorder.only()
    assert (record.status, record.hangup_cause) == ("failed", "no SDP answer in the ACK")
    assert len(world.sip.requests("BYE", to=browser)) == 1


async def test_a_desk_phone_answering_beside_a_browser_keeps_the_plain_leg() -> None:
    world = World()
    desk = world.register(BOB)
    world.register(BOB, host="127.0.0.21", browser=True)
    world.invite(ALICE, "102", sdp(7000))
    await world.settle()
    session = world.media.sessions[world.recorder.only().id]
    world.sip.last_request("INVITE", to=desk).respond(200, to_tag="desk-tag", body=sdp(8000))
    assert world.sip.responses[-1][1].status == 200
    plain_callee = next(leg for leg in session.legs[1:] if leg.webrtc is None)
    assert session.legs[0].peer is plain_callee and plain_callee.remote == ("127.0.0.9", 8000)


async def test_a_phone_without_g711_calling_a_browser_only_line_gets_488() -> None:
    world = World()
    browser = world.register(BOB, host="127.0.0.21", browser=True)
    g729 = (
        sdp(7000)
        .replace(b"RTP/AVP 0 101", b"RTP/AVP 18 101")
        .replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:18 G729/8000")
    )
    _, transaction, _ = world.invite(ALICE, "102", g729)
    await world.settle()
    assert world.sip.requests("INVITE", to=browser) == []
    assert world.sip.answers_to(transaction)[-1] == 488
    assert world.recorder.only().hangup_cause == "no codec in common"


EMPLOYEE = dataclasses.replace(ALICE, employee_id=7, ring_timeout=15)


async def test_click_to_call_rings_the_employees_browser_with_webrtc_and_its_desk_phone_plain() -> (
    None
):
    world = World(lines=(EMPLOYEE, BOB))
    desk = world.register(EMPLOYEE)
    browser = world.register(EMPLOYEE, host="127.0.0.21", browser=True)
    bob = world.register(BOB, host="127.0.0.30")
    await Originator(world.b2bua).call(7, "102")
    to_desk = parse_sdp(world.sip.last_request("INVITE", to=desk).request.body)
    to_browser = world.sip.last_request("INVITE", to=browser)
    offered = parse_sdp(to_browser.request.body).media[0]
    assert to_desk.media[0].proto == "RTP/AVP"
    assert offered.proto == "UDP/TLS/RTP/SAVPF" and offered.attribute("setup") == "actpass"

    # The browser answers: its WebRTC leg is the employee's, and the number
    # is offered plain RTP with the codecs the browser took.
    to_browser.respond(200, to_tag="web", body=browser_sdp(9, setup="active"))
    session = next(iter(world.media.sessions.values()))
    browser_leg = next(leg for leg in session.legs if leg.webrtc is not None)
    assert browser_leg.webrtc_remote is not None
    to_bob = world.sip.last_request("INVITE", to=bob)
    offer = parse_sdp(to_bob.request.body)
    assert offer.media[0].proto == "RTP/AVP" and offer.media[0].formats == ("0", "8", "126")
    to_bob.respond(200, to_tag="bob", body=sdp(8000))
    assert browser_leg.peer is session.legs[-1]
    assert world.recorder.only().answered_at is not None
