"""The async engine and sessions for the configured database, and running
the migrations to the newest schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """One engine and its session factory; `migrate()` before first use."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Statement parameters stay out of error messages and logs: they carry
        # trunk passwords.
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not self.is_sqlite, hide_parameters=True
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic `upgrade head`)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade_head)

    async def close(self) -> None:
        await self.engine.dispose()


def create_database(settings: Settings) -> Database:
    return Database(settings.effective_database_url())


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; SQLite leaves foreign
    # keys unchecked unless asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
    # SQLite's own lower() folds ASCII letters only; the CRM's search must find
    # "Иван" by "иван" as PostgreSQL does.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# SQLSTATE classes of a statement the database refused for what it carried:
# 22 data exception (a value too long, a character it cannot store),
# 23 integrity constraint violation.
_REFUSED_ROW_STATES = ("22", "23")


def refused_rows(error: BaseException) -> bool:
    """Whether `error` is the database refusing what a statement carried, as
    opposed to the database failing (down, restarting, out of connections).
    A writer sets refused rows aside and waits out a failing database."""
    if isinstance(error, IntegrityError | DataError):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return False
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(state, str) and state[:2] in _REFUSED_ROW_STATES
    if isinstance(error, StatementError):  # a value its column type could not bind
        return isinstance(error.orig, ValueError | TypeError)
    # sqlite3 raises a str it cannot encode (a lone surrogate) unwrapped.
    return isinstance(error, UnicodeError)
