"""Which calls are recorded, and each recording's life in its call record:
started at the answer, completed after the end, completed at the next start
after a crash, removed after the retention period or by an admin.

The files themselves are `media.recorder`'s. A call's record points at its
file by a path relative to the recordings directory, made here from the
call's id and date only (`2026/12/07/<id>.wav`): no path comes from a
request or a peer, and `file_of` refuses any stored value of another shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select, update

from ..logs import log_event
from ..media.engine import Leg
from ..media.recorder import RATE, Recorded, Recorder, Recording, RecordingError, finalize_wav
from ..store import Database
from ..store.models import CallRecord
from .calls import CallRecorder

logger = logging.getLogger("callbridge.recordings")

_RELATIVE = re.compile(r"\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.wav")
# Records handled per statement by the start-up recovery and the retention sweep.
_BATCH = 500
RETENTION_CHECK = 3600.0


def is_recorded(choices: Iterable[bool | None], default: bool) -> bool:
    """Whether a call is recorded, from the choices of the lines it involves
    (internal and external; None: no choice): any line that says no wins
    (a line that must never be recorded is not, whoever it talks to), then
    any that says yes, then the global setting."""
    seen = set(choices)
    if False in seen:
        return False
    return True if True in seen else default


def relative_path(call_id: str, started: datetime) -> str:
    return f"{started:%Y/%m/%d}/{call_id}.wav"


def file_of(directory: Path, relative: str) -> Path | None:
    """The file a record's `recording` names, or None for a value that is
    not one this module writes (nothing outside the directory is ever read)."""
    if not _RELATIVE.fullmatch(relative):
        return None
    return directory / relative


class CallPlan(Protocol):
    """What recording needs of a call's plan (`b2bua.Plan`)."""

    @property
    def direction(self) -> str: ...

    @property
    def started(self) -> datetime: ...

    @property
    def recording_choices(self) -> Iterable[bool | None]: ...


class Recordings:
    """The B2BUA's side of recording: `start` when a call is answered,
    `stop` when it ends; each file's completion reaches its record through
    the `CallRecorder` (write-behind, like every change to a record)."""

    def __init__(
        self,
        directory: Path,
        calls: CallRecorder,
        *,
        enabled: bool,
        recorder: Recorder | None = None,
    ) -> None:
        self.directory = directory
        self.calls = calls
        self.enabled = enabled
        self._loop = asyncio.get_running_loop()
        self._paths: dict[str, str] = {}
        self.recorder = recorder or Recorder(directory, self._finished_in_thread)

    def start(self, call_id: str, plan: CallPlan, *, caller: Leg, callee: Leg) -> Recording | None:
        """Record the call, if its lines and the setting say so: the customer
        (the external party; in an internal call the caller) on the left
        channel, the employee on the right."""
        if not is_recorded(plan.recording_choices, self.enabled):
            return None
        customer, employee = (callee, caller) if plan.direction == "outgoing" else (caller, callee)
        relative = relative_path(call_id, plan.started)
        self.calls.recording(call_id, relative)
        self._paths[call_id] = relative
        log_event(logger, logging.DEBUG, "recording.started", call_id=call_id)
        return self.recorder.record(call_id, relative, customer, employee)

    def stop(self, recording: Recording, *legs: Leg | None) -> None:
        self.recorder.stop(recording, legs)

    def _finished_in_thread(self, call_id: str, recorded: Recorded | None) -> None:
        self._loop.call_soon_threadsafe(self.finished, call_id, recorded)

    def finished(self, call_id: str, recorded: Recorded | None) -> None:
        relative = self._paths.pop(call_id, None)
        if recorded is None or relative is None:
            self.calls.recording(call_id, None)
            return
        ms = recorded.frames * 1000 // RATE
        self.calls.recording(call_id, relative, size=recorded.size, ms=ms)
        log_event(logger, logging.DEBUG, "recording.finished", call_id=call_id, ms=ms)

    async def close(self) -> None:
        """Finish every recording in progress (at shutdown)."""
        await asyncio.to_thread(self.recorder.close)


async def recover(database: Database, directory: Path) -> int:
    """Complete the recordings a crash left being written (at start-up,
    before any call): each file's RIFF sizes are made true to the frames it
    holds and the record gets its size and length; a record whose file is
    missing or not a recording loses its pointer. Returns how many."""
    done = 0
    while True:
        async with database.session() as session:
            rows = (
                await session.execute(
                    select(CallRecord.id, CallRecord.recording)
                    .where(CallRecord.recording.is_not(None), CallRecord.recording_size.is_(None))
                    .limit(_BATCH)
                )
            ).all()
            if not rows:
                return done
            for call_id, relative in rows:
                values = await asyncio.to_thread(_complete, directory, relative)
                await session.execute(
                    update(CallRecord).where(CallRecord.id == call_id).values(values)
                )
                log_event(
                    logger,
                    logging.INFO,
                    "recording.recovered",
                    call_id=call_id,
                    size=values["recording_size"],
                )
            await session.commit()
            done += len(rows)


def _complete(directory: Path, relative: str | None) -> dict[str, object]:
    path = None if relative is None else file_of(directory, relative)
    try:
        if path is None:
            raise RecordingError("not a recording's path")
        size, frames = finalize_wav(path)
    except (OSError, RecordingError):
        return {"recording": None, "recording_size": None, "recording_ms": None}
    return {"recording_size": size, "recording_ms": frames * 1000 // RATE}


async def remove(database: Database, directory: Path, call_id: str) -> bool:
    """Delete a call's recording (file and pointer); False when it has none."""
    async with database.session() as session:
        relative = await session.scalar(
            select(CallRecord.recording).where(CallRecord.id == call_id)
        )
        if relative is None:
            return False
        await asyncio.to_thread(_unlink, file_of(directory, relative))
        await session.execute(
            update(CallRecord)
            .where(CallRecord.id == call_id)
            .values(recording=None, recording_size=None, recording_ms=None)
        )
        await session.commit()
    return True


def _unlink(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _unlink_all(paths: list[Path | None]) -> None:
    for path in paths:
        _unlink(path)


async def expire(database: Database, directory: Path, before: datetime) -> int:
    """Remove the complete recordings of calls that started before `before`;
    returns how many."""
    removed = 0
    while True:
        async with database.session() as session:
            rows = (
                await session.execute(
                    select(CallRecord.id, CallRecord.recording)
                    .where(
                        CallRecord.started_at < before,
                        CallRecord.recording.is_not(None),
                        CallRecord.recording_size.is_not(None),
                    )
                    .limit(_BATCH)
                )
            ).all()
            if not rows:
                return removed
            await asyncio.to_thread(_unlink_all, [file_of(directory, r or "") for _, r in rows])
            await session.execute(
                update(CallRecord)
                .where(CallRecord.id.in_([call_id for call_id, _ in rows]))
                .values(recording=None, recording_size=None, recording_ms=None)
            )
            await session.commit()
            removed += len(rows)


async def keep_for(
    database: Database,
    directory: Path,
    days: int,
    *,
    wallclock: Callable[[], datetime],
    every: float = RETENTION_CHECK,
) -> None:
    """Run `expire` for recordings older than `days` now and every `every` seconds."""
    while True:
        try:
            removed = await expire(database, directory, wallclock() - timedelta(days=days))
            if removed:
                log_event(logger, logging.INFO, "recording.expired", count=removed, days=days)
        except Exception:
            logger.exception("recording.expire_failed")
        await asyncio.sleep(every)
