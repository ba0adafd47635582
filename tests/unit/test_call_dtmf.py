"""DTMF in a call's life, with no sockets and a fake clock (the harness of
tests/unit/test_call_flows.py): an INFO digit reaches the callee in the form
its answer accepted, a bad one is refused, the API's digits need an
answered call and a party to it, and an ended call leaves nothing on its
media legs."""

from __future__ import annotations

import dataclasses

import pytest

from callbridge.media.rtp import RtpPacket, TelephoneEvent
from callbridge.pbx.dtmf import DigitsRefused

from .call_harness import ALICE, BOB, Dialog, Sent, World, sdp
from .test_call_flows import EMPLOYEE, answered, click_to_call, ringing
from .test_media_dtmf import a_press

NO_EVENTS = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    b"m=audio 8000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)
ALICE_EMPLOYEE = 7


async def answered_by(world: World, answer: bytes) -> tuple[Sent, Dialog]:
    fork, _ = await ringing(world)
    fork.respond(200, to_tag="bob-tag", body=answer)
    ok = world.sip.responses[-1][1]
    dialog = Dialog(ok.call_id, ok.from_.tag or "", ok.to.tag or "", cseq=2)
    world.in_dialog(dialog, "ACK", cseq=2)
    return fork, dialog


def info(
    world: World, dialog: Dialog, body: bytes, kind: str = "application/dtmf-relay"
) -> int | None:
    """The status callbridge answers an INFO with at once (None: later, relayed)."""
    _, _, answer = world.in_dialog(dialog, "INFO", body, content_type=kind)
    return None if answer is None else answer.status


async def test_an_info_digit_reaches_a_callee_without_telephone_event_as_info() -> None:
    world = World()
    fork, dialog = await answered_by(world, NO_EVENTS)
    assert info(world, dialog, b"Signal=5\r\nDuration=200\r\n") == 200
    relayed = world.sip.last_request("INFO", to=fork.peer).request
    assert relayed.call_id == fork.request.call_id
    assert relayed.headers.get("Content-Type") == "application/dtmf-relay"
    assert relayed.body == b"Signal=5\r\nDuration=200\r\n"


async def test_an_info_digit_reaches_a_callee_with_telephone_event_as_rfc4733() -> None:
    world = World()
    fork, _, dialog = await answered(world)  # bob's answer has telephone-event
    callee_leg = world.media.sessions[world.recorder.only().id].legs[1]
    assert info(world, dialog, b"#", kind="application/dtmf") == 200
    world.clock.advance(1.0)  # the event's packets go out on the call's clock
    assert world.sip.requests("INFO", to=fork.peer) == []
    packets = [RtpPacket.parse(p) for p in callee_leg.sent]
    assert len(packets) == 10  # 160 ms: the start, 6 updates 20 ms apart, 3 ends
    assert {TelephoneEvent.parse(p.payload).event for p in packets} == {11}
    assert packets[0].marker and TelephoneEvent.parse(packets[-1].payload).end


@pytest.mark.parametrize("body", [b"", b"Signal=Z\r\n", b"Signal=1\r\nDuration=x\r\n"])
async def test_an_info_that_is_no_digit_is_400_and_goes_nowhere(body: bytes) -> None:
    world = World()
    fork, dialog = await answered_by(world, NO_EVENTS)
    assert info(world, dialog, body or b" ") == 400
    assert world.sip.requests("INFO", to=fork.peer) == []


async def test_other_info_is_still_relayed() -> None:
    world = World()
    fork, dialog = await answered_by(world, NO_EVENTS)
    assert info(world, dialog, b"<xml/>", kind="application/media_control+xml") is None
    relayed = world.sip.last_request("INFO", to=fork.peer).request
    assert relayed.body == b"<xml/>"


async def test_api_digits_need_an_answered_call_and_a_party_to_it() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=ALICE_EMPLOYEE), BOB))
    await ringing(world)
    record = world.recorder.only().id
    with pytest.raises(DigitsRefused) as ringing_call:
        world.b2bua.send_digits(record, ALICE_EMPLOYEE, "1")
    assert ringing_call.value.status == 409
    world2 = World(lines=(dataclasses.replace(ALICE, employee_id=ALICE_EMPLOYEE), BOB))
    fork, _ = await answered_by(world2, NO_EVENTS)
    record = world2.recorder.only().id
    with pytest.raises(DigitsRefused) as stranger:
        world2.b2bua.send_digits(record, ALICE_EMPLOYEE + 1, "1")
    assert stranger.value.status == 403
    world2.b2bua.send_digits(record, ALICE_EMPLOYEE, "12")
    world2.clock.advance(1.0)
    bodies = [sent.request.body for sent in world2.sip.requests("INFO", to=fork.peer)]
    assert bodies == [b"Signal=1\r\nDuration=160\r\n", b"Signal=2\r\nDuration=160\r\n"]
    with pytest.raises(DigitsRefused) as unknown:
        world2.b2bua.send_digits("f" * 32, ALICE_EMPLOYEE, "1")
    assert unknown.value.status == 409


async def test_an_ended_call_leaves_nothing_on_its_media_legs() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=ALICE_EMPLOYEE), BOB))
    _, dialog = await answered_by(world, sdp(8000))
    session = world.media.sessions[world.recorder.only().id]
    assert any(leg.taps for leg in session.legs)
    world.in_dialog(dialog, "BYE")
    for leg in session.legs:
        assert leg.taps == [] and leg.outbound is None
    with pytest.raises(DigitsRefused) as over:
        world.b2bua.send_digits(world.recorder.only().id, ALICE_EMPLOYEE, "1")
    assert over.value.status == 409


async def test_click_to_call_digits_go_to_each_side_in_its_form() -> None:
    """The employee's desk phone took our offer (telephone-event); the
    customer answers without it: the API's digits and the desk phone's
    events reach the customer as INFO, the customer's INFO reaches the desk
    phone as events."""
    world = World(lines=(EMPLOYEE, BOB))
    bob = world.register(BOB, host="127.0.0.30")
    to_desk, record = await click_to_call(world)
    to_desk.respond(200, to_tag="desk", body=sdp(9000))
    to_bob = world.sip.last_request("INVITE", to=bob)
    ok = to_bob.respond(200, to_tag="bob", body=NO_EVENTS)
    assert ok is not None
    world.b2bua.send_digits(record, 7, "9")
    employee_media, _ = next(iter(world.media.sessions.values())).legs
    for packet in a_press("3", 4000):
        for tap in list(employee_media.taps):
            tap(employee_media, packet)
    world.clock.advance(1.0)
    bodies = [sent.request.body for sent in world.sip.requests("INFO", to=bob)]
    assert bodies == [b"Signal=9\r\nDuration=160\r\n", b"Signal=3\r\nDuration=80\r\n"]
    customer = Dialog(to_bob.request.call_id, "bob", to_bob.request.from_.tag or "", cseq=1)
    _, _, answer = world.in_dialog_as_callee(
        customer, "INFO", b"Signal=4\r\n", content_type="application/dtmf-relay"
    )
    assert answer is not None and answer.status == 200
    world.clock.advance(1.0)
    starts = [RtpPacket.parse(p) for p in employee_media.sent if RtpPacket.parse(p).marker]
    assert [TelephoneEvent.parse(p.payload).event for p in starts] == [4]
