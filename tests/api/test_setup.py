"""First run: the one-time setup token creates the first administrator,
once; a wrong token, a used one and a second admin are refused, and
guessing is cut off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from callbridge.api import create_app
from callbridge.api.setup import SetupToken
from callbridge.settings import Settings
from callbridge.store import Database
from callbridge.store.accounts import create_user

NEW_PASSWORD = "first-admin-pass"


@dataclass
class FirstRun:
    client: httpx.AsyncClient
    token: SetupToken
    database: Database


@pytest.fixture
async def first_run(database: Database, tmp_path: Path) -> AsyncIterator[FirstRun]:
    settings = Settings(data_dir=tmp_path, sip_realm="test.realm", auth_token_ttl=600)
    token = SetupToken()
    app = create_app(settings, database, setup_token=token)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield FirstRun(client, token, database)


def _body(token: str, login: str = "boss", password: str = NEW_PASSWORD) -> dict[str, str]:
    return {"token": token, "login": login, "password": password}


async def test_the_token_creates_the_first_admin_who_can_sign_in(first_run: FirstRun) -> None:
    assert (await first_run.client.get("/api/v1/setup")).json() == {"needed": True}
    assert first_run.token.value is not None
    created = await first_run.client.post("/api/v1/setup", json=_body(first_run.token.value))
    assert created.status_code == 201, created.text
    assert created.json()["login"] == "boss"
    assert created.json()["role"] == "admin"
    assert NEW_PASSWORD not in created.text
    login = await first_run.client.post(
        "/api/v1/auth/login", json={"username": "boss", "password": NEW_PASSWORD}
    )
    assert login.status_code == 200
    me = await first_run.client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['token']}"}
    )
    assert me.json()["role"] == "admin"
    assert (await first_run.client.get("/api/v1/setup")).json() == {"needed": False}


async def test_the_token_works_once(first_run: FirstRun) -> None:
    value = first_run.token.value
    assert value is not None
    assert (await first_run.client.post("/api/v1/setup", json=_body(value))).status_code == 201
    again = await first_run.client.post("/api/v1/setup", json=_body(value, login="second"))
    assert again.status_code == 403
    assert again.json()["detail"][0]["loc"] == ["body", "token"]


async def test_two_requests_with_the_token_at_once_make_one_admin(first_run: FirstRun) -> None:
    value = first_run.token.value
    assert value is not None
    answers = await asyncio.gather(
        first_run.client.post("/api/v1/setup", json=_body(value, login="one")),
        first_run.client.post("/api/v1/setup", json=_body(value, login="two")),
    )
    assert sorted(a.status_code for a in answers) == [201, 403]


async def test_a_wrong_token_is_refused(first_run: FirstRun) -> None:
    answer = await first_run.client.post("/api/v1/setup", json=_body("not-the-token"))
    assert answer.status_code == 403
    assert answer.json()["detail"][0]["loc"] == ["body", "token"]
    assert (await first_run.client.get("/api/v1/setup")).json() == {"needed": True}


async def test_no_setup_without_a_token_at_start(database: Database, tmp_path: Path) -> None:
    # A start that found an admin holds no token: every attempt is a 403.
    app = create_app(Settings(data_dir=tmp_path), database)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        answer = await client.post("/api/v1/setup", json=_body("x" * 43))
    assert answer.status_code == 403


async def test_an_admin_made_meanwhile_is_a_conflict(first_run: FirstRun) -> None:
    # Another way in (CALLBRIDGE_ADMIN_PASSWORD on another node, a script)
    # created an admin after the link was logged.
    async with first_run.database.session() as session:
        await create_user(session, "other", "other-password", role="admin")
    value = first_run.token.value
    assert value is not None
    answer = await first_run.client.post("/api/v1/setup", json=_body(value))
    assert answer.status_code == 409
    # And the token is spent: the link is of no further use.
    assert first_run.token.value is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("password", "short"), ("login", ""), ("login", "has space"), ("token", "")],
)
async def test_bad_fields_are_named(first_run: FirstRun, field: str, value: str) -> None:
    assert first_run.token.value is not None
    body = _body(first_run.token.value)
    body[field] = value
    answer = await first_run.client.post("/api/v1/setup", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == field
    # Nothing was spent on a bad request.
    assert first_run.token.value is not None


async def test_guessing_the_token_is_cut_off(first_run: FirstRun) -> None:
    answers = [
        (await first_run.client.post("/api/v1/setup", json=_body(f"guess-{n}"))).status_code
        for n in range(13)
    ]
    # The eleventh wrong guess earns the block (as a sign-in's would).
    assert answers[:11] == [403] * 11
    assert answers[11:] == [429, 429]
    # Blocked: even the right token waits out the block from this address.
    assert first_run.token.value is not None
    blocked = await first_run.client.post("/api/v1/setup", json=_body(first_run.token.value))
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


def test_the_link_carries_the_token_in_its_fragment() -> None:
    token = SetupToken()
    assert token.value is not None
    assert len(token.value) >= 43  # 32 random bytes, URL-safe base64
    assert token.link("127.0.0.1", 8080) == f"http://127.0.0.1:8080/#/setup?token={token.value}"
    assert token.link("0.0.0.0", 80).startswith("http://localhost:80/#/setup?token=")
    assert token.link("::1", 80).startswith("http://[::1]:80/#/")
    assert SetupToken().value != token.value
    assert token.value not in repr(token)
