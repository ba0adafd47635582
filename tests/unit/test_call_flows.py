"""A call's life with no sockets and a fake clock: the tests play both
phones against the B2BUA (tests/unit/call_harness.py) and move time by hand."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from callbridge.pbx.originate import Originator
from callbridge.sip import Response
from callbridge.sip.sdp import parse_sdp
from callbridge.sip.transaction import DEFAULT_TIMERS

from .call_harness import ALICE, BOB, MEDIA_ADDRESS, Dialog, Sent, World, sdp

T1 = DEFAULT_TIMERS.T1


async def ringing(world: World, body: bytes | None = None) -> tuple[Sent, object]:
    """alice calls 102; bob's one device gets the INVITE and rings."""
    device = world.register(BOB)
    _, transaction, answer = world.invite(ALICE, "102", body)
    assert isinstance(answer, Response) and answer.status == 100
    await world.settle()
    fork = world.sip.last_request("INVITE", to=device)
    fork.respond(180, to_tag="bob-tag")
    assert world.sip.answers_to(transaction)[-1] == 180
    return fork, transaction


async def answered(world: World) -> tuple[Sent, object, Dialog]:
    """The call is up and both 2xx are ACKed; the caller's dialog to use."""
    fork, transaction = await ringing(world)
    fork.respond(200, to_tag="bob-tag", body=sdp(8000))
    ok = world.sip.responses[-1][1]
    assert ok.status == 200
    dialog = Dialog(ok.call_id, ok.from_.tag or "", ok.to.tag or "", cseq=2)
    world.in_dialog(dialog, "ACK", cseq=2)
    return fork, transaction, dialog


async def test_an_answered_call_is_anchored_acked_and_hung_up_on_both_sides() -> None:
    world = World()
    fork, _, dialog = await answered(world)
    # Each side's SDP points at its own leg of the relay, not at the other phone.
    session = world.media.sessions[world.recorder.only().id]
    caller_leg, callee_leg = session.legs
    to_bob = parse_sdp(fork.request.body)
    to_alice = parse_sdp(world.sip.responses[-1][1].body)
    assert to_bob.connection_for(to_bob.media[0]).address == MEDIA_ADDRESS  # type: ignore[union-attr]
    assert to_bob.media[0].port == callee_leg.local_address[1]
    assert to_alice.media[0].port == caller_leg.local_address[1]
    assert caller_leg.peer is callee_leg
    assert caller_leg.remote == ("127.0.0.9", 7000) and callee_leg.remote == ("127.0.0.9", 8000)
    assert world.sip.last_request("ACK", to=fork.peer).request.call_id == fork.request.call_id

    _, _, bye_answer = world.in_dialog(dialog, "BYE")
    assert bye_answer is not None and bye_answer.status == 200
    assert world.sip.last_request("BYE", to=fork.peer).request.call_id == fork.request.call_id
    record = world.recorder.only()
    assert (record.status, record.hangup_side, record.hangup_cause) == (
        "answered",
        "caller",
        "normal",
    )
    await world.settle()
    assert session.closed and world.media.ports_left == 100


async def test_ring_timeout_cancels_the_devices_and_marks_the_call_missed() -> None:
    world = World(lines=(ALICE, dataclasses.replace(BOB, ring_timeout=20)))
    fork, transaction = await ringing(world)
    world.clock.advance(19.9)
    assert world.sip.requests("CANCEL") == []
    world.clock.advance(0.2)
    cancel = world.sip.last_request("CANCEL", to=fork.peer)
    assert cancel.request.call_id == fork.request.call_id
    assert "480" in (cancel.request.headers.get("Reason") or "")
    assert world.sip.answers_to(transaction)[-1] == 480
    assert world.recorder.only().status == "missed"


async def test_the_talk_limit_ends_an_answered_call_with_bye_to_both() -> None:
    world = World(lines=(ALICE, dataclasses.replace(BOB, max_talk_duration=60)))
    fork, _, dialog = await answered(world)
    world.clock.advance(59)
    assert world.sip.requests("BYE") == []
    world.clock.advance(1)
    byes = world.sip.requests("BYE")
    assert {bye.request.call_id for bye in byes} == {fork.request.call_id, dialog.call_id}
    assert all("talk limit" in (bye.request.headers.get("Reason") or "") for bye in byes)
    record = world.recorder.only()
    assert (record.status, record.hangup_side, record.hangup_cause) == (
        "answered",
        "system",
        "talk limit",
    )


