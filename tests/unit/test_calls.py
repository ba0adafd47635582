"""The call records the B2BUA writes behind its back: a record from the moment
a call starts to its end, talk time from the answer, the records a crash left
open closed at the next start, and the write-behind itself (batches in order,
nothing lost on stop or on a failed write); on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callbridge.pbx.calls import CallRecorder
from callbridge.store import Database, Employee, InternalLine
from callbridge.store.models import Account, CallRecord, Contact

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def recorder(database: Database) -> AsyncIterator[CallRecorder]:
    running = CallRecorder(database, retry_after=0.01)
    running.start()
    try:
        yield running
    finally:
        await running.stop()


def begin(recorder: CallRecorder, **fields: object) -> str:
    return recorder.begin(
        at=fields.pop("at", T0),  # type: ignore[arg-type]
        caller_number="101",
        callee_number="102",
        **fields,  # type: ignore[arg-type]
    )


def end(
    recorder: CallRecorder,
    call_id: str,
    at: datetime,
    status: str,
    side: str | None,
    cause: str | None,
    answered_at: datetime | None = None,
) -> None:
    recorder.ended(
        call_id,
        at=at,
        answered_at=answered_at,
        status=status,
        hangup_side=side,
        hangup_cause=cause,
    )


async def until(condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), 5.0)


async def record(database: Database, call_id: str) -> CallRecord:
    async with database.session() as session:
        found = await session.get(CallRecord, call_id)
    assert found is not None
    return found


async def all_records(database: Database) -> list[CallRecord]:
    async with database.session() as session:
        return list(await session.scalars(select(CallRecord)))


async def test_a_call_is_recorded_in_progress_once_begun(
    database: Database, recorder: CallRecorder
) -> None:
    call_id = begin(recorder, caller_raw="<sip:101@pbx>", sip_call_id="abc@10.0.0.2")
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.direction, stored.talk_seconds) == ("in_progress", "internal", 0)
    assert (stored.caller_number, stored.callee_number) == ("101", "102")
    assert (stored.caller_raw, stored.sip_call_id) == ("<sip:101@pbx>", "abc@10.0.0.2")
    assert stored.started_at == T0
    assert stored.answered_at is None and stored.ended_at is None
    assert len(call_id) == 32 and call_id != begin(recorder)


async def test_answered_call_gets_talk_seconds_from_the_answer(
    database: Database, recorder: CallRecorder
) -> None:
    call_id = begin(recorder)
    recorder.answered(call_id, at(4))
    end(recorder, call_id, at(65.4), "answered", "callee", "BYE", answered_at=at(4))
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.talk_seconds) == ("answered", 61)
    assert (stored.answered_at, stored.ended_at) == (at(4), at(65.4))
    assert (stored.hangup_side, stored.hangup_cause) == ("callee", "BYE")
    assert stored.hold_seconds == 0  # a caller that passes no hold time


async def test_the_time_on_hold_is_kept_with_the_end(
    database: Database, recorder: CallRecorder
) -> None:
    held, long_held = begin(recorder), begin(recorder)
    for call_id, hold in ((held, 25), (long_held, 90)):
        recorder.answered(call_id, at(0))
        recorder.ended(
            call_id,
            at=at(60),
            answered_at=at(0),
            status="answered",
            hangup_side="caller",
            hangup_cause="BYE",
            hold_seconds=hold,
        )
    await recorder.flush()
    assert (await record(database, held)).hold_seconds == 25
    # Never more than the talk time, whatever the sum it was given.
    assert (await record(database, long_held)).hold_seconds == 60


@pytest.mark.parametrize("hold", [-1, 2.5, True, "10"])
def test_a_hold_time_that_is_no_whole_number_of_seconds_is_refused(
    recorder: CallRecorder, hold: object
) -> None:
    with pytest.raises(ValueError, match="hold_seconds"):
        recorder.ended(
            "a" * 32,
            at=at(60),
            answered_at=at(0),
            status="answered",
            hangup_side="caller",
            hangup_cause="BYE",
            hold_seconds=hold,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("flush_between", [False, True])
async def test_a_second_answer_does_not_move_the_time(
    database: Database, recorder: CallRecorder, flush_between: bool
) -> None:
    call_id = begin(recorder)
    recorder.answered(call_id, at(4))
    if flush_between:
        await recorder.flush()
    recorder.answered(call_id, at(5))  # another device's late 200 moves nothing
    await recorder.flush()
    assert (await record(database, call_id)).answered_at == at(4)


async def test_ring_timeout_marks_call_missed_without_talk(
    database: Database, recorder: CallRecorder
) -> None:
    call_id = begin(recorder)
    end(recorder, call_id, at(30), "missed", "system", "ring timeout")
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.talk_seconds, stored.answered_at) == ("missed", 0, None)
    assert (stored.hangup_side, stored.hangup_cause) == ("system", "ring timeout")


async def test_caller_cancel_marks_call_cancelled(
    database: Database, recorder: CallRecorder
) -> None:
    call_id = begin(recorder)
    end(recorder, call_id, at(3), "cancelled", "caller", "CANCEL")
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.hangup_side, stored.ended_at) == ("cancelled", "caller", at(3))


async def test_busy_callee_marks_call_busy(database: Database, recorder: CallRecorder) -> None:
    call_id = begin(recorder)
    end(recorder, call_id, at(1), "busy", "callee", "486 Busy Here")
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.hangup_cause, stored.talk_seconds) == (
        "busy",
        "486 Busy Here",
        0,
    )


@pytest.mark.parametrize("flush_between", [False, True])
async def test_an_ended_call_is_not_closed_again(
    database: Database, recorder: CallRecorder, flush_between: bool
) -> None:
    call_id = begin(recorder)
    end(recorder, call_id, at(2), "rejected", "callee", "603 Decline")
    if flush_between:
        await recorder.flush()
    end(recorder, call_id, at(9), "failed", "system", "rtp timeout")
    recorder.answered(call_id, at(10))  # too late: the call is over
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.ended_at) == ("rejected", at(2))
    assert (stored.hangup_side, stored.hangup_cause) == ("callee", "603 Decline")
    assert stored.answered_at is None


async def test_a_call_answered_then_failed_keeps_its_talk_time(
    database: Database, recorder: CallRecorder
) -> None:
    call_id = begin(recorder)
    recorder.answered(call_id, at(2))
    end(recorder, call_id, at(32), "failed", "system", "rtp timeout", answered_at=at(2))
    await recorder.flush()
    assert (await record(database, call_id)).talk_seconds == 30


async def test_the_call_keeps_its_line_and_employee(
    database: Database, recorder: CallRecorder
) -> None:
    async with database.session() as session:
        employee = Employee(name="Alice")
        session.add(employee)
        await session.flush()
        line = InternalLine(number="102", username="bob", employee_id=employee.id)
        line.set_password("s3cret-pass", "callbridge")
        session.add(line)
        await session.commit()
    call_id = begin(recorder, internal_line_id=line.id, employee_id=employee.id)
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.internal_line_id, stored.employee_id) == (line.id, employee.id)


async def test_close_interrupted_fails_the_calls_a_crash_left_open(database: Database) -> None:
    before_crash = CallRecorder(database)
    before_crash.start()
    ringing = begin(before_crash)
    talking = begin(before_crash)
    before_crash.answered(talking, at(3))
    done = begin(before_crash)
    end(before_crash, done, at(5), "missed", "system", "ring timeout")
    await before_crash.flush()
    # The process dies here; the next start closes what it left open.
    after_restart = CallRecorder(database)
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
    await before_crash.stop()


@pytest.mark.parametrize(
    ("status", "side", "bad"),
    [
        ("in_progress", "caller", "in_progress"),
        ("hung up", "caller", "hung up"),
        ("busy", "me", "me"),
    ],
)
async def test_bad_status_words_are_refused_naming_the_value(
    database: Database, recorder: CallRecorder, status: str, side: str, bad: str
) -> None:
    call_id = begin(recorder)
    with pytest.raises(ValueError, match=f"'{bad}'"):
        end(recorder, call_id, at(1), status, side, None)
    with pytest.raises(ValueError, match="'sideways'"):
        begin(recorder, direction="sideways")
    await recorder.flush()
    assert [(r.id, r.status) for r in await all_records(database)] == [(call_id, "in_progress")]


async def test_answered_status_needs_an_answer(database: Database, recorder: CallRecorder) -> None:
    call_id = begin(recorder)
    with pytest.raises(ValueError, match="never answered"):
        end(recorder, call_id, at(1), "answered", "caller", "BYE")
    await recorder.flush()
    assert (await record(database, call_id)).status == "in_progress"


async def test_naive_times_are_refused(database: Database, recorder: CallRecorder) -> None:
    naive = datetime(2026, 11, 27, 9, 0)
    with pytest.raises(ValueError, match="timezone"):
        begin(recorder, at=naive)
    call_id = begin(recorder)
    with pytest.raises(ValueError, match="timezone"):
        recorder.answered(call_id, naive)
    with pytest.raises(ValueError, match="timezone"):
        end(recorder, call_id, naive, "missed", "system", None)
    with pytest.raises(ValueError, match="timezone"):
        end(recorder, call_id, at(9), "answered", "caller", "BYE", answered_at=naive)
    with pytest.raises(ValueError, match="timezone"):
        await recorder.close_interrupted(naive)
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.answered_at) == ("in_progress", None)
    assert len(await all_records(database)) == 1


# --- the write-behind ---------------------------------------------------------


async def test_changes_queued_before_a_write_land_in_one_batch_in_order(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = CallRecorder(database)
    batches: list[int] = []
    write = recorder._write

    async def counted(batch: list[object]) -> None:
        batches.append(len(batch))
        await write(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(recorder, "_write", counted)
    recorder.start()
    calls = []
    for n in range(200):
        call_id = begin(recorder, at=at(n))
        recorder.answered(call_id, at(n + 1))
        end(recorder, call_id, at(n + 11), "answered", "caller", "BYE", answered_at=at(n + 1))
        calls.append(call_id)
    await recorder.flush()
    await recorder.stop()
    assert batches == [600]
    stored = {r.id: r for r in await all_records(database)}
    assert len(stored) == 200
    for n, call_id in enumerate(calls):
        r = stored[call_id]
        assert (r.started_at, r.answered_at, r.ended_at) == (at(n), at(n + 1), at(n + 11))
        assert (r.status, r.talk_seconds) == ("answered", 10)


async def test_stop_writes_what_is_queued(database: Database) -> None:
    recorder = CallRecorder(database)
    recorder.start()
    ringing = begin(recorder)
    done = begin(recorder)
    end(recorder, done, at(3), "cancelled", "caller", "CANCEL")
    await recorder.stop()  # no flush first
    assert (await record(database, ringing)).status == "in_progress"
    assert (await record(database, done)).status == "cancelled"


async def test_a_failed_write_is_retried_and_nothing_is_lost(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = CallRecorder(database, retry_after=0.2)
    write = recorder._write
    failures: list[int] = []

    async def fails_once(batch: list[object]) -> None:
        if not failures:
            failures.append(len(batch))
            raise ConnectionError("database went away")
        await write(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(recorder, "_write", fails_once)
    recorder.start()
    first = begin(recorder)
    recorder.answered(first, at(1))
    await until(lambda: bool(failures))
    # Changes queued while the failed batch waits for its retry follow it.
    end(recorder, first, at(21), "answered", "callee", "BYE", answered_at=at(1))
    second = begin(recorder, at=at(30))
    await recorder.flush()
    await recorder.stop()
    assert failures == [2]
    one, two = await record(database, first), await record(database, second)
    assert (one.status, one.answered_at, one.talk_seconds) == ("answered", at(1), 20)
    assert (two.status, two.started_at) == ("in_progress", at(30))


async def test_a_record_the_database_refuses_does_not_hold_back_the_others(
    database: Database, recorder: CallRecorder
) -> None:
    # A line deleted while its call rang: the record's reference is refused.
    orphan = begin(recorder, internal_line_id=999_999)
    after = begin(recorder, at=at(5))
    end(recorder, after, at(9), "missed", "system", "ring timeout")
    await asyncio.wait_for(recorder.flush(), 10)
    kept = await record(database, orphan)
    assert (kept.internal_line_id, kept.status) == (None, "in_progress")
    assert (await record(database, after)).status == "missed"


# --- identification -----------------------------------------------------------


async def _contacts(database: Database, *names: str) -> list[int]:
    async with database.session() as session:
        contacts = [Contact(name=name) for name in names]
        session.add_all(contacts)
        await session.commit()
        return [contact.id for contact in contacts]


async def test_the_client_number_and_the_one_matching_card_ride_on_the_record(
    database: Database, recorder: CallRecorder
) -> None:
    [anna] = await _contacts(database, "Anna")
    call_id = begin(recorder, direction="incoming", client_number="+79161234567")
    recorder.identified(call_id, card=("contact", anna))
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.client_number, stored.contact_id) == ("+79161234567", anna)
    assert (stored.account_id, stored.lead_id, stored.matches) == (None, None, None)


async def test_several_matches_are_listed_and_none_linked(
    database: Database, recorder: CallRecorder
) -> None:
    anna, boris = await _contacts(database, "Anna", "Boris")
    matches: list[dict[str, object]] = [
        {"type": "contact", "id": anna, "name": "Anna"},
        {"type": "contact", "id": boris, "name": "Boris"},
    ]
    call_id = begin(recorder, direction="incoming", client_number="+79161234567")
    recorder.identified(call_id, card=None, matches=matches)
    await recorder.flush()
    stored = await record(database, call_id)
    assert stored.matches == matches
    assert (stored.contact_id, stored.account_id, stored.lead_id) == (None, None, None)


async def test_an_identification_after_the_end_is_still_written(
    database: Database, recorder: CallRecorder
) -> None:
    [anna] = await _contacts(database, "Anna")
    call_id = begin(recorder, direction="incoming", client_number="+79161234567")
    end(recorder, call_id, at(2), "cancelled", "caller", "CANCEL")
    await recorder.flush()
    recorder.identified(call_id, card=("contact", anna))
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.status, stored.contact_id) == ("cancelled", anna)


async def test_a_card_an_employee_linked_first_is_kept(
    database: Database, recorder: CallRecorder
) -> None:
    anna, boris = await _contacts(database, "Anna", "Boris")
    call_id = begin(recorder, direction="incoming", client_number="+79161234567")
    await recorder.flush()
    async with database.session() as session:  # as POST /calls/{id}/link does
        linked = await session.get(CallRecord, call_id)
        assert linked is not None
        linked.contact_id = boris
        await session.commit()
    recorder.identified(call_id, card=("contact", anna))
    recorder.identified(call_id, card=None, matches=None)  # nothing found: nothing written
    await recorder.flush()
    assert (await record(database, call_id)).contact_id == boris


def test_an_unknown_card_type_is_refused(recorder: CallRecorder) -> None:
    with pytest.raises(ValueError, match="'employee'"):
        recorder.identified("x", card=("employee", 1))


async def test_a_contacts_call_carries_the_contacts_account(
    database: Database, recorder: CallRecorder
) -> None:
    async with database.session() as session:
        account = Account(name="Acme")
        session.add(account)
        await session.flush()
        contact = Contact(name="Anna", account_id=account.id)
        session.add(contact)
        await session.commit()
    call_id = begin(recorder, direction="incoming", client_number="+79161234567")
    recorder.identified(call_id, card=("contact", contact.id))
    await recorder.flush()
    stored = await record(database, call_id)
    assert (stored.contact_id, stored.account_id) == (contact.id, account.id)


# --- values the database cannot hold --------------------------------------------


def _unreachable(database: Database) -> Database:
    """A database of the same kind that cannot be reached: connection
    refused on PostgreSQL, a file in a missing folder on SQLite."""
    if database.engine.dialect.name == "postgresql":
        return Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    return Database("sqlite+aiosqlite:////nonexistent-folder/callbridge.db")


async def test_a_record_with_values_the_database_cannot_hold_is_fitted_not_lost(
    database: Database, recorder: CallRecorder
) -> None:
    # What the SIP edge refuses, had it slipped past: too long for PostgreSQL,
    # a NUL PostgreSQL refuses, a byte that was not UTF-8 neither can encode.
    hostile = begin(
        recorder,
        caller_raw="\x00" + "9" * 300,
        callee_raw="bad\udcffbyte",
        sip_call_id="c" * 300,
    )
    recorder.begin(at=at(1), caller_number="+" + "7" * 40, callee_number="102")
    after = begin(recorder, at=at(5))
    await asyncio.wait_for(recorder.flush(), 10)
    kept = await record(database, hostile)
    assert kept.caller_raw == "\ufffd" + "9" * 254
    assert (kept.callee_raw, kept.sip_call_id) == ("bad\ufffdbyte", "c" * 255)
    assert len(await all_records(database)) == 3
    assert (await record(database, after)).status == "in_progress"
    assert recorder.dropped == 0


async def test_a_change_refused_even_alone_is_dropped_counted_and_the_rest_written(
    database: Database, recorder: CallRecorder
) -> None:
    first, second = begin(recorder), begin(recorder, at=at(1))
    await asyncio.wait_for(recorder.flush(), 10)
    # A card deleted while it was being linked: the reference is refused.
    recorder.identified(first, card=("contact", 999_999))
    end(recorder, first, at(9), "failed", "system", "cause \udcff not UTF-8" + "x" * 200)
    end(recorder, second, at(9), "missed", "system", "ring timeout")
    third = begin(recorder, at=at(10))
    await asyncio.wait_for(recorder.flush(), 10)
    assert recorder.dropped == 1
    closed = await record(database, first)
    assert (closed.status, closed.contact_id) == ("failed", None)
    assert closed.hangup_cause == "cause \ufffd not UTF-8" + "x" * 111
    assert (await record(database, second)).status == "missed"
    assert (await record(database, third)).status == "in_progress"


async def test_a_database_that_cannot_be_reached_is_waited_for_nothing_dropped(
    database: Database,
) -> None:
    down = _unreachable(database)
    recorder = CallRecorder(down, retry_after=0.01, gather=0)
    recorder.start()
    try:
        call = begin(recorder)
        end(recorder, call, at(9), "missed", "system", "ring timeout")
        await asyncio.sleep(0.3)  # several failed attempts
        assert recorder.dropped == 0
        recorder.database = database  # the database is back
        await asyncio.wait_for(recorder.flush(), 40)
    finally:
        await recorder.stop()
        await down.close()
    assert (await record(database, call)).status == "missed"
    assert recorder.dropped == 0
