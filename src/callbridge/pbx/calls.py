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

from sqlalchemy import String, Table, bindparam, func, insert, select, update

from ..logs import log_event
from ..store import Database, refused_rows
from ..store.models import CALL_DIRECTIONS, CALL_STATUSES, HANGUP_SIDES, CallRecord, Contact
from .bounds import CAUSE_MAX, printable

logger = logging.getLogger("callbridge.calls")

_END_COLUMNS = (
    "ended_at",
    "status",
    "hangup_side",
    "hangup_cause",
    "talk_seconds",
    "hold_seconds",
)
_CARD_COLUMNS = ("contact_id", "account_id", "lead_id", "matches")
# What the recorder queues: a new record, or (kind, record id, column values)
# with kind "answer", "end", "identify" or "recording".
_Change = CallRecord | tuple[str, str, dict[str, object]]

INTERRUPTED = "interrupted by restart"
# How a call can end: every status but the one a call has while it lasts.
END_STATUSES = tuple(status for status in CALL_STATUSES if status != "in_progress")


def talk_seconds(answered_at: datetime | None, ended_at: datetime) -> int:
    """Whole seconds from the answer to the end (0 for a call never answered)."""
    if answered_at is None:
        return 0
    return max(0, round((ended_at - answered_at) / timedelta(seconds=1)))


def fitted(record: CallRecord) -> CallRecord:
    """`record` with every text made printable and cut to its column."""
    for column in _CALLS.c:
        value = getattr(record, column.key)
        if isinstance(value, str) and isinstance(column.type, String):
            setattr(record, column.key, printable(value, column.type.length or len(value)))
    return record


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
    last 50 ms or so of changes, and the next start closes whatever it
    left in progress as failed (`close_interrupted`). A write the database
    fails (down, restarting) is retried with a growing pause, never dropped
    while the process lives; a change it refuses is written alone, a record
    cut to fit its columns, and only what it still refuses is dropped and
    counted (`dropped`), so one bad row never holds back the rest.
    """

    def __init__(
        self, database: Database, *, retry_after: float = 0.5, gather: float = 0.05
    ) -> None:
        self.database = database
        self.retry_after = retry_after
        self.gather = gather
        self._pending: list[_Change] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Changes the database refused even alone: logged and counted.
        self.dropped = 0

    def begin(
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
        client_number: str | None = None,
    ) -> str:
        """Queue the record of a call that starts `at`; returns its id.
        `client_number` is the customer's (None for an internal call)."""
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
            hold_seconds=0,
            status="in_progress",
            sip_call_id=sip_call_id,
            client_number=client_number,
        )
        self._queue(record)
        return record.id

    def answered(self, call_id: str, at: datetime) -> None:
        """The call was answered `at`; a later answer (another device's 200)
        does not move the time: only the first answer of a call in progress
        is written."""
        self._queue(("answer", call_id, {"answered_at": _aware("at", at)}))

    def identified(
        self,
        call_id: str,
        *,
        card: tuple[str, int] | None,
        matches: list[dict[str, object]] | None = None,
    ) -> None:
        """The customer's number was looked up: `card` (type, id) is the one
        card it matched, linked to the call; several candidates are kept in
        `matches` instead, none linked. Written whatever the call's state, as
        a lookup may finish after a short call has ended. A lookup that
        matched nothing writes nothing, and none overrides a card an employee
        linked first (`POST /calls/{id}/link`, a card created during the call)."""
        if card is None and not matches:
            return
        values: dict[str, object] = dict.fromkeys(_CARD_COLUMNS)
        if card is not None:
            kind, card_id = card
            if kind not in ("contact", "account", "lead"):
                raise ValueError(f"card type {kind!r} is not one of contact, account, lead")
            values[f"{kind}_id"] = card_id
        elif matches:
            values["matches"] = matches
        self._queue(("identify", call_id, values))

    def recording(
        self, call_id: str, path: str | None, *, size: int | None = None, ms: int | None = None
    ) -> None:
        """The call's recording: `path` (under the recordings directory) when
        it starts, with its `size` and length in `ms` once complete; a None
        `path` says there is none (it could not be written, or was removed).
        Written whatever the call's state: a file completes after its call."""
        values: dict[str, object] = {
            "recording": path,
            "recording_size": size,
            "recording_ms": ms,
        }
        self._queue(("recording", call_id, values))

    def ended(
        self,
        call_id: str,
        *,
        at: datetime,
        answered_at: datetime | None,
        status: str,
        hangup_side: str | None,
        hangup_cause: str | None,
        hold_seconds: int = 0,
    ) -> None:
        """Close the record: `status` one of END_STATUSES; the talk time runs
        from `answered_at` (the caller's own note of it) to `at`, and
        `hold_seconds` of it were spent on hold (the call logic's sum; a
        whole number, at most the talk time). A call already closed is not
        closed again: the change is dropped when written."""
        _aware("at", at)
        if answered_at is not None:
            _aware("answered_at", answered_at)
        _one_of("status", status, END_STATUSES)
        if hangup_side is not None:
            _one_of("hangup_side", hangup_side, HANGUP_SIDES)
        if status == "answered" and answered_at is None:
            raise ValueError(f"status 'answered': call {call_id!r} was never answered")
        if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int) or hold_seconds < 0:
            raise ValueError(f"hold_seconds {hold_seconds!r} is not a whole number of seconds")
        talk = talk_seconds(answered_at, at)
        self._queue(
            (
                "end",
                call_id,
                {
                    "ended_at": at,
                    "status": status,
                    "hangup_side": hangup_side,
                    "hangup_cause": None
                    if hangup_cause is None
                    else printable(hangup_cause, CAUSE_MAX),
                    "talk_seconds": talk,
                    # Rounding the two apart must not make the hold the longer.
                    "hold_seconds": min(hold_seconds, talk),
                },
            )
        )

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

    def _queue(self, change: _Change) -> None:
        self._pending.append(change)
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        pause = self.retry_after
        while True:
            await self._wakeup.wait()
            if not self._stopping and self.gather > 0:
                # Let a busy moment's changes pile up: one transaction for
                # many calls costs far less than one each.
                await asyncio.sleep(self.gather)
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                left = await self._write_all(batch)
                if not left:
                    pause = self.retry_after
                    continue
                self._pending[:0] = left
                if self._stopping:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
            self._idle.set()
            if self._stopping:
                return

    async def _write_all(self, batch: list[_Change]) -> list[_Change]:
        """Write `batch`; returns what is left for when the database is back.
        A change the database refuses (a line deleted mid-call, a value it
        cannot hold) must not hold back every call after it."""
        try:
            await self._write(batch)
        except Exception as error:
            if not refused_rows(error):
                logger.exception("calls.write_failed changes=%d", len(batch))
                return batch
            return await self._write_one_by_one(batch)
        return []

    async def _write_one_by_one(self, batch: list[_Change]) -> list[_Change]:
        """Write each change alone, setting aside those the database refuses;
        returns those left when the database itself fails."""
        for index, change in enumerate(batch):
            try:
                await self._write_alone(change)
            except Exception as error:
                if not refused_rows(error):
                    logger.exception("calls.write_failed changes=%d", len(batch) - index)
                    return batch[index:]
                self.dropped += 1
                log_event(
                    logger, logging.ERROR, "calls.change_dropped", change=repr(change), error=error
                )
        return []

    async def _write_alone(self, change: _Change) -> None:
        """Write one change; a record the database refuses is written again
        without its references to the line and employee (deleted since),
        then cut to fit its columns, rather than lost."""
        try:
            await self._write([change])
        except Exception as error:
            if not isinstance(change, CallRecord) or not refused_rows(error):
                raise
            if change.internal_line_id is not None or change.employee_id is not None:
                logger.warning("calls.references_dropped id=%s error=%s", change.id, error)
                change.internal_line_id = change.employee_id = None
                await self._write_alone(change)
                return
            log_event(logger, logging.WARNING, "calls.record_fitted", id=change.id, error=error)
            await self._write([fitted(change)])

    async def _write(self, batch: list[_Change]) -> None:
        """One transaction, at most five executemany statements: the inserts,
        then the answers, then the ends, then the identifications, then the
        recordings. Grouped by
        kind the changes keep their meaning, since a record is begun,
        answered and ended in that order, an identification changes only
        the card columns whenever it comes, and within a kind the first
        change of a record wins."""
        table = _CALLS
        inserts = [
            {column.key: getattr(change, column.key) for column in table.c}
            for change in batch
            if isinstance(change, CallRecord)
        ]
        answers: list[dict[str, object]] = []
        ends: list[dict[str, object]] = []
        identities: list[dict[str, object]] = []
        recordings: list[dict[str, object]] = []
        ended: set[str] = set()
        for change in batch:
            if isinstance(change, tuple):
                kind, call_id, values = change
                if kind == "end":
                    ends.append({"_id": call_id, **values})
                    ended.add(call_id)
                elif kind == "identify":
                    identities.append({"_id": call_id, **values})
                elif kind == "recording":
                    recordings.append({"_id": call_id, **values})
                elif call_id not in ended:  # an answer after the end is too late
                    answers.append({"_id": call_id, **values})
        async with self.database.session() as session:
            if inserts:
                await session.execute(_INSERT, inserts)
            if answers:
                await session.execute(_ANSWER, answers)
            if ends:
                await session.execute(_END, ends)
            if identities:
                await session.execute(_IDENTIFY, identities)
            if recordings:  # in order: a short call's start and end may share a batch
                await session.execute(_RECORDING, recordings)
            await session.commit()