async def test_a_200_that_crosses_the_callers_cancel_is_acked_and_hung_up() -> None:
    world = World()
    fork, transaction = await ringing(world)
    assert world.b2bua.cancel(transaction) is not None  # type: ignore[arg-type]
    assert world.sip.answers_to(transaction)[-1] == 487
    world.sip.last_request("CANCEL", to=fork.peer)
    fork.respond(200, to_tag="bob-tag", body=sdp(8000))  # it was on its way
    ack = world.sip.last_request("ACK", to=fork.peer)
    bye = world.sip.last_request("BYE", to=fork.peer)
    assert ack.request.to.tag == bye.request.to.tag == "bob-tag"
    assert 200 not in world.sip.answers_to(transaction)
    assert world.recorder.only().status == "cancelled"


async def test_a_reinvite_while_another_is_pending_gets_491() -> None:
    world = World()
    fork, _, dialog = await answered(world)
    _, _, first = world.in_dialog(dialog, "INVITE", sdp(7000, direction="sendonly"))
    assert first is None  # relayed: the answer comes from bob
    relayed = world.sip.last_request("INVITE", to=fork.peer)
    assert relayed.request.call_id == fork.request.call_id
    _, _, second = world.in_dialog(dialog, "INVITE", sdp(7000))
    assert second is not None and second.status == 491
    assert second.headers.get("Retry-After")


async def test_a_callee_gone_mid_call_ends_it_with_bye_to_the_caller() -> None:
    world = World()
    fork, _, dialog = await answered(world)
    _, reinvite, _ = world.in_dialog(dialog, "INVITE", sdp(7000, direction="sendonly"))
    relayed = world.sip.last_request("INVITE", to=fork.peer)
    relayed.respond(408)  # Timer B: bob's phone vanished
    assert world.sip.answers_to(reinvite)[-1] == 408
    bye = world.sip.last_request("BYE")
    assert bye.request.call_id == dialog.call_id
    record = world.recorder.only()
    assert (record.hangup_side, record.hangup_cause) == ("system", "re-INVITE answered 408")


async def test_a_delayed_offer_is_answered_in_the_callers_ack() -> None:
    world = World()
    device = world.register(BOB)
    _, transaction, _ = world.invite(ALICE, "102", b"")
    await world.settle()
    fork = world.sip.last_request("INVITE", to=device)
    assert fork.request.body == b""  # the offer goes on delayed
    fork.respond(200, to_tag="bob-tag", body=sdp(8000))  # bob's 200 offers
    ok = world.sip.answers_to(transaction)
    assert ok[-1] == 200
    assert world.sip.requests("ACK", to=device) == []  # it waits for alice's answer
    response = world.sip.responses[-1][1]
    dialog = Dialog(response.call_id, response.from_.tag or "", response.to.tag or "", cseq=2)
    world.in_dialog(dialog, "ACK", sdp(7000), cseq=2)
    ack = world.sip.last_request("ACK", to=device)
    answer = parse_sdp(ack.request.body)
    session = world.media.sessions[world.recorder.only().id]
    assert answer.media[0].port == session.legs[1].local_address[1]
    assert session.legs[0].remote == ("127.0.0.9", 7000)


async def test_our_200_is_sent_again_until_acked_and_the_call_ends_without_an_ack() -> None:
    world = World()
    fork, transaction = await ringing(world)
    fork.respond(200, to_tag="bob-tag", body=sdp(8000))
    world.clock.advance(T1)
    world.clock.advance(2 * T1)
    assert world.sip.answers_to(transaction).count(200) == 3
    world.clock.advance(64 * T1 - 3 * T1 - 0.1)
    assert world.recorder.only().status == "in_progress"
    world.clock.advance(DEFAULT_TIMERS.T2)  # the first retransmission past 64*T1
    assert world.recorder.only().hangup_cause == "no ACK"
    assert world.sip.last_request("BYE", to=fork.peer).request.call_id == fork.request.call_id


async def test_the_first_device_to_answer_wins_and_the_others_are_cancelled() -> None:
    world = World()
    desk, soft = world.register(BOB), world.register(BOB, host="127.0.0.21")
    _, transaction, _ = world.invite(ALICE, "102")
    await world.settle()
    to_desk, to_soft = (world.sip.last_request("INVITE", to=d) for d in (desk, soft))
    to_desk.respond(180, to_tag="desk")
    to_soft.respond(180, to_tag="soft")
    to_soft.respond(200, to_tag="soft", body=sdp(8002))
    cancel = world.sip.last_request("CANCEL", to=desk)
    assert "Call completed elsewhere" in (cancel.request.headers.get("Reason") or "")
    assert world.sip.answers_to(transaction)[-1] == 200
    assert world.sip.requests("CANCEL", to=soft) == []


