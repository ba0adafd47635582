"""A call ended from the API (`B2bua.end_call`), with no sockets and a fake
clock: both phones get a BYE and the record says which side hung up."""

from __future__ import annotations

import dataclasses

import pytest

from callbridge.pbx.call import CallRefused

from .call_harness import ALICE, BOB, World
from .test_call_flows import answered


async def test_the_employee_ends_the_call_and_both_phones_get_a_bye() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=7), BOB))
    fork, _, _ = await answered(world)
    record = world.recorder.only()
    world.b2bua.end_call(record.id, 7)
    assert len(world.sip.requests("BYE", to=fork.peer)) == 1
    [to_alice] = [s for s in world.sip.requests("BYE") if s.peer != fork.peer]
    assert b"ended from the API" in (to_alice.request.headers.get("Reason") or "").encode()
    assert (record.status, record.hangup_side) == ("answered", "caller")
    with pytest.raises(CallRefused) as over:
        world.b2bua.end_call(record.id, 7)
    assert over.value.status == 409


async def test_a_stranger_and_a_call_not_answered_or_over_are_refused() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=7), BOB))
    world.register(BOB)
    world.invite(ALICE, "102")
    await world.settle()
    record = world.recorder.only().id
    with pytest.raises(CallRefused) as not_answered:
        world.b2bua.end_call(record, 7)
    assert not_answered.value.status == 409
    with pytest.raises(CallRefused) as stranger:
        world.b2bua.end_call(record, 8)
    assert stranger.value.status == 403
    with pytest.raises(CallRefused) as unknown:
        world.b2bua.end_call("no-such-call", 7)
    assert unknown.value.status == 409
