"""The call log: a record from the moment a call starts to its end, talk time
from the answer, and the records a crash left open closed at the next start;
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callbridge.pbx.calls import CallLog, UnknownCall
from callbridge.store import Database, Employee, InternalLine
from callbridge.store.models import CallRecord

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def start(log: CallLog, **fields: object) -> str:
    return await log.start(
        at=fields.pop("at", T0),  # type: ignore[arg-type]
        caller_number="101",
        callee_number="102",
        **fields,  # type: ignore[arg-type]
    )


async def record(database: Database, call_id: str) -> CallRecord:
    async with database.session() as session:
        found = await session.get(CallRecord, call_id)
    assert found is not None
    return found


async def test_a_call_is_recorded_in_progress_when_it_starts(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log, caller_raw="<sip:101@pbx>", sip_call_id="abc@10.0.0.2")
    stored = await record(database, call_id)
    assert (stored.status, stored.direction, stored.talk_seconds) == ("in_progress", "internal", 0)
    assert (stored.caller_number, stored.callee_number) == ("101", "102")
    assert (stored.caller_raw, stored.sip_call_id) == ("<sip:101@pbx>", "abc@10.0.0.2")
    assert stored.started_at == T0
    assert stored.answered_at is None and stored.ended_at is None
    assert len(call_id) == 32 and call_id != await start(log)


async def test_answered_call_gets_talk_seconds_from_the_answer(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    await log.answered(call_id, at(4))
    await log.answered(call_id, at(5))  # another device's late 200 moves nothing
    assert await log.ended(call_id, at(65.4), "answered", "callee", "BYE")
    stored = await record(database, call_id)
    assert (stored.status, stored.talk_seconds) == ("answered", 61)
    assert (stored.answered_at, stored.ended_at) == (at(4), at(65.4))
    assert (stored.hangup_side, stored.hangup_cause) == ("callee", "BYE")


async def test_ring_timeout_marks_call_missed_without_talk(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    await log.ended(call_id, at(30), "missed", "system", "ring timeout")
    stored = await record(database, call_id)
    assert (stored.status, stored.talk_seconds, stored.answered_at) == ("missed", 0, None)
    assert (stored.hangup_side, stored.hangup_cause) == ("system", "ring timeout")


async def test_caller_cancel_marks_call_cancelled(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    await log.ended(call_id, at(3), "cancelled", "caller", "CANCEL")
    stored = await record(database, call_id)
    assert (stored.status, stored.hangup_side, stored.ended_at) == ("cancelled", "caller", at(3))


async def test_busy_callee_marks_call_busy(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    await log.ended(call_id, at(1), "busy", "callee", "486 Busy Here")
    stored = await record(database, call_id)
    assert (stored.status, stored.hangup_cause, stored.talk_seconds) == (
        "busy",
        "486 Busy Here",
        0,
    )


async def test_an_ended_call_is_not_closed_again(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    assert await log.ended(call_id, at(2), "rejected", "callee", "603 Decline")
    assert not await log.ended(call_id, at(9), "failed", "system", "rtp timeout")
    stored = await record(database, call_id)
    assert (stored.status, stored.ended_at) == ("rejected", at(2))


async def test_a_call_answered_then_failed_keeps_its_talk_time(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    await log.answered(call_id, at(2))
    await log.ended(call_id, at(32), "failed", "system", "rtp timeout")
    assert (await record(database, call_id)).talk_seconds == 30


async def test_the_call_keeps_its_line_and_employee(database: Database) -> None:
    async with database.session() as session:
        employee = Employee(name="Alice")
        session.add(employee)
        await session.flush()
        line = InternalLine(number="102", username="bob", employee_id=employee.id)
        line.set_password("s3cret-pass", "callbridge")
        session.add(line)
        await session.commit()
    call_id = await start(CallLog(database), internal_line_id=line.id, employee_id=employee.id)
    stored = await record(database, call_id)
    assert (stored.internal_line_id, stored.employee_id) == (line.id, employee.id)


async def test_close_interrupted_fails_the_calls_a_crash_left_open(database: Database) -> None:
    before_crash = CallLog(database)
    ringing = await start(before_crash)
    talking = await start(before_crash)
    await before_crash.answered(talking, at(3))
    done = await start(before_crash)
    await before_crash.ended(done, at(5), "missed", "system", "ring timeout")
    # The process dies here; the next start closes what it left open.
    after_restart = CallLog(database)
    assert await after_restart.close_interrupted(at(600)) == 2
    for call_id in (ringing, talking):
        stored = await record(database, call_id)
        assert (stored.status, stored.hangup_side, stored.hangup_cause) == (
            "failed",
            "system",
            "interrupted by restart",
        )
        assert (stored.ended_at, stored.talk_seconds) == (at(600), 0)
    assert (await record(database, done)).status == "missed"
    assert await after_restart.close_interrupted(at(601)) == 0


@pytest.mark.parametrize(
    ("status", "side", "bad"),
    [
        ("in_progress", "caller", "in_progress"),
        ("hung up", "caller", "hung up"),
        ("busy", "me", "me"),
    ],
)
async def test_bad_status_words_are_refused_naming_the_value(
    database: Database, status: str, side: str, bad: str
) -> None:
    log = CallLog(database)
    call_id = await start(log)
    with pytest.raises(ValueError, match=f"'{bad}'"):
        await log.ended(call_id, at(1), status, side, None)
    with pytest.raises(ValueError, match="'sideways'"):
        await start(log, direction="sideways")
    assert (await record(database, call_id)).status == "in_progress"


async def test_answered_status_needs_an_answer(database: Database) -> None:
    log = CallLog(database)
    call_id = await start(log)
    with pytest.raises(ValueError, match="never answered"):
        await log.ended(call_id, at(1), "answered", "caller", "BYE")


async def test_naive_times_and_unknown_calls_are_refused(database: Database) -> None:
    log = CallLog(database)
    with pytest.raises(ValueError, match="timezone"):
        await start(log, at=datetime(2026, 11, 27, 9, 0))
    with pytest.raises(UnknownCall):
        await log.answered("0" * 32, at(1))
    with pytest.raises(UnknownCall):
        await log.ended("0" * 32, at(1), "missed", "system", None)
    async with database.session() as session:
        assert list(await session.scalars(select(CallRecord))) == []
