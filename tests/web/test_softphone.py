"""The panel's softphone against the server's SIP over WebSocket: JsSIP in
headless Chromium registers with the short-lived credential the server
issues (`POST /api/v1/me/sip-credentials`), is listed among the line's
devices with its user agent, shows `registered`, and `reconnecting` when
the server goes away. Skipped on a server without `/ws/sip` (the SIP over
WebSocket part of issue 14 is built beside the panel)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from ..integration.conftest import stop_server
from ..integration.test_calls import BOB, Pbx
from .test_calls import LOGIN, PASSWORD, _sign_in

pytestmark = pytest.mark.integration


def _line_with_operator(pbx: Pbx) -> int:
    line_id = pbx.line(BOB, ring_timeout=10, max_devices=2)
    with pbx.api() as api:
        created = api.post(
            "/api/v1/employees",
            json={
                "name": "Bob Operator",
                "login": LOGIN,
                "password": PASSWORD,
                "internal_line_id": line_id,
            },
        )
        assert created.status_code == 201, created.text
        pbx.apply(api)
    with httpx.Client(base_url=f"http://127.0.0.1:{pbx.server.http_port}") as client:
        token = client.post(
            "/api/v1/auth/login", json={"username": LOGIN, "password": PASSWORD}
        ).json()["token"]
        offered = client.post(
            "/api/v1/me/sip-credentials", headers={"Authorization": f"Bearer {token}"}
        )
    if offered.status_code in (404, 405, 503):
        pytest.skip("this server has no SIP over WebSocket (/ws/sip) yet")
    assert offered.status_code == 200, offered.text
    return line_id


def test_the_softphone_registers_and_then_reconnects(pbx: Pbx, page: Page) -> None:
    line_id = _line_with_operator(pbx)
    _sign_in(page, pbx)
    badge = page.locator(".badge")
    expect(badge).to_have_attribute("data-state", "registered")
    expect(badge).to_have_accessible_name("Softphone: registered")
    with pbx.api() as api:
        devices = api.get(f"/api/v1/internal-lines/{line_id}/registrations").json()["items"]
    assert [d["user_agent"] for d in devices] == ["callbridge-panel"], devices
    assert "transport=ws" in devices[0]["contact"], devices

    # The server goes away: the softphone says it is reconnecting, not registered.
    stop_server(pbx.server.process)
    expect(badge).to_have_attribute("data-state", "reconnecting")
