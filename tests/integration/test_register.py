"""Phones registering internal lines provisioned over the API: digest
authentication, the registrar, and the flood guard, end to end."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .conftest import Server, run_sipp, start_server, stop_server

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-tests"
LINE_PASSWORD = "line-pass-for-tests"
STRANGER = "127.0.0.2"
ENV = {
    "CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # SIPp 3.6 answers only the first challenge and knows only MD5 (see README).
    "CALLBRIDGE_SIP_DIGEST_ALGORITHMS": "MD5",
}


@contextmanager
def admin(srv: Server) -> Iterator[httpx.Client]:
    """An HTTP client for the server's API, signed in as the admin."""
    with httpx.Client(base_url=f"http://127.0.0.1:{srv.http_port}", timeout=10) as api:
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        yield api


def create_line(srv: Server) -> None:
    with admin(srv) as api:
        api.post(
            "/api/v1/internal-lines",
            json={"number": "101", "username": "alice", "password": LINE_PASSWORD},
        ).raise_for_status()
        api.post("/api/v1/config/apply").raise_for_status()


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, **ENV, CALLBRIDGE_GUARD_MAX_FAILURES="3")
    try:
        create_line(srv)
        yield srv
    finally:
        stop_server(srv.process)
    assert srv.process.returncode == 0, srv.log()


def register(
    srv: Server, tmp_path: Path, *, password: str, calls: int = 1, local_ip: str = "127.0.0.1"
) -> int:
    result = run_sipp(
        "register.xml",
        srv,
        tmp_path,
        calls=calls,
        timeout=20,
        local_ip=local_ip,
        extra=["-s", "101", "-au", "alice", "-ap", password, "-recv_timeout", "2000"],
    )
    return result.successful


def test_a_phone_registers_a_line_created_over_the_api(pbx: Server, tmp_path: Path) -> None:
    assert register(pbx, tmp_path, password=LINE_PASSWORD) == 1
    assert " status=200 " in pbx.log()
    assert LINE_PASSWORD not in pbx.log()
    # The admin sees the device on the line.
    with admin(pbx) as api:
        [line] = api.get("/api/v1/internal-lines").json()["items"]
        devices = api.get(f"/api/v1/internal-lines/{line['id']}/registrations")
    [device] = devices.json()["items"]
    assert device["contact"].startswith("<sip:101@127.0.0.1:")
    assert device["source"].startswith("udp:127.0.0.1:")
    assert device["user_agent"] == "sipp-phone"
    assert 100 < device["expires_in"] <= 120


def test_a_wrong_password_is_challenged_again_not_registered(pbx: Server, tmp_path: Path) -> None:
    assert register(pbx, tmp_path, password="not-the-password") == 0
    assert " status=200 " not in pbx.log()


def _options_answered(srv: Server, local_ip: str) -> bool:
    request = (
        f"OPTIONS sip:{srv.host}:{srv.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local_ip}:5999;branch=z9hG4bK-probe-{local_ip};rport\r\n"
        f"From: <sip:probe@{local_ip}>;tag=p\r\n"
        f"To: <sip:{srv.host}:{srv.port}>\r\n"
        f"Call-ID: probe-{local_ip}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((local_ip, 0))
        sock.settimeout(1.0)
        sock.sendto(request, (srv.host, srv.port))
        try:
            return sock.recv(65535).startswith(b"SIP/2.0 200 ")
        except TimeoutError:
            return False


def test_guessing_passwords_blocks_the_source_and_only_that_source(
    pbx: Server, tmp_path: Path
) -> None:
    # Five guesses: more than the three failures a minute this PBX allows.
    register(pbx, tmp_path, password="guess", calls=5, local_ip=STRANGER)
    assert not _options_answered(pbx, STRANGER)  # dropped, not answered
    assert _options_answered(pbx, "127.0.0.1")
    assert register(pbx, tmp_path, password=LINE_PASSWORD) == 1
    # The admin sees the block over the API and lifts it.
    with admin(pbx) as api:
        blocks = api.get("/api/v1/security/blocks").json()
        assert [b["source"] for b in blocks["items"]] == [STRANGER]
        assert api.delete(f"/api/v1/security/blocks/{STRANGER}").status_code == 204
    assert _options_answered(pbx, STRANGER)


def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path, **ENV)
    try:
        create_line(first)
        assert register(first, tmp_path, password=LINE_PASSWORD) == 1
    finally:
        stop_server(first.process)
    assert first.process.returncode == 0

    second = start_server(tmp_path, **ENV)  # the same data directory
    try:
        assert "pbx.bindings_restored count=1" in second.log()
        fetched = run_sipp(
            "register_fetch.xml",
            second,
            tmp_path,
            extra=["-s", "101", "-au", "alice", "-ap", LINE_PASSWORD],
        )
        assert fetched.successful == 1, fetched.output
    finally:
        stop_server(second.process)
    assert second.process.returncode == 0
