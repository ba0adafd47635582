"""The store: migrations build the schema the models describe, on SQLite and
PostgreSQL; accounts keep hashes, never passwords or tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import IntegrityError

from callbridge.sip.digest import compute_ha1
from callbridge.store import ApiToken, Base, Database, InternalLine, User
from callbridge.store.accounts import (
    AccountError,
    authenticate,
    create_user,
    ensure_admin,
    issue_token,
    token_hash,
    user_for_token,
)
from callbridge.store.db import alembic_config
from callbridge.store.models import CallRecord, ConfigVersion, utcnow


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_build_the_schema_the_models_describe(empty_database: Database) -> None:
    await empty_database.migrate()
    async with empty_database.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
        version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    assert version == "0014"


async def test_migration_0007_scrubs_credentials_from_stored_versions(
    empty_database: Database,
) -> None:
    def upgrade_to(revision: str) -> Callable[[Connection], None]:
        return lambda connection: command.upgrade(alembic_config(connection), revision)

    async with empty_database.engine.begin() as connection:
        await connection.run_sync(upgrade_to("0006"))
        line = {"id": 1, "number": "101", "ha1_md5": "a" * 32, "ha1_sha256": "b" * 64}
        trunk = {"id": 1, "code": "provider", "login": "pbx", "password": "provider-secret"}
        snapshot = {"internal_lines": [line], "external_lines": [trunk], "routing_rules": []}
        await connection.execute(
            text(
                "INSERT INTO config_versions (id, applied_at, source, snapshot) "
                "VALUES (1, :at, 'apply', :snapshot)"
            ),
            {"at": utcnow(), "snapshot": json.dumps(snapshot)},
        )
    await empty_database.migrate()
    async with empty_database.session() as session:
        version = await session.scalar(select(ConfigVersion))
    assert version is not None
    assert version.snapshot == {
        "internal_lines": [{"id": 1, "number": "101"}],
        "external_lines": [{"id": 1, "code": "provider", "login": "pbx"}],
        "routing_rules": [],
    }


async def test_migration_0012_gives_earlier_calls_no_time_on_hold(
    empty_database: Database,
) -> None:
    async with empty_database.engine.begin() as connection:
        await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "0010"))
        await connection.execute(
            text(
                "INSERT INTO calls (id, direction, caller_number, callee_number, started_at, "
                "talk_seconds, status) VALUES ('a', 'internal', '101', '102', :at, 30, 'answered')"
            ),
            {"at": utcnow()},
        )
    await empty_database.migrate()
    async with empty_database.session() as session:
        call = await session.get(CallRecord, "a")
    assert call is not None and (call.talk_seconds, call.hold_seconds) == (30, 0)


async def test_migrating_again_changes_nothing(database: Database) -> None:
    async with database.session() as session:
        await create_user(session, "alice", "password-1")
    await database.migrate()
    async with database.session() as session:
        assert await session.scalar(select(User.username)) == "alice"


async def test_line_keeps_digest_ha1_for_its_realm_not_the_password(database: Database) -> None:
    line = InternalLine(number="101", username="alice")
    line.set_password("s3cret-pass", "example.org")
    async with database.session() as session:
        session.add(line)
        await session.commit()
        stored = await session.scalar(select(InternalLine))
    assert stored is not None
    assert stored.ha1_md5 == compute_ha1("alice", "example.org", "s3cret-pass", "MD5")
    assert stored.ha1_sha256 == compute_ha1("alice", "example.org", "s3cret-pass", "SHA-256")
    assert (stored.ring_timeout, stored.max_devices, stored.max_talk_duration) == (30, 1, 0)
    assert stored.created_at.tzinfo is not None


async def test_line_numbers_are_unique(database: Database) -> None:
    async with database.session() as session:
        for username in ("alice", "bob"):
            line = InternalLine(number="101", username=username)
            line.set_password("s3cret-pass", "callbridge")
            session.add(line)
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_foreign_keys_are_enforced(database: Database) -> None:
    line = InternalLine(number="101", username="alice", employee_id=999)
    line.set_password("s3cret-pass", "callbridge")
    async with database.session() as session:
        session.add(line)
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_sqlite_runs_in_wal_mode(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite only")
    async with database.engine.connect() as connection:
        assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"


async def test_admin_is_created_once_and_only_with_a_password(database: Database) -> None:
    async with database.session() as session:
        assert await ensure_admin(session, None) is None
        admin = await ensure_admin(session, "first-password")
        assert admin is not None and (admin.username, admin.role) == ("admin", "admin")
        assert await ensure_admin(session, "second-password") is None
        assert "first-password" not in admin.password_hash
        assert admin.password_hash.startswith("$argon2")
        assert await authenticate(session, "admin", "first-password") is not None
        assert await authenticate(session, "admin", "second-password") is None
        assert await authenticate(session, "nobody", "first-password") is None


async def test_user_rules_name_the_field(database: Database) -> None:
    async with database.session() as session:
        with pytest.raises(AccountError) as short:
            await create_user(session, "bob", "short")
        await create_user(session, "bob", "long-enough")
        with pytest.raises(AccountError) as taken:
            await create_user(session, "bob", "long-enough")
    assert (short.value.field, taken.value.field) == ("password", "username")


async def test_tokens_are_stored_hashed_and_expire(database: Database) -> None:
    async with database.session() as session:
        user = await create_user(session, "carol", "password-1", role="supervisor")
        issued = await issue_token(session, user, ttl=60)
        stored = list(await session.scalars(select(ApiToken)))
        assert [t.token_hash for t in stored] == [token_hash(issued.token)]
        assert issued.token not in stored[0].token_hash
        found = await user_for_token(session, issued.token)
        assert found is not None and found.username == "carol"
        assert await user_for_token(session, issued.token + "x") is None
        await session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
        assert await user_for_token(session, issued.token) is None


async def test_call_status_outside_the_words_is_refused_by_the_database(
    database: Database,
) -> None:
    record = CallRecord(
        id="c" * 32,
        direction="internal",
        caller_number="101",
        callee_number="102",
        started_at=utcnow(),
        status="hung_up",
    )
    async with database.session() as session:
        session.add(record)
        with pytest.raises(IntegrityError):
            await session.commit()
