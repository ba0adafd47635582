"""The API over a real database (SQLite and PostgreSQL), driven in-process
through httpx's ASGI transport, with one signed-in user per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from callbridge.api import create_app
from callbridge.settings import Settings
from callbridge.store import Database, User
from callbridge.store.accounts import hash_password, issue_token

PASSWORD = "user-password-1"
# One argon2 hash for every test's users: hashing is slow on purpose.
_HASH = hash_password(PASSWORD)


@dataclass
class Api:
    client: httpx.AsyncClient
    database: Database
    settings: Settings
    tokens: dict[str, str]
    bodies: list[bytes] = field(default_factory=list)

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


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

    transport = httpx.ASGITransport(app=create_app(settings, database))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [keep_body]}
    ) as client:
        yield Api(client, database, settings, tokens, bodies)