_CALLS: Table = CallRecord.__table__  # type: ignore[assignment]
_OPEN = (_CALLS.c.id == bindparam("_id"), _CALLS.c.status == "in_progress")
# Built once: the batches execute them with many parameter sets each.
_INSERT = insert(_CALLS)
_ANSWER = (
    update(_CALLS)
    .where(*_OPEN, _CALLS.c.answered_at.is_(None))
    .values(answered_at=bindparam("answered_at"))
)
_END = update(_CALLS).where(*_OPEN).values({key: bindparam(key) for key in _END_COLUMNS})
_RECORDING = (
    update(_CALLS)
    .where(_CALLS.c.id == bindparam("_id"))
    .values({key: bindparam(key) for key in ("recording", "recording_size", "recording_ms")})
)
_IDENTIFY = (
    update(_CALLS)
    .where(
        _CALLS.c.id == bindparam("_id"),
        *(_CALLS.c[key].is_(None) for key in ("contact_id", "account_id", "lead_id")),
    )
    .values(
        {
            **{key: bindparam(key) for key in _CARD_COLUMNS if key != "account_id"},
            # A contact's call also carries the contact's account, so the
            # account's history is one index range (crm.history).
            "account_id": func.coalesce(
                bindparam("account_id"),
                select(Contact.account_id)
                .where(Contact.id == bindparam("contact_id"))
                .scalar_subquery(),
            ),
        }
    )
)
