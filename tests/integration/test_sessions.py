"""Sessions end when they should, on a running `callbridge serve` over real
HTTP and WebSocket: a token stops working after its user's password or
role changes, after logout and after the login is deleted, and an event
socket opened with it closes with 4401 within seconds. On SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .conftest import Server, start_server, stop_server
from .test_calls import fresh_postgres  # noqa: F401 - a fixture
from .test_int_bounds import ADMIN_PASSWORD, live  # noqa: F401 - a fixture (live)

pytestmark = pytest.mark.integration

OLGA_PASSWORD = "olga-pass-for-session-tests"
# The socket checks its token every second; a revocation shows within a few.
CLOSE_WITHIN = 5.0


@contextmanager
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as http:
        yield http


def sign_in(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    answer = http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def add_olga(http: httpx.Client, admin: dict[str, str], role: str = "supervisor") -> int:
    created = http.post(
        "/api/v1/employees",
        json={"name": "Olga", "login": "olga", "password": OLGA_PASSWORD, "role": role},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@contextmanager
def event_socket(server: Server, auth: dict[str, str], scope: str) -> Iterator[ClientConnection]:
    token = auth["Authorization"].removeprefix("Bearer ")
    url = f"ws://127.0.0.1:{server.http_port}/ws/events?token={token}&scope={scope}"
    with connect(url, open_timeout=5) as socket:
        yield socket


def close_code(socket: ClientConnection, within: float) -> tuple[int | None, float]:
    """The code the server closes `socket` with, and how long it took."""
    started = time.monotonic()
    try:
        while True:
            socket.recv(timeout=max(0.01, within - (time.monotonic() - started)))
    except TimeoutError:
        return None, time.monotonic() - started
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), time.monotonic() - started


def still_open(socket: ClientConnection, seconds: float = 1.5) -> bool:
    code, _ = close_code(socket, seconds)
    return code is None


Change = Callable[[httpx.Client, dict[str, str], dict[str, str], int], None]


def demote(http: httpx.Client, admin: dict[str, str], _own: dict[str, str], olga: int) -> None:
    answer = http.patch(f"/api/v1/employees/{olga}", json={"role": "operator"}, headers=admin)
    assert answer.status_code == 200, answer.text


def new_password(
    http: httpx.Client, admin: dict[str, str], _own: dict[str, str], olga: int
) -> None:
    answer = http.patch(
        f"/api/v1/employees/{olga}", json={"password": "a-brand-new-pass"}, headers=admin
    )
    assert answer.status_code == 200, answer.text


def delete(http: httpx.Client, admin: dict[str, str], _own: dict[str, str], olga: int) -> None:
    answer = http.delete(f"/api/v1/employees/{olga}", headers=admin)
    assert answer.status_code == 204, answer.text


def logout(http: httpx.Client, _admin: dict[str, str], own: dict[str, str], _olga: int) -> None:
    answer = http.post("/api/v1/auth/logout", headers=own)
    assert answer.status_code == 204, answer.text


@pytest.mark.parametrize("change", [demote, new_password, delete, logout])
def test_a_revoked_token_is_refused_and_its_event_socket_closes_4401(
    live: Server,  # noqa: F811 - the fixture
    change: Change,
) -> None:
    with client(live) as http:
        admin = sign_in(http, "admin", ADMIN_PASSWORD)
        olga = add_olga(http, admin)
        own = sign_in(http, "olga", OLGA_PASSWORD)
        other = sign_in(http, "olga", OLGA_PASSWORD)
        assert http.get("/api/v1/employees", headers=own).status_code == 200
        with event_socket(live, own, "all") as socket:
            assert still_open(socket), "the socket closed before anything changed"
            change(http, admin, own, olga)
            code, took = close_code(socket, CLOSE_WITHIN)
        assert code == 4401, f"{change.__name__}: closed with {code} after {took:.1f} s"
        assert http.get("/api/v1/employees", headers=own).status_code == 401
        # Logout ends this sign-in only; the others end everything.
        expected = 200 if change is logout else 401
        assert http.get("/api/v1/employees", headers=other).status_code == expected
        # The admin's own session is untouched.
        assert http.get("/api/v1/employees", headers=admin).status_code == 200


def test_an_unrelated_change_leaves_the_socket_open(live: Server) -> None:  # noqa: F811
    with client(live) as http:
        admin = sign_in(http, "admin", ADMIN_PASSWORD)
        olga = add_olga(http, admin)
        own = sign_in(http, "olga", OLGA_PASSWORD)
        with event_socket(live, own, "all") as socket:
            renamed = http.patch(
                f"/api/v1/employees/{olga}", json={"name": "Olga B."}, headers=admin
            )
            assert renamed.status_code == 200, renamed.text
            # Another user's logout bumps the revocations too; Olga stays.
            assert http.post("/api/v1/auth/logout", headers=admin).status_code == 204
            assert still_open(socket, 3.0)
        assert http.get("/api/v1/employees", headers=own).status_code == 200


def test_logout_without_a_valid_token_is_401(live: Server) -> None:  # noqa: F811
    with client(live) as http:
        assert http.post("/api/v1/auth/logout").status_code == 401
        bogus = {"Authorization": "Bearer not-a-token"}
        assert http.post("/api/v1/auth/logout", headers=bogus).status_code == 401


def failed_sign_ins(server: Server, forwarded_for: list[str]) -> list[int]:
    """The statuses of sign-ins with a wrong password, each claiming to be
    forwarded for the next address of `forwarded_for`. Each tries another
    username, so only the address's count can block them (the guard also
    counts per account)."""
    with client(server) as http:
        return [
            http.post(
                "/api/v1/auth/login",
                json={"username": f"user-{n}", "password": "a-wrong-password"},
                headers={"X-Forwarded-For": address},
            ).status_code
            for n, address in enumerate(forwarded_for)
        ]


# Thirteen callers by their claim, one by their connection: the guard
# blocks an address once it has failed more than ten times.
CLAIMED = [f"198.51.100.{n}" for n in range(1, 14)]


@pytest.mark.parametrize("live", ["sqlite"], indirect=True)
def test_x_forwarded_for_from_loopback_does_not_change_the_address_the_guard_counts(
    live: Server,  # noqa: F811
) -> None:
    statuses = failed_sign_ins(live, CLAIMED)
    assert statuses[:11] == [401] * 11, statuses
    assert statuses[11:] == [429, 429], statuses


def test_a_trusted_proxys_x_forwarded_for_names_the_caller(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_HTTP_TRUSTED_PROXIES="192.0.2.0/24, 127.0.0.1",
    )
    try:
        # Each claimed caller fails once: none is blocked.
        assert failed_sign_ins(server, CLAIMED) == [401] * len(CLAIMED)
        # One claimed caller failing again and again is.
        assert failed_sign_ins(server, ["203.0.113.9"] * 12)[-1] == 429
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()
