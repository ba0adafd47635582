"""A leaver's phone, and rotated passwords, against a running `callbridge
serve` with SIPp phones: deleting an employee stops their line at once
(registrations dropped, REGISTER 403, calls from it 403 and to it 480)
until the line is given to someone else with a new password; a rollback
keeps the current SIP password, and no version stores a credential. On
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callbridge.store import Database
from callbridge.store.models import ConfigVersion, Registration

from .conftest import free_port, start_sipp
from .test_calls import (
    ALICE,
    BOB,
    Line,
    Pbx,
    _assert_succeeded,
    _final_status,
    fresh_postgres,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.integration

NEW_PASSWORD = "alice-sip-pass-after-the-leaver"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings and URL of the test's database."""
    if request.param == "sqlite":
        return {"url": f"sqlite+aiosqlite:///{(tmp_path / 'callbridge.db').resolve()}"}
    url: str = request.getfixturevalue("fresh_postgres")
    return {"url": url, "CALLBRIDGE_DATABASE_URL": url}


@pytest.fixture
def pbx(start_pbx: Callable[..., Pbx], store: dict[str, str]) -> Pbx:  # noqa: F811
    return start_pbx(**{k: v for k, v in store.items() if k != "url"})


def in_store(url: str, query: Any) -> list[Any]:
    async def main() -> list[Any]:
        database = Database(url)
        try:
            async with database.session() as session:
                return list(await session.scalars(query))
        finally:
            await database.close()

    return asyncio.run(main())


def register_status(pbx: Pbx, line: Line) -> int | None:
    """What callbridge finally answers a REGISTER with `line`'s credentials."""
    phone = start_sipp(
        "register_refused.xml",
        pbx.server,
        pbx.tmp_path,
        timeout=10,
        recv_timeout=3,
        extra=["-s", line.number, "-au", line.username, "-ap", line.password],
    )
    pbx.phones.append(phone)
    phone.wait(timeout=15)
    finals = [
        m.status
        for m in phone.received()
        if m.status is not None and m.status >= 200 and m.header("CSeq") == "2 REGISTER"
    ]
    return finals[-1] if finals else None


def registrations(api: httpx.Client, line_id: int) -> int:
    answer = api.get(f"/api/v1/internal-lines/{line_id}/registrations")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


def employee(api: httpx.Client, name: str, login: str, line_id: int | None = None) -> int:
    created = api.post(
        "/api/v1/employees",
        json={
            "name": name,
            "login": login,
            "password": f"{login}-api-password",
            "internal_line_id": line_id,
        },
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def call_status(pbx: Pbx, caller: Line, callee: str) -> int | None:
    phone = pbx.call(caller, callee, "call_uac_refused.xml", recv_timeout=5)
    _assert_succeeded(phone, pbx=pbx)
    return _final_status(phone)


def test_a_deleted_employees_phone_is_let_go_and_can_neither_register_nor_call(
    pbx: Pbx, store: dict[str, str]
) -> None:
    alice_line = pbx.line(ALICE)
    pbx.line(BOB)
    with pbx.api() as api:
        olga = employee(api, "Olga Leaver", "olga", alice_line)
        pbx.apply(api)
    pbx.register(ALICE, free_port())
    with pbx.api() as api:
        assert registrations(api, alice_line) == 1
        assert api.delete(f"/api/v1/employees/{olga}").status_code == 204
        # No apply: the delete alone stops the line, its device let go at once.
        assert registrations(api, alice_line) == 0
    deadline = time.monotonic() + 3
    while in_store(store["url"], select(Registration)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_store(store["url"], select(Registration)) == [], "stored bindings remain"

    assert register_status(pbx, ALICE) == 403, pbx.explain()
    assert call_status(pbx, ALICE, BOB.number) == 403, pbx.explain()
    assert call_status(pbx, BOB, ALICE.number) == 480, pbx.explain()

    # An apply (the line has no employee now), or a new password alone,
    # does not bring the line back.
    with pbx.api() as api:
        pbx.apply(api)
        changed = api.patch(f"/api/v1/internal-lines/{alice_line}", json={"password": NEW_PASSWORD})
        assert changed.status_code == 200 and changed.json()["telephony_disabled"], changed.text
        pbx.apply(api)
    assert register_status(pbx, replace(ALICE, password=NEW_PASSWORD)) == 403, pbx.explain()

    # Another employee and a new password together, applied: the line works,
    # and only with that password.
    successor = replace(ALICE, password="alice-sip-pass-of-the-successor")
    with pbx.api() as api:
        petr = employee(api, "Petr Successor", "petr")
        reissued = api.patch(
            f"/api/v1/internal-lines/{alice_line}",
            json={"employee_id": petr, "password": successor.password},
        )
        assert reissued.status_code == 200, reissued.text
        assert reissued.json()["telephony_disabled"] is False
        # Not before the apply that brings the new password.
        assert register_status(pbx, replace(ALICE, password=NEW_PASSWORD)) == 403, pbx.explain()
        pbx.apply(api)
    assert register_status(pbx, replace(ALICE, password=NEW_PASSWORD)) == 401, pbx.explain()
    pbx.register(successor, free_port())


def test_a_rollback_keeps_the_current_sip_password_and_versions_hold_no_credentials(
    pbx: Pbx, store: dict[str, str]
) -> None:
    alice_line = pbx.line(ALICE)  # version 2 (1: the first start)
    with pbx.api() as api:
        trunk = api.post(
            "/api/v1/external-lines",
            json={
                "code": "provider",
                "server": "127.0.0.2:5060",
                "login": "pbx",
                "password": "provider-password-first",
            },
        )
        assert trunk.status_code == 201, trunk.text
        pbx.apply(api)
        before = api.get("/api/v1/config/versions").json()["items"][0]["id"]
        # Rotate both passwords, apply, then roll back to before the rotation.
        rotated = api.patch(f"/api/v1/internal-lines/{alice_line}", json={"password": NEW_PASSWORD})
        assert rotated.status_code == 200, rotated.text
        rotated = api.patch(
            f"/api/v1/external-lines/{trunk.json()['id']}",
            json={"password": "provider-password-second"},
        )
        assert rotated.status_code == 200, rotated.text
        pbx.apply(api)
        rolled = api.post(f"/api/v1/config/versions/{before}/apply")
        assert rolled.status_code == 200, rolled.text
    assert register_status(pbx, ALICE) == 401, pbx.explain()
    pbx.register(replace(ALICE, password=NEW_PASSWORD), free_port())

    stored = json.dumps([v.snapshot for v in in_store(store["url"], select(ConfigVersion))])
    for secret in ("ha1_md5", "ha1_sha256", '"password"', "provider-password"):
        assert secret not in stored, f"{secret} in a stored version"
