"""Recordings in the call records: which calls are recorded, a file's path
and completion reaching its record, the start-up recovery of files a crash
left open, the retention sweep and removal; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callbridge.media.g711 import pcmu_encode
from callbridge.media.recorder import FRAME_BYTES, HEADER_SIZE, RATE, Recorded, wav_header
from callbridge.pbx.calls import CallRecorder
from callbridge.pbx.recordings import (
    Recordings,
    expire,
    file_of,
    is_recorded,
    recover,
    relative_path,
    remove,
)
from callbridge.store import Database
from callbridge.store.models import CallRecord

from .test_media_recorder import PCMU, FakeLeg, rtp, tone

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("choices", "default", "recorded"),
    [
        ((), True, True),
        ((), False, False),
        ((None, None), True, True),
        ((None, True), False, True),
        ((True, False), True, False),  # a line that says no wins
        ((False,), True, False),
        ((None, None, None, None), False, False),
    ],
)
def test_a_call_is_recorded_as_its_lines_and_the_setting_say(
    choices: tuple[bool | None, ...], default: bool, recorded: bool
) -> None:
    assert is_recorded(choices, default) is recorded


def test_paths_are_made_from_the_call_id_and_date_only(tmp_path: Path) -> None:
    call_id = uuid.uuid4().hex
    relative = relative_path(call_id, T0)
    assert relative == f"2026/12/07/{call_id}.wav"
    assert file_of(tmp_path, relative) == tmp_path / relative
    for forged in ("../../etc/passwd", "/etc/passwd", f"2026/12/07/../{call_id}.wav", "a.wav"):
        assert file_of(tmp_path, forged) is None


@pytest.fixture
async def calls(database: Database) -> AsyncIterator[CallRecorder]:
    running = CallRecorder(database, retry_after=0.01, gather=0)
    running.start()
    try:
        yield running
    finally:
        await running.stop()


def begin(calls: CallRecorder, at: datetime = T0) -> str:
    return calls.begin(at=at, caller_number="+15551230000", callee_number="101")


async def record_of(database: Database, call_id: str) -> CallRecord:
    async with database.session() as session:
        record = await session.get(CallRecord, call_id)
        assert record is not None
        return record


@dataclass
class Plan:
    direction: str = "incoming"
    started: datetime = T0
    recording_choices: tuple[bool | None, ...] = ()


async def test_a_recorded_call_points_to_its_file_once_complete(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    recordings = Recordings(tmp_path, calls, enabled=True)
    call_id = begin(calls)
    caller, callee = FakeLeg(PCMU), FakeLeg(PCMU)
    recording = recordings.start(call_id, Plan(), caller=caller, callee=callee)
    assert recording is not None
    await calls.flush()
    started = await record_of(database, call_id)
    assert started.recording == f"2026/12/07/{call_id}.wav"
    assert started.recording_size is None  # being written
    for n in range(10):
        caller.receive(rtp(n, n * 160, pcmu_encode(tone(1000, 160, n * 160))))
    await asyncio.sleep(0.1)
    recordings.stop(recording, caller, callee)
    await recordings.close()
    await asyncio.sleep(0)
    await calls.flush()
    done = await record_of(database, call_id)
    assert done.recording == started.recording
    assert done.recording_size == (tmp_path / started.recording).stat().st_size
    assert done.recording_ms is not None and 100 <= done.recording_ms <= 1000
    with wave.open(str(tmp_path / started.recording)) as read:
        assert read.getnframes() * 1000 // RATE == done.recording_ms


async def test_the_customer_is_left_in_an_outgoing_call(
    calls: CallRecorder, tmp_path: Path
) -> None:
    recordings = Recordings(tmp_path, calls, enabled=True)
    caller, callee = FakeLeg(PCMU), FakeLeg(PCMU)
    recording = recordings.start(
        begin(calls), Plan(direction="outgoing"), caller=caller, callee=callee
    )
    assert recording is not None
    assert callee.taps == [recording.taps[0]] and caller.taps == [recording.taps[1]]
    await recordings.close()


async def test_a_call_its_line_refuses_is_not_recorded(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    recordings = Recordings(tmp_path, calls, enabled=True)
    call_id = begin(calls)
    caller, callee = FakeLeg(PCMU), FakeLeg(PCMU)
    plan = Plan(recording_choices=(None, False))
    assert recordings.start(call_id, plan, caller=caller, callee=callee) is None
    assert caller.taps == [] and callee.taps == []
    await calls.flush()
    assert (await record_of(database, call_id)).recording is None
    await recordings.close()


async def test_a_recording_that_could_not_be_written_leaves_no_pointer(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    recordings = Recordings(tmp_path, calls, enabled=True)
    call_id = begin(calls)
    recordings.start(call_id, Plan(), caller=FakeLeg(PCMU), callee=FakeLeg(PCMU))
    recordings.finished(call_id, None)
    await calls.flush()
    assert (await record_of(database, call_id)).recording is None
    await recordings.close()


async def test_recovery_completes_what_a_crash_left_being_written(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    killed, gone, other = begin(calls), begin(calls), begin(calls)
    for call_id in (killed, gone, other):
        calls.recording(call_id, relative_path(call_id, T0))
    done = begin(calls)
    calls.recording(done, relative_path(done, T0), size=HEADER_SIZE, ms=0)
    await calls.flush()
    path = tmp_path / relative_path(killed, T0)
    path.parent.mkdir(parents=True)
    # Two seconds appended, the header written when one was.
    path.write_bytes(wav_header(RATE * FRAME_BYTES) + bytes(2 * RATE * FRAME_BYTES + 1))
    (tmp_path / relative_path(other, T0)).write_text("not a recording")
    assert await recover(database, tmp_path) == 3
    record = await record_of(database, killed)
    assert (record.recording_size, record.recording_ms) == (path.stat().st_size, 2000)
    with wave.open(str(path)) as read:
        assert read.getnframes() == 2 * RATE
    for call_id in (gone, other):  # no file, or not ours: no pointer
        assert (await record_of(database, call_id)).recording is None
    assert (await record_of(database, done)).recording_size == HEADER_SIZE  # untouched
    assert await recover(database, tmp_path) == 0


async def test_old_recordings_expire_with_their_files(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    old, new = begin(calls, T0 - timedelta(days=40)), begin(calls, T0)
    in_progress = begin(calls, T0 - timedelta(days=40))
    for call_id, at in ((old, T0 - timedelta(days=40)), (new, T0)):
        relative = relative_path(call_id, at)
        calls.recording(call_id, relative, size=HEADER_SIZE, ms=0)
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(wav_header(0))
    calls.recording(in_progress, relative_path(in_progress, T0))
    await calls.flush()
    assert await expire(database, tmp_path, T0 - timedelta(days=30)) == 1
    assert (await record_of(database, old)).recording is None
    assert not (tmp_path / relative_path(old, T0 - timedelta(days=40))).exists()
    assert (await record_of(database, new)).recording is not None
    assert (tmp_path / relative_path(new, T0)).exists()
    assert (await record_of(database, in_progress)).recording is not None


async def test_removing_a_recording_deletes_the_file_and_the_pointer(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    call_id = begin(calls)
    relative = relative_path(call_id, T0)
    calls.recording(call_id, relative, size=HEADER_SIZE, ms=0)
    await calls.flush()
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_bytes(wav_header(0))
    assert await remove(database, tmp_path, call_id)
    assert not (tmp_path / relative).exists()
    record = await record_of(database, call_id)
    assert (record.recording, record.recording_size, record.recording_ms) == (None, None, None)
    assert not await remove(database, tmp_path, call_id)


async def test_the_end_of_a_short_call_and_its_recording_share_a_batch(
    database: Database, tmp_path: Path
) -> None:
    calls = CallRecorder(database, retry_after=0.01)  # gathering: one batch
    calls.start()
    try:
        call_id = begin(calls)
        calls.recording(call_id, relative_path(call_id, T0))
        calls.recording(call_id, relative_path(call_id, T0), size=1044, ms=125)
        await asyncio.sleep(0)
        await calls.flush()
    finally:
        await calls.stop()
    record = await record_of(database, call_id)
    assert (record.recording_size, record.recording_ms) == (1044, 125)
    async with database.session() as session:
        assert await session.scalar(select(CallRecord.recording)) == relative_path(call_id, T0)


def test_recorded_reports_seconds() -> None:
    assert Recorded(HEADER_SIZE + 4 * RATE, RATE).seconds == 1.0


def test_a_plan_offers_the_choice_of_every_line_it_involves() -> None:
    from dataclasses import replace

    from callbridge.pbx.call import Plan as CallPlan
    from callbridge.pbx.lines import Line
    from callbridge.pbx.trunks import Trunk

    plan = CallPlan(
        tag="t", started=T0, direction="incoming", caller_number="+1555", callee_number="101"
    )
    assert plan.recording_choices == ()
    line = Line(number="101", username="alice", ha1={}, recording=False)
    trunk = Trunk(id=1, code="trunk", host="192.0.2.1", recording=True)
    both = replace(plan, callee_line=line, trunk_in=trunk)
    assert both.recording_choices == (False, True)
    assert not is_recorded(both.recording_choices, True)


async def test_the_retention_task_sweeps_at_start_and_then_periodically(
    database: Database, calls: CallRecorder, tmp_path: Path
) -> None:
    from callbridge.pbx.recordings import keep_for

    old = begin(calls, T0 - timedelta(days=10))
    calls.recording(old, relative_path(old, T0 - timedelta(days=10)), size=HEADER_SIZE, ms=0)
    await calls.flush()
    now = [T0]
    task = asyncio.create_task(
        keep_for(database, tmp_path, 30, wallclock=lambda: now[0], every=0.01)
    )
    try:
        await asyncio.sleep(0.1)
        assert (await record_of(database, old)).recording is not None  # 10 days: kept
        now[0] = T0 + timedelta(days=25)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if (await record_of(database, old)).recording is None:
                break
        assert (await record_of(database, old)).recording is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
