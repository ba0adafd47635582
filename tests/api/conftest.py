"""The API over a real database (SQLite and PostgreSQL), driven in-process
through httpx's ASGI transport, with one signed-in user per role."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from callbridge.api import create_app
from callbridge.settings import Settings
from callbridge.store import Database, Employee, User
from callbridge.store.accounts import hash_password, issue_token
from callbridge.store.models import CallRecord, ConfigVersion, Contact, utcnow

PASSWORD = "user-password-1"
# One argon2 hash for every test's users: hashing is slow on purpose.
_HASH = asyncio.run(hash_password(PASSWORD))


@dataclass
class Api:
    client: httpx.AsyncClient
    database: Database
    settings: Settings
    tokens: dict[str, str]
    bodies: list[bytes] = field(default_factory=list)
    app: FastAPI | None = None

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def add_user(self, username: str, role: str, employee: str | None = None) -> int | None:
        """Another signed-in user (`auth(username)`), backed by a new employee
        named `employee` when given; returns that employee's id."""
        async with self.database.session() as session:
            employee_id = None
            if employee is not None:
                row = Employee(name=employee)
                session.add(row)
                await session.flush()
                employee_id = row.id
            user = User(
                username=username,
                password_hash=_HASH,
                role=role,
                employee_id=employee_id,
                active=True,
            )
            session.add(user)
            await session.commit()
            issued = await issue_token(session, user, self.settings.auth_token_ttl)
            self.tokens[username] = issued.token
        return employee_id

    async def add_call(self, **fields: Any) -> str:
        """A call record written straight to the store (an incoming call
        answered now, unless `fields` say otherwise); its id."""
        record = CallRecord(
            **{
                "id": uuid.uuid4().hex,
                "direction": "incoming",
                "caller_number": "+79161234567",
                "callee_number": "101",
                "started_at": utcnow(),
                "status": "answered",
                **fields,
            },
        )
        async with self.database.session() as session:
            if record.contact_id is not None and "account_id" not in fields:
                # As the PBX and the link write it: a contact's call carries its account.
                record.account_id = await session.scalar(
                    select(Contact.account_id).where(Contact.id == record.contact_id)
                )
            session.add(record)
            await session.commit()
        return record.id


def json_keys(value: Any) -> set[str]:
    """Every key at any depth of a decoded JSON body: a password field never
    appears in an answer, nested or not."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in json_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in json_keys(v)}
    return set()


@pytest.fixture
async def api(database: Database, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(data_dir=tmp_path, sip_realm="test.realm", auth_token_ttl=600)
    tokens = {}
    async with database.session() as session:
        for role in ("admin", "supervisor", "operator"):
            user = User(username=role, password_hash=_HASH, role=role, active=True)
            session.add(user)
            await session.commit()
            tokens[role] = (await issue_token(session, user, settings.auth_token_ttl)).token
    bodies: list[bytes] = []

    async def keep_body(response: httpx.Response) -> None:
        bodies.append(await response.aread())

    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [keep_body]}
    ) as client:
        yield Api(client, database, settings, tokens, bodies, app)


@pytest.fixture
async def pbx(api: Api) -> AsyncIterator[tuple[httpx.AsyncClient, list[dict[str, Any]]]]:
    """The API with a SIP side that records each version it is told to run."""
    running: list[dict[str, Any]] = []

    async def run(version: ConfigVersion) -> None:
        running.append(version.snapshot)

    app = create_app(api.settings, api.database, on_apply=run)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client, running
