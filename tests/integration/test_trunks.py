"""External lines registering with their provider: a SIPp registrar on
127.0.0.2 checks the digest answer made with the line's login and password,
and the API shows the line's registration state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, free_port, start_server, start_sipp, stop_server

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-trunks"
PROVIDER = "127.0.0.2"
LOGIN, SECRET = "acc-42", "provider-secret-1"


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        yield server
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()


@contextmanager
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        token = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def registration_of(
    client: httpx.Client, line_id: int, until: str, timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        line: dict[str, Any] = client.get(f"/api/v1/external-lines/{line_id}").json()
        if line["registration_state"] == until or time.monotonic() > deadline:
            return line
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("password", "state", "reason"),
    [(SECRET, "registered", None), ("not-the-secret", "failed", "wrong login or password")],
)
def test_an_external_line_registers_with_its_provider(
    pbx: Server, tmp_path: Path, password: str, state: str, reason: str | None
) -> None:
    port = free_port(host=PROVIDER)
    provider = start_sipp(
        "provider_registrar.xml",
        pbx,
        tmp_path,
        port=port,
        local_ip=PROVIDER,
        extra=["-key", "login", LOGIN, "-key", "secret", SECRET],
    )
    try:
        time.sleep(0.3)  # SIPp binds its port
        with api(pbx) as client:
            created = client.post(
                "/api/v1/external-lines",
                json={
                    "code": "provider",
                    "server": f"{PROVIDER}:{port}",
                    "username": "380441234567",
                    "register": True,
                    "login": LOGIN,
                    "password": password,
                    "total_lines": 4,
                },
            )
            assert created.status_code == 201, created.text
            client.post("/api/v1/config/apply").raise_for_status()
            line = registration_of(client, created.json()["id"], until=state)
        assert (line["registration_state"], line["registration_reason"]) == (state, reason)
        assert password not in pbx.log()
    finally:
        provider.stop()
