"""Signing in, bearer tokens on every route, the body size limit, and NUL
characters refused wherever a request carries them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from callbridge.store import ApiToken
from callbridge.store.models import utcnow

from .conftest import PASSWORD, Api


async def test_login_returns_a_token_that_opens_the_api(api: Api) -> None:
    answer = await api.client.post(
        "/api/v1/auth/login", json={"username": "supervisor", "password": PASSWORD}
    )
    assert answer.status_code == 200
    token = answer.json()["token"]
    assert answer.json()["expires_at"]
    lines = await api.client.get(
        "/api/v1/internal-lines", headers={"Authorization": f"Bearer {token}"}
    )
    assert lines.status_code == 200


async def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    wrong = await api.client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "not-the-password"}
    )
    unknown = await api.client.post(
        "/api/v1/auth/login", json={"username": "nobody", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "not-the-password" not in wrong.text


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWRtaW46eA=="}],
    ids=["none", "invalid", "not-bearer"],
)
async def test_routes_refuse_requests_without_a_valid_token(
    api: Api, headers: dict[str, str]
) -> None:
    answer = await api.client.get("/api/v1/internal-lines", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_an_expired_token_is_refused(api: Api) -> None:
    async with api.database.session() as session:
        await session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    answer = await api.client.get("/api/v1/internal-lines", headers=api.auth())
    assert answer.status_code == 401


async def test_a_body_over_64_kib_is_refused_with_413(api: Api) -> None:
    big = b'{"username": "' + b"a" * 70_000 + b'", "password": "x"}'
    declared = await api.client.post(
        "/api/v1/auth/login", content=big, headers={"content-type": "application/json"}
    )

    async def stream():  # no Content-Length: chunked
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = await api.client.post(
        "/api/v1/auth/login", content=stream(), headers={"content-type": "application/json"}
    )
    assert declared.status_code == streamed.status_code == 413


async def test_openapi_describes_the_internal_lines(api: Api) -> None:
    answer = await api.client.get("/api/openapi.json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    assert {
        "/api/v1/auth/login",
        "/api/v1/internal-lines",
        "/api/v1/internal-lines/{line_id}",
    } <= set(paths)
    assert "password" not in answer.json()["components"]["schemas"]["InternalLineOut"]["properties"]


async def test_password_guessing_is_stopped_with_429_then_even_the_right_password_waits(
    api: Api,
) -> None:
    for _ in range(11):  # more than the ten failures a minute allowed
        wrong = await api.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "guess-guess"}
        )
        assert wrong.status_code == 401
    blocked = await api.client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
    )
    assert blocked.status_code == 429
    # The block's time left: 900 s less the moment the last guess took.
    assert 880 <= int(blocked.headers["Retry-After"]) <= 900


# PostgreSQL cannot store a NUL in text and refuses the whole statement: the
# API refuses one wherever a request can carry it, on SQLite too, naming where.
@pytest.mark.parametrize(
    ("method", "url", "request_args", "loc"),
    [
        ("POST", "/api/v1/contacts", {"json": {"name": "Anna\x00"}}, ["body", "name"]),
        ("POST", "/api/v1/leads", {"json": {"name": "A", "comment": "\x00"}}, ["body", "comment"]),
        ("GET", "/api/v1/contacts", {"params": {"q": "An\x00na"}}, ["query", "q"]),
        ("GET", "/api/v1/calls/abc%00def", {}, ["path", "call_id"]),
        (
            "POST",
            "/api/v1/auth/login",
            {"json": {"username": "admin\x00", "password": "x"}},
            ["body", "username"],
        ),
    ],
)
async def test_a_nul_character_anywhere_is_422_naming_where(
    api: Api, method: str, url: str, request_args: dict[str, Any], loc: list[str | int]
) -> None:
    answer = await api.client.request(method, url, headers=api.auth(), **request_args)
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [loc]


async def test_an_escaped_backslash_before_u0000_is_no_nul(api: Api) -> None:
    body = b'{"name": "C:\\\\u0000 and co"}'
    answer = await api.client.post(
        "/api/v1/contacts",
        content=body,
        headers={**api.auth(), "content-type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "C:\\u0000 and co"
