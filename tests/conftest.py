"""Databases for the tests: every store and API test runs on a SQLite file
and on the local PostgreSQL server (127.0.0.1:5432), each test on an empty,
freshly migrated schema."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from callbridge.store import Base, Database

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USERS = ("postgres", "root")


async def _pg_admin(statement: str) -> str:
    """Run `statement` in the `test` database as the first role that connects."""
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
    pytest.fail(
        f"PostgreSQL on {PG_HOST}:{PG_PORT} is not usable ({'; '.join(errors)}); "
        "`make test` starts it"
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own, dropped at its end."""
    name = f"callbridge_test_{secrets.token_hex(6)}"
    user = asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def _postgres(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[Database]:
    """A database with no tables yet."""
    if database_url.startswith("postgresql"):
        await _postgres(database_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A database at the newest schema with every table empty. On PostgreSQL the
    session's schema is migrated (a no-op when it is current) and emptied, which
    is quicker than building it again for every test."""
    database = Database(database_url)
    try:
        await database.migrate()
        if database_url.startswith("postgresql"):
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            await _postgres(database_url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        yield database
    finally:
        await database.close()
