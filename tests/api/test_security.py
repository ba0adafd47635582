"""/api/v1/security/blocks: what the flood guard blocked, seen and lifted by an admin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from callbridge.api import create_app
from callbridge.pbx.guard import Attempt, Block, FloodGuard, GuardPolicy

from .conftest import PASSWORD, Api

NOW = 1000.0


@pytest.fixture
def guard() -> FloodGuard:
    return FloodGuard(GuardPolicy(max_failures=1, block_for=600, account_max_failures=10))


@pytest.fixture
async def client(api: Api, guard: FloodGuard) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api.settings, api.database, guard=guard, sip_clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_admin_sees_blocked_sources_with_their_reason_and_expiry(
    api: Api, client: httpx.AsyncClient, guard: FloodGuard
) -> None:
    guard.failed("127.0.0.66", NOW - 100)
    guard.failed("127.0.0.66", NOW - 100)
    guard.block("127.0.0.77", NOW, "scanner User-Agent")
    response = await client.get("/api/v1/security/blocks", headers=api.auth("admin"))
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    first, second = body["items"]
    assert (first["source"], first["expires_in"]) == ("127.0.0.66", 500)
    assert first["reason"] == "2 failed authentications in 60 s"
    assert (second["source"], second["reason"]) == ("127.0.0.77", "scanner User-Agent")
    expires = datetime.fromisoformat(second["expires_at"])
    assert abs((expires - datetime.now(UTC)).total_seconds() - 600) < 5
    assert body["dropped_blocked"] == 0


async def test_the_blocks_list_counts_the_requests_dropped_for_a_block(
    api: Api, client: httpx.AsyncClient, guard: FloodGuard
) -> None:
    guard.block("127.0.0.66", NOW, "manual")
    for _ in range(3):
        assert guard.drops("127.0.0.66", NOW)
    response = await client.get("/api/v1/security/blocks", headers=api.auth("admin"))
    assert response.json()["dropped_blocked"] == 3


async def test_admin_lifts_a_block(api: Api, client: httpx.AsyncClient, guard: FloodGuard) -> None:
    guard.block("127.0.0.66", NOW, "manual")
    lifted = await client.delete("/api/v1/security/blocks/127.0.0.66", headers=api.auth())
    assert lifted.status_code == 204
    assert not guard.is_blocked("127.0.0.66", NOW)
    again = await client.delete("/api/v1/security/blocks/127.0.0.66", headers=api.auth())
    assert again.status_code == 404


@pytest.mark.parametrize(("role", "status"), [("supervisor", 403), ("operator", 403)])
async def test_only_an_admin_may_see_or_lift_blocks(
    api: Api, client: httpx.AsyncClient, guard: FloodGuard, role: str, status: int
) -> None:
    guard.block("127.0.0.66", NOW, "manual")
    listed = await client.get("/api/v1/security/blocks", headers=api.auth(role))
    lifted = await client.delete("/api/v1/security/blocks/127.0.0.66", headers=api.auth(role))
    assert (listed.status_code, lifted.status_code) == (status, status)
    assert guard.is_blocked("127.0.0.66", NOW)


async def test_without_a_token_blocks_are_not_shown(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/security/blocks")).status_code == 401


async def test_admin_sees_and_lifts_an_accounts_block(
    api: Api, client: httpx.AsyncClient, guard: FloodGuard
) -> None:
    for n in range(12):
        attempt = guard.reserve(f"127.0.5.{n}", "alice", NOW)
        if not isinstance(attempt, Block):
            guard.rejected(attempt, NOW)
    listed = (await client.get("/api/v1/security/blocks", headers=api.auth("admin"))).json()
    assert [(b["source"], b["kind"]) for b in listed["items"]] == [("alice", "account")]
    assert listed["items"][0]["expires_in"] == 300
    wrong_kind = await client.delete("/api/v1/security/blocks/alice", headers=api.auth())
    assert wrong_kind.status_code == 404
    lifted = await client.delete(
        "/api/v1/security/blocks/alice", params={"kind": "account"}, headers=api.auth()
    )
    assert lifted.status_code == 204
    assert isinstance(guard.reserve("127.0.5.99", "alice", NOW), Attempt)


async def test_admin_sees_and_lifts_the_sign_ins_blocks(
    api: Api, client: httpx.AsyncClient
) -> None:
    # Eleven wrong sign-ins block the address, and the account once the
    # address no longer stops them; an admin already signed in sees each
    # block at the HTTP sign-in and lifts it, and the owner gets back in.
    for _ in range(11):
        wrong = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "guess-guess"}
        )
        assert wrong.status_code == 401
    seen = set()
    for _ in range(3):
        answer = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
        )
        if answer.status_code == 200:
            break
        assert answer.status_code == 429, answer.text
        listed = (await client.get("/api/v1/security/blocks", headers=api.auth("admin"))).json()
        blocks = [(b["source"], b["kind"]) for b in listed["items"] if b["guard"] == "http"]
        assert blocks, listed
        for source, kind in blocks:
            lifted = await client.delete(
                f"/api/v1/security/blocks/{source}",
                params={"kind": kind, "guard": "http"},
                headers=api.auth(),
            )
            assert lifted.status_code == 204, lifted.text
        seen.update(blocks)
    assert answer.status_code == 200, answer.text
    assert seen == {("127.0.0.1", "source"), ("admin", "account")}
