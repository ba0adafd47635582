"""Call records as the B2BUA writes them: a record is started when the call
starts (so a crash leaves a trace), marked when answered, closed when it ends;
at start-up the records a crash left open are closed as failed.

Every time is passed in, timezone-aware; nothing here reads a clock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ..store import Database
from ..store.models import CALL_DIRECTIONS, CALL_STATUSES, HANGUP_SIDES, CallRecord

logger = logging.getLogger("callbridge.calls")

INTERRUPTED = "interrupted by restart"
# How a call can end: every status but the one a call has while it lasts.
END_STATUSES = tuple(status for status in CALL_STATUSES if status != "in_progress")


class UnknownCall(LookupError):
    """No call record has this id."""

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call record {call_id!r}")
        self.call_id = call_id


class CallLog:
    """The calls table, seen as the life of a call."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def start(
        self,
        *,
        at: datetime,
        caller_number: str,
        callee_number: str,
        direction: str = "internal",
        caller_raw: str | None = None,
        callee_raw: str | None = None,
        internal_line_id: int | None = None,
        employee_id: int | None = None,
        sip_call_id: str | None = None,
    ) -> str:
        """Write the record of a call that starts `at`; returns its id."""
        _one_of("direction", direction, CALL_DIRECTIONS)
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction=direction,
            caller_number=caller_number,
            callee_number=callee_number,
            caller_raw=caller_raw,
            callee_raw=callee_raw,
            internal_line_id=internal_line_id,
            employee_id=employee_id,
            started_at=_aware("at", at),
            talk_seconds=0,
            status="in_progress",
            sip_call_id=sip_call_id,
        )
        async with self.database.session() as session:
            session.add(record)
            await session.commit()
        return record.id

    async def answered(self, call_id: str, at: datetime) -> None:
        """The call was answered `at`; a later answer (another device's 200)
        does not move the time."""
        _aware("at", at)
        async with self.database.session() as session:
            record = await _get(session, call_id)
            if record.answered_at is None and record.status == "in_progress":
                record.answered_at = at
                await session.commit()

    async def ended(
        self,
        call_id: str,
        at: datetime,
        status: str,
        hangup_side: str | None,
        hangup_cause: str | None,
    ) -> bool:
        """Close the call `at` with `status`; talk time runs from the answer
        to `at`. Returns False, changing nothing, when it was already closed."""
        _aware("at", at)
        _one_of("status", status, END_STATUSES)
        if hangup_side is not None:
            _one_of("hangup_side", hangup_side, HANGUP_SIDES)
        async with self.database.session() as session:
            record = await _get(session, call_id)
            if record.status != "in_progress":
                return False
            if status == "answered" and record.answered_at is None:
                raise ValueError(f"status 'answered': call {call_id!r} was never answered")
            record.ended_at = at
            record.status = status
            record.hangup_side = hangup_side
            record.hangup_cause = hangup_cause
            record.talk_seconds = _talk_seconds(record.answered_at, at)
            await session.commit()
        return True

    async def close_interrupted(self, at: datetime) -> int:
        """Close every call still in progress as failed, interrupted by a
        restart (called at start-up, before any call); returns how many.

        `ended_at` is `at`, the moment they were closed: when the process died
        is not known, so the talk time is not invented either (0)."""
        _aware("at", at)
        async with self.database.session() as session:
            result = await session.execute(
                update(CallRecord)
                .where(CallRecord.status == "in_progress")
                .values(
                    status="failed",
                    ended_at=at,
                    talk_seconds=0,
                    hangup_side="system",
                    hangup_cause=INTERRUPTED,
                )
            )
            await session.commit()
        count: int = result.rowcount  # type: ignore[attr-defined]
        return count


async def _get(session: AsyncSession, call_id: str) -> CallRecord:
    record = await session.get(CallRecord, call_id)
    if record is None:
        raise UnknownCall(call_id)
    return record


def _talk_seconds(answered_at: datetime | None, ended_at: datetime) -> int:
    if answered_at is None:
        return 0
    return max(0, round((ended_at - answered_at) / timedelta(seconds=1)))


def _aware(name: str, at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} {at.isoformat()!r} has no timezone; pass UTC")
    return at


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")


class CallRecorder:
    """Write-behind call records for the B2BUA: `begin`, `answered` and
    `ended` return at once and never touch the call's signalling path; one
    background task writes what has piled up in one transaction, in order.

    A record is begun the moment its call is, so a crash loses at most the
    last few milliseconds of changes, and the next start closes whatever it
    left in progress as failed (`CallLog.close_interrupted`). A failed write
    is retried with a growing pause, never dropped while the process lives.
    """

    def __init__(self, database: Database, *, retry_after: float = 0.5) -> None:
        self.database = database
        self.retry_after = retry_after
        self._pending: list[CallRecord | tuple[str, dict[str, object]]] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def begin(
        self,
        *,
        at: datetime,
        caller_number: str,
        callee_number: str,
        direction: str = "internal",
        internal_line_id: int | None = None,
        employee_id: int | None = None,
        sip_call_id: str | None = None,
    ) -> str:
        """Queue the record of a call that starts `at`; returns its id."""
        _one_of("direction", direction, CALL_DIRECTIONS)
        record = CallRecord(
            id=uuid.uuid4().hex,
            direction=direction,
            caller_number=caller_number,
            callee_number=callee_number,
            internal_line_id=internal_line_id,
            employee_id=employee_id,
            started_at=_aware("at", at),
            talk_seconds=0,
            status="in_progress",
            sip_call_id=sip_call_id,
        )
        self._queue(record)
        return record.id

    def answered(self, call_id: str, at: datetime) -> None:
        self._queue((call_id, {"answered_at": _aware("at", at)}))

    def ended(
        self,
        call_id: str,
        *,
        at: datetime,
        answered_at: datetime | None,
        status: str,
        hangup_side: str | None,
        hangup_cause: str | None,
    ) -> None:
        """Close the record: `status` one of END_STATUSES; the talk time runs
        from `answered_at` (the caller's own note of it) to `at`."""
        _one_of("status", status, END_STATUSES)
        if hangup_side is not None:
            _one_of("hangup_side", hangup_side, HANGUP_SIDES)
        self._queue(
            (
                call_id,
                {
                    "ended_at": _aware("at", at),
                    "status": status,
                    "hangup_side": hangup_side,
                    "hangup_cause": hangup_cause,
                    "talk_seconds": _talk_seconds(answered_at, at),
                },
            )
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-recorder")

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _queue(self, change: CallRecord | tuple[str, dict[str, object]]) -> None:
        self._pending.append(change)
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        pause = self.retry_after
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._write(batch)
                    pause = self.retry_after
                except Exception:
                    logger.exception("calls.write_failed changes=%d", len(batch))
                    self._pending[:0] = batch
                    if self._stopping:
                        return
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 30.0)
            self._idle.set()
            if self._stopping:
                return

    async def _write(self, batch: list[CallRecord | tuple[str, dict[str, object]]]) -> None:
        async with self.database.session() as session:
            # Inserts first: every update in a batch follows its record's insert.
            session.add_all(
                [
                    CallRecord(**{c.key: getattr(change, c.key) for c in CallRecord.__table__.c})
                    for change in batch
                    if isinstance(change, CallRecord)
                ]
            )
            await session.flush()
            for change in batch:
                if isinstance(change, tuple):
                    call_id, values = change
                    await session.execute(
                        update(CallRecord)
                        .where(CallRecord.id == call_id, CallRecord.status == "in_progress")
                        .values(**values)
                    )
            await session.commit()
