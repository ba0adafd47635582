"""The HTTP API of a running `callbridge serve`, over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-tests"
LINE_PASSWORD = "line-pass-for-tests"


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        yield srv
    finally:
        stop_server(srv.process)
    assert srv.process.returncode == 0, srv.log()


def test_admin_signs_in_and_provisions_an_internal_line(api_server: Server) -> None:
    base = f"http://127.0.0.1:{api_server.http_port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        created = client.post(
            "/api/v1/internal-lines",
            json={"number": "101", "username": "alice", "password": LINE_PASSWORD},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        read = client.get(f"/api/v1/internal-lines/{created.json()['id']}", headers=auth)
        assert read.status_code == 200 and read.json()["number"] == "101"
        spec = client.get("/api/openapi.json")
        assert spec.status_code == 200 and "/api/v1/internal-lines" in spec.json()["paths"]
    log = api_server.log()
    assert "auth.admin_created username=admin" in log
    assert ADMIN_PASSWORD not in log and LINE_PASSWORD not in log
    assert (api_server.log_path.parent / "callbridge.db").exists()
