"""Alembic environment: runs on the connection `Database.migrate()` passes in,
or, from the `alembic` command, on the database the settings name."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callbridge.settings import Settings
from callbridge.store.models import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_settings() -> None:
    engine = create_async_engine(Settings().effective_database_url())
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    raise SystemExit("callbridge migrations run online only")
elif connection is not None:
    run_on(connection)
else:
    asyncio.run(run_with_settings())
