"""Bindings that survive a restart: the registrar reads and writes them in
memory (no I/O on the SIP path), and every change is written through to the
store in the background, one AOR at a time.

Times: the registrar counts in the loop's monotonic clock; the store keeps
wall-clock UTC. Loading converts one into the other at the moment of
loading, so a binding keeps exactly the seconds it had left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select

from ..logs import log_event
from ..sip import ParseError, parse_name_addr
from ..sip.uri import parse_name_addr_list
from ..store import Database, refused_rows
from ..store.models import Registration
from .registrar import Binding, MemoryLocation

logger = logging.getLogger("callbridge.pbx")

# How a binding's source (the flow it registered from) is written and read back.
FlowOf = Callable[[object], tuple[str, str, int] | None]
SourceOf = Callable[[str, str, int], object]


class StoredLocation(MemoryLocation):
    """A `MemoryLocation` whose changes are saved to the store."""

    def __init__(
        self,
        database: Database,
        *,
        flow_of: FlowOf,
        source_of: SourceOf,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.database = database
        self._flow_of = flow_of
        self._source_of = source_of
        self._clock = clock
        self._wall_clock = wall_clock
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # AORs whose bindings the database refused: kept in memory only.
        self.dropped = 0

    def replace(self, aor: str, bindings: list[Binding]) -> None:
        super().replace(aor, bindings)
        self._dirty.add(aor)
        self._wake.set()

    async def load(self) -> int:
        """Read the bindings still valid from the store; returns how many."""
        now, wall = self._clock(), self._wall_clock()
        wall_now = datetime.fromtimestamp(wall, UTC)
        async with self.database.session() as session:
            await session.execute(delete(Registration).where(Registration.expires_at <= wall_now))
            await session.commit()
            rows = (await session.scalars(select(Registration))).all()
        by_aor: dict[str, list[Binding]] = {}
        for row in rows:
            try:
                contact = parse_name_addr(row.contact)
                path = tuple(parse_name_addr_list(row.path)) if row.path else ()
            except ParseError:
                continue  # written by us, so never; a hand-edited row must not stop start-up
            by_aor.setdefault(row.aor, []).append(
                Binding(
                    aor=row.aor,
                    contact=contact,
                    expires_at=now + (row.expires_at.timestamp() - wall),
                    call_id=row.call_id,
                    cseq=row.cseq,
                    source=self._source_of(row.transport, row.source_host, row.source_port),
                    user_agent=row.user_agent,
                    path=path,
                )
            )
        for aor, bindings in by_aor.items():
            MemoryLocation.replace(self, aor, bindings)
        return len(rows)

    def start(self) -> None:
        """Start writing changes in the background."""
        self._writer = asyncio.create_task(self._write_forever())

    async def stop(self) -> None:
        """Stop the writer after saving what is still pending."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self.flush()

    async def flush(self) -> None:
        """Save every AOR changed since the last flush. When the database
        fails they wait for the next change; when it refuses what an AOR's
        bindings carry, that AOR is set aside (logged, counted in `dropped`)
        and the others are saved."""
        while self._dirty:
            aors, self._dirty = self._dirty, set()
            try:
                await self._save(aors)
            except Exception as error:
                if refused_rows(error) and await self._save_one_by_one(aors):
                    continue
                self._dirty |= aors  # try again with the next change
                logger.exception("pbx.location_save_failed")
                return

    async def _save_one_by_one(self, aors: set[str]) -> bool:
        """Save each AOR alone; False if the database failed on one."""
        for aor in aors:
            try:
                await self._save({aor})
            except Exception as error:
                if not refused_rows(error):
                    return False
                self.dropped += 1
                log_event(logger, logging.ERROR, "pbx.location_dropped", aor=repr(aor), error=error)
        return True

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def _save(self, aors: set[str]) -> None:
        now, wall = self._clock(), self._wall_clock()
        rows = [
            self._row(binding, now, wall) for aor in aors for binding in self.bindings(aor, now)
        ]
        async with self.database.session() as session:
            await session.execute(delete(Registration).where(Registration.aor.in_(aors)))
            session.add_all(row for row in rows if row is not None)
            await session.commit()
        log_event(logger, logging.DEBUG, "pbx.location_saved", aors=len(aors), bindings=len(rows))

    def _row(self, binding: Binding, now: float, wall: float) -> Registration | None:
        flow = self._flow_of(binding.source)
        if flow is None:
            return None
        transport, host, port = flow
        return Registration(
            aor=binding.aor,
            contact=str(binding.contact),
            expires_at=datetime.fromtimestamp(wall + (binding.expires_at - now), UTC),
            call_id=binding.call_id,
            cseq=binding.cseq,
            transport=transport,
            source_host=host,
            source_port=port,
            user_agent=binding.user_agent,
            path=", ".join(str(entry) for entry in binding.path) or None,
        )
