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

from ..integration.conftest import free_port, stop_server
from ..integration.test_calls import BOB, Pbx, _assert_succeeded
from ..integration.test_trunk_calls import PROVIDER, external_line, route_incoming_to
from .test_calls import LOGIN, PASSWORD, STRANGER, _customer, _employ_bob, _sign_in

pytestmark = pytest.mark.integration


def _line_with_operator(pbx: Pbx) -> int:
    line_id = _employ_bob(pbx, ring_timeout=10)
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


def test_alt_h_declines_the_call_in_the_browser_only(pbx: Pbx, page: Page) -> None:
    _line_with_operator(pbx)
    provider_port = free_port(host=PROVIDER)
    external_line(pbx, provider_port)
    route_incoming_to(pbx, BOB.number)
    # The desk phone first (its REGISTER expects its binding alone).
    desk_phone = pbx.device(BOB, "call_uas_cancelled.xml")
    _sign_in(page, pbx)
    expect(page.locator(".badge")).to_have_attribute("data-state", "registered")
    customer = _customer(pbx, provider_port, STRANGER, "provider_uac_refused.xml", talk_ms=0)
    card = page.locator(".ringing")
    answer = card.get_by_role("button", name="Answer")
    expect(answer).to_be_enabled()  # the call rings in the browser too
    expect(answer).to_have_attribute("aria-keyshortcuts", "Alt+A")
    page.keyboard.press("Alt+H")
    # The browser's leg is declined: the card stays (the desk phone rings
    # on), and there is nothing left to answer in the browser.
    expect(answer).to_be_disabled()
    expect(card).to_be_visible()
    _assert_succeeded(customer, desk_phone, pbx=pbx)
    expect(card).to_have_count(0)
