"""Throw-away databases for the CRM benchmarks (bench/identify_load.py,
bench/history_load.py): a SQLite file or a PostgreSQL database of their own
on 127.0.0.1:5432, migrated to the newest schema, bulk-loaded without the
ORM, and timed reads through the real async session.

Loading millions of rows row by row through SQLAlchemy would take hours, so
the rows go in the fastest way each database offers (SQLite: the sqlite3
module's executemany in large transactions with syncing off; PostgreSQL:
COPY through asyncpg) with the migrations' secondary indexes dropped first
and created again after, from their own stored definitions: the schema the
benchmark reads is checked to be exactly the one `Database.migrate()` made.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from callbridge.store import Database

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USERS = ("postgres", "root")  # as tests/conftest.py: the first that connects
CHUNK = 50_000  # rows per executemany / COPY batch


@dataclass
class BenchDatabase:
    """One throw-away database; `url` is what `callbridge.store.Database` takes."""

    backend: str
    url: str
    path: Path | None = None  # the SQLite file
    pg_name: str | None = None
    pg_user: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        """The asyncpg form of a PostgreSQL `url`."""
        return self.url.replace("postgresql+asyncpg", "postgresql")

    async def size_bytes(self) -> int:
        if self.path is not None:
            return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
        connection = await asyncpg.connect(self.dsn)
        try:
            return int(await connection.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await connection.close()

    async def drop(self) -> None:
        if self.path is not None:
            for path in self.path.parent.glob(self.path.name + "*"):
                path.unlink()
            return
        await _pg_admin(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")


async def _pg_admin(statement: str) -> str:
    errors = []
    for user in PG_USERS:
        try:
            connection = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database="test", timeout=5
            )
        except (OSError, asyncpg.PostgresError) as error:
            errors.append(f"{user}: {error}")
            continue
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
        return user
    raise SystemExit(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not usable: {'; '.join(errors)}")


async def create(backend: str, workdir: Path, label: str) -> BenchDatabase:
    """An empty database at the newest schema (`Database.migrate()`)."""
    if backend == "sqlite":
        path = workdir / f"{label}.db"
        bench = BenchDatabase(backend, f"sqlite+aiosqlite:///{path}", path=path)
    else:
        name = f"callbridge_bench_{label}_{secrets.token_hex(4)}"
        user = await _pg_admin(f"CREATE DATABASE {name}")
        bench = BenchDatabase(
            backend,
            f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}",
            pg_name=name,
            pg_user=user,
        )
    database = Database(bench.url)
    try:
        await database.migrate()
    finally:
        await database.close()
    return bench


Rows = Iterable[Sequence[Any]]


async def load(bench: BenchDatabase, tables: Sequence[tuple[str, Sequence[str], Rows]]) -> None:
    """Fill `tables` (name, columns, rows; parents before children) with the
    secondary indexes built after the rows, then check the schema is the
    migrated one. Records the seconds spent in `bench.timings`."""
    names = [name for name, _, _ in tables]
    started = time.perf_counter()
    if bench.path is not None:
        await asyncio.to_thread(_sqlite_load, bench.path, names, tables)
    else:
        await _pg_load(bench, names, tables)
    bench.timings["load_s"] = round(time.perf_counter() - started, 1)


# --------------------------------------------------------------- SQLite


def _sqlite_schema(connection: sqlite3.Connection) -> list[tuple[str, str, str]]:
    return sorted(
        connection.execute("SELECT type, name, coalesce(sql, '') FROM sqlite_master").fetchall()
    )


def _sqlite_load(
    path: Path, names: list[str], tables: Sequence[tuple[str, Sequence[str], Rows]]
) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        before = _sqlite_schema(connection)
        # Nothing here needs to survive a crash: no journal, no fsync, a
        # large page cache for building the indexes.
        connection.execute("PRAGMA journal_mode=DELETE")
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1048576")  # 1 GiB
        connection.execute("PRAGMA temp_store=MEMORY")
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({','.join('?' * len(names))})",
            names,
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f"DROP INDEX {name}")
        for table, columns, rows in tables:
            marks = ",".join("?" * len(columns))
            statement = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})"
            iterator = iter(rows)
            while chunk := list(islice(iterator, CHUNK * 4)):
                connection.execute("BEGIN")
                connection.executemany(statement, chunk)
                connection.execute("COMMIT")
        for _, sql in indexes:
            connection.execute(sql)
        connection.execute("PRAGMA journal_mode=WAL")  # as callbridge runs it
        after = _sqlite_schema(connection)
    finally:
        connection.close()
    if before != after:
        raise SystemExit("the loaded SQLite schema differs from the migrated one")


# ----------------------------------------------------------- PostgreSQL


PG_SCHEMA_QUERY = """
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


async def _pg_load(
    bench: BenchDatabase, names: list[str], tables: Sequence[tuple[str, Sequence[str], Rows]]
) -> None:
    connection = await asyncpg.connect(bench.dsn)
    try:
        before = await connection.fetch(PG_SCHEMA_QUERY)
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename = ANY($1::text[]) AND indexname NOT IN"
            " (SELECT conname FROM pg_constraint WHERE connamespace = 'public'::regnamespace)",
            names,
        )
        for record in indexes:
            await connection.execute(f"DROP INDEX {record['indexname']}")
        async with connection.transaction():
            # The generated rows are consistent by construction: the foreign
            # key triggers would only check them one by one.
            await connection.execute("SET LOCAL session_replication_role = replica")
            for table, columns, rows in tables:
                iterator = iter(rows)
                while chunk := list(islice(iterator, CHUNK)):
                    await connection.copy_records_to_table(table, records=chunk, columns=columns)
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for record in indexes:
            await connection.execute(record["indexdef"])
        after = await connection.fetch(PG_SCHEMA_QUERY)
        # What autovacuum would have done by the time anyone reads: planner
        # statistics, and the visibility map index-only scans rely on.
        started = time.perf_counter()
        for table in names:
            await connection.execute(f"VACUUM ANALYZE {table}")
        bench.timings["vacuum_analyze_s"] = round(time.perf_counter() - started, 1)
    finally:
        await connection.close()
    if [tuple(r) for r in before] != [tuple(r) for r in after]:
        raise SystemExit("the loaded PostgreSQL schema differs from the migrated one")


# ---------------------------------------------------------------- timing


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    values = sorted(seconds)
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5) * 1000, 3),
        "p99_ms": round(percentile(values, 0.99) * 1000, 3),
        "max_ms": round(values[-1] * 1000, 3),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------- plans


async def explain(url: str, read: Callable[[AsyncSession], Awaitable[Any]]) -> list[str]:
    """The plan of every statement `read` runs, as the database executes it:
    EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL."""
    database = Database(url)
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and "FROM" in statement:
            statements.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with database.session() as session:
            await read(session)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
        await database.close()
    lines: list[str] = []
    if database.is_sqlite:
        connection = sqlite3.connect(url.split("///", 1)[1])
        try:
            for statement, parameters in statements:
                lines.append(" ".join(statement.split()) + f"  -- {list(parameters)}")
                depth: dict[int, int] = {0: 0}
                for node, parent, _, detail in connection.execute(
                    "EXPLAIN QUERY PLAN " + statement, parameters
                ):
                    depth[node] = depth.get(parent, 0) + 1
                    lines.append("  " * depth[node] + detail)
        finally:
            connection.close()
        return lines
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement, parameters in statements:
            lines.append(" ".join(statement.split()) + f"  -- {list(parameters)}")
            rows = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *parameters)
            lines.extend("  " + row[0] for row in rows)
    finally:
        await connection.close()
    return lines