async def test_no_media_ports_refuses_the_call_with_503() -> None:
    world = World()
    world.media.ports_left = 1
    world.register(BOB)
    _, transaction, _ = world.invite(ALICE, "102")
    await world.settle()
    assert world.sip.answers_to(transaction)[-1] == 503
    assert world.recorder.only().hangup_cause == "no media ports"
    assert world.sip.requests("INVITE") == []


@pytest.mark.parametrize(("status", "record"), [(486, "busy"), (603, "rejected"), (488, "failed")])
async def test_a_callee_refusing_is_passed_back(status: int, record: str) -> None:
    world = World()
    fork, transaction = await ringing(world)
    fork.respond(status, to_tag="bob-tag")
    assert world.sip.answers_to(transaction)[-1] == status
    assert world.recorder.only().status == record


async def test_an_ended_call_goes_at_once_with_no_reference_cycle_left() -> None:
    world = World()
    gc.disable()
    try:
        _, _, dialog = await answered(world)
        world.in_dialog(dialog, "BYE")
        await world.settle()
        assert len(world.b2bua.in_memory) == 0
    finally:
        gc.enable()


# --- click-to-call: the employee's devices first, then the number ---------------

EMPLOYEE = dataclasses.replace(ALICE, employee_id=7, ring_timeout=15)


async def click_to_call(world: World) -> tuple[Sent, str]:
    """Employee 7 (line 101) clicks 102; their desk phone rings with our offer."""
    desk = world.register(EMPLOYEE)
    record = await Originator(world.b2bua).call(7, "102")
    to_desk = world.sip.last_request("INVITE", to=desk)
    assert to_desk.request.from_.uri.user == "102"  # the phone shows whom it will call
    return to_desk, record


async def test_click_to_call_rings_the_employee_then_the_number_with_their_answer() -> None:
    world = World(lines=(EMPLOYEE, BOB))
    bob = world.register(BOB, host="127.0.0.30")
    to_desk, _ = await click_to_call(world)
    assert world.sip.requests("INVITE", to=bob) == []  # nobody else yet
    to_desk.respond(200, to_tag="desk", body=sdp(9000))
    assert world.sip.last_request("ACK", to=to_desk.peer)
    to_bob = world.sip.last_request("INVITE", to=bob)
    offer = parse_sdp(to_bob.request.body)
    session = next(iter(world.media.sessions.values()))
    employee, customer = session.legs
    assert offer.media[0].port == customer.local_address[1]
    assert employee.remote == ("127.0.0.9", 9000)
    to_bob.respond(200, to_tag="bob", body=sdp(8000))
    assert employee.peer is customer
    record = world.recorder.only()
    assert record.answered_at is not None and record.status == "in_progress"


async def test_click_to_call_the_employee_does_not_answer_nobody_else_is_called() -> None:
    world = World(lines=(EMPLOYEE, BOB))
    bob = world.register(BOB, host="127.0.0.30")
    to_desk, _ = await click_to_call(world)
    to_desk.respond(180, to_tag="desk")
    world.clock.advance(15)
    cancel = world.sip.last_request("CANCEL", to=to_desk.peer)
    assert "Originator did not answer" in (cancel.request.headers.get("Reason") or "")
    assert world.sip.requests("INVITE", to=bob) == []
    record = world.recorder.only()
    assert (record.status, record.hangup_cause) == ("cancelled", "originator did not answer")


async def test_click_to_call_the_employee_hangs_up_while_the_number_rings() -> None:
    world = World(lines=(EMPLOYEE, BOB))
    bob = world.register(BOB, host="127.0.0.30")
    to_desk, _ = await click_to_call(world)
    ok = to_desk.respond(200, to_tag="desk", body=sdp(9000))
    to_bob = world.sip.last_request("INVITE", to=bob)
    to_bob.respond(180, to_tag="bob")
    # The desk phone's BYE in the dialog we opened (we are its caller).
    employee = Dialog(ok.call_id, "desk", ok.from_.tag or "", cseq=1)
    _, _, answer = world.in_dialog_as_callee(employee, "BYE")
    assert answer is not None and answer.status == 200
    assert world.sip.last_request("CANCEL", to=bob).request.call_id == to_bob.request.call_id
    assert world.sip.requests("BYE", to=to_desk.peer) == []  # they hung up themselves
    assert world.recorder.only().status == "cancelled"
