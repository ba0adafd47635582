"""An operator's panel with real calls: a customer calls through the
provider's line (SIPp on 127.0.0.2) while the operator's desk phone (SIPp)
rings; the panel's ringing card names the caller's contact, or offers to
create one for an unknown number and links it to the call; the History
shows the calls, a missed one in red. Screenshots go to docs/screenshots."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from ..integration.conftest import SippProcess, free_port, start_sipp
from ..integration.test_calls import BOB, Pbx, _assert_succeeded
from ..integration.test_trunk_calls import (
    DID,
    PROVIDER,
    external_line,
    route_incoming_to,
    rule,
)
from ..integration.test_trunk_calls import LOGIN as PROVIDER_LOGIN
from ..integration.test_trunk_calls import SECRET as PROVIDER_SECRET
from .conftest import SIDE_PANEL, screenshot

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "bob", "bob-panel-password"
KNOWN = "89161234567"  # Anna Petrova's, as the provider sends it
STRANGER = "89035550011"
# The provider's INVITE as the server logs it (CALLBRIDGE_LOG_SIP_MESSAGES).
_INVITE_RECEIVED = re.compile(
    rf"^(\S+)Z DEBUG callbridge\.transport sip\.recv "
    rf"src=udp:{re.escape(PROVIDER)}:\d+ method=INVITE",
    re.MULTILINE,
)


def _employ_bob(pbx: Pbx, ring_timeout: int, **line: int | bool) -> int:
    """Bob: an employee who signs in to the panel, with the line 102 (and
    its other `line` settings); its id."""
    line_id = pbx.line(BOB, ring_timeout=ring_timeout, max_devices=2, **line)
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
    return line_id


def _operator(pbx: Pbx, ring_timeout: int) -> int:
    """Bob, reached by every customer's call; the provider's port."""
    _employ_bob(pbx, ring_timeout)
    provider_port = free_port(host=PROVIDER)
    external_line(pbx, provider_port)
    route_incoming_to(pbx, BOB.number)
    return provider_port


def _customer(
    pbx: Pbx, provider_port: int, number: str, scenario: str, talk_ms: int
) -> SippProcess:
    customer = start_sipp(
        scenario,
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-s", number, "-key", "did", DID, "-d", str(talk_ms)],
    )
    pbx.phones.append(customer)
    return customer


def _sign_in(page: Page, pbx: Pbx) -> None:
    page.goto(f"http://127.0.0.1:{pbx.server.http_port}/")
    page.get_by_label("Login").fill(LOGIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".panel")).to_have_attribute("data-events", "online")
    # Up to the registration: without SIP over WebSocket on this server the
    # softphone says it is offline (or still registering).
    expect(page.locator(".badge")).to_have_attribute(
        "data-state", _one_of("offline", "registering", "registered")
    )


def _one_of(*values: str) -> re.Pattern[str]:
    return re.compile("^(" + "|".join(values) + ")$")


# Notifications the page makes, kept in the page (the real ones are made too).
_NOTIFICATION_SPY = """
(() => {
  const Real = window.Notification;
  window.__notified = [];
  class Spy extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notified.push({title, body: options && options.body, tag: options && options.tag});
      window.__lastNotification = this;
    }
  }
  Object.defineProperty(Spy, "permission", {get: () => Real.permission});
  Spy.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Spy;
})();
"""


def _watch_for_the_card(page: Page) -> None:
    """Note (in the page, by the wall clock) when a ringing card first appears."""
    page.evaluate(
        """() => {
          const seen = () => {
            const card = document.querySelector('.ringing');
            if (card && !window.__cardAt) window.__cardAt = Date.now();
          };
          new MutationObserver(seen).observe(document.body, {childList: true, subtree: true});
        }"""
    )


def _invite_to_card_ms(page: Page, pbx: Pbx) -> float:
    """From the INVITE's arrival (the server log's `sip.recv`, by the same
    machine's wall clock) to the card in the page."""
    shown_at = page.evaluate("() => window.__cardAt")
    found = _INVITE_RECEIVED.search(pbx.server.log())
    assert found is not None and shown_at, "no INVITE in the log, or no card"
    received = datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return float(shown_at) - received.timestamp() * 1000


def _fits_the_side_panel(page: Page) -> None:
    """Nothing wider than the 360 px viewport: no sideways scrolling."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= SIDE_PANEL["width"], width


def _until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_known_caller_rings_with_the_contact_and_the_missed_call_is_red(
    pbx: Pbx,
    page: Page,
) -> None:
    provider_port = _operator(pbx, ring_timeout=5)
    with pbx.api() as api:
        anna = api.post(
            "/api/v1/contacts",
            json={
                "name": "Anna Petrova",
                "phones": [{"type": "mobile", "number": "+7 916 123-45-67"}],
            },
        )
        assert anna.status_code == 201, anna.text
        # Anna's contact is Bob's to open: he owns it.
        bob = api.get("/api/v1/employees").json()["items"]
        bob_id = next(e["id"] for e in bob if e["name"] == "Bob Operator")
        owned = api.patch(f"/api/v1/contacts/{anna.json()['id']}", json={"owner_id": bob_id})
        assert owned.status_code == 200, owned.text
    # The desk phone first: SIPp's REGISTER checks that the 200 lists its
    # binding alone (a browser that registers would be listed too).
    desk_phone = pbx.device(BOB, "call_uas_cancelled.xml")
    page.add_init_script(_NOTIFICATION_SPY)
    _sign_in(page, pbx)
    _watch_for_the_card(page)
    customer = _customer(pbx, provider_port, KNOWN, "provider_uac_refused.xml", talk_ms=0)
    card = page.locator(".ringing")
    expect(card).to_be_visible()
    expect(card.get_by_role("link", name="Anna Petrova")).to_be_visible()
    expect(card).to_contain_text("+79161234567")
    # Answering waits for the softphone: disabled until it registers (on a
    # server without SIP over WebSocket, for good), alive once it rings too.
    answer = card.get_by_role("button", name="Answer")
    if page.locator(".badge").get_attribute("data-state") == "registered":
        expect(answer).to_be_enabled()
    else:
        expect(answer).to_be_disabled()
        expect(card).to_contain_text("come alive when the softphone is registered")
    screenshot(page, "ringing")
    _fits_the_side_panel(page)
    delay = _invite_to_card_ms(page, pbx)
    print(f"ringing card in the page {delay:.0f} ms after the INVITE reached callbridge")
    assert delay > 0, delay  # the card came after the INVITE (no timing goal: bench/)
    # The tab is in front: the card is enough, no notification.
    assert page.evaluate("() => window.__notified") == []

    # Nobody answers: the ring timeout makes it missed, and the card goes.
    _assert_succeeded(customer, desk_phone, pbx=pbx)
    expect(card).to_have_count(0)
    page.get_by_role("link", name="History").click()
    missed = page.locator("li.call.missed")
    expect(missed).to_have_count(1)
    expect(missed).to_contain_text("+79161234567")
    expect(missed).to_contain_text("102")
    expect(missed.get_by_role("link", name="Anna Petrova")).to_be_visible()
    colour = missed.locator(".client").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(207, 34, 46)", colour  # red
    screenshot(page, "history")
    _fits_the_side_panel(page)

    # The filters ask the server: none answered, one missed.
    page.get_by_label("Status").select_option("answered")
    expect(page.get_by_text("No calls yet.")).to_be_visible()
    page.get_by_label("Status").select_option("missed")
    expect(page.locator("li.call")).to_have_count(1)
    # The card link opens the contact.
    missed.get_by_role("link", name="Anna Petrova").click()
    expect(page.get_by_role("heading", name="Contact Anna Petrova")).to_be_visible()
    # The card's own History has the call, red.
    expect(page.locator("li.call.missed")).to_have_count(1)
    # Its numbers call from the softphone (once it is registered): one
    # pressed calls Anna through the provider, and the call gets its card.
    call_anna = page.get_by_role("button", name="Call +7 916 123-45-67")
    expect(call_anna).to_be_visible()
    expect(page.locator(".badge")).to_have_attribute("data-state", "registered")
    with pbx.api() as api:
        [provider] = api.get("/api/v1/external-lines").json()["items"]
    rule(
        pbx,
        "/api/v1/routing-rules",
        {
            "name": "Russian mobiles",
            "direction": "outgoing",
            "priority": 10,
            "destination_mask": "+79XXXXXXXXX",
            "action": {"type": "external_line", "target": provider["id"]},
        },
    )
    anna = start_sipp(
        "provider_uas_auth.xml",
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-key", "login", PROVIDER_LOGIN, "-key", "secret", PROVIDER_SECRET],
    )
    pbx.phones.append(anna)
    call_anna.click()
    calling = page.locator(".ringing")
    expect(calling).to_have_class(re.compile(r"\banswered\b"))
    expect(calling).to_contain_text("+79161234567")
    expect(calling.get_by_role("link", name="Anna Petrova")).to_be_visible()
    calling.get_by_role("button", name="Hang up").click()
    expect(calling).to_have_count(0)
    result = anna.wait()
    assert result.successful == 1, anna.exchange() + pbx.server.log()
    [invite, _] = anna.received(method="INVITE")
    assert invite.first_line.startswith("INVITE sip:+79161234567@"), invite.text


def test_an_unknown_caller_gets_a_contact_made_from_the_ringing_card(
    pbx: Pbx, context: BrowserContext, page: Page
) -> None:
    provider_port = _operator(pbx, ring_timeout=10)
    desk_phone = pbx.device(BOB, "call_uas_answer.xml")
    page.add_init_script(_NOTIFICATION_SPY)
    _sign_in(page, pbx)
    # The operator works in another tab: the panel's has no focus.
    # (Playwright tells every page it has the focus; without that
    # emulation Chromium says what is true: the other tab has it.)
    context.new_page().bring_to_front()
    focus = context.new_cdp_session(page)
    focus.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    assert page.evaluate("() => document.hasFocus()") is False

    customer = _customer(pbx, provider_port, STRANGER, "provider_uac_call.xml", talk_ms=6000)
    card = page.locator(".ringing")
    expect(card).to_be_attached()
    _until(lambda: bool(page.evaluate("() => window.__notified.length")), "no notification")
    [notified] = page.evaluate("() => window.__notified")
    assert notified["title"] == "Incoming call", notified
    assert notified["body"] == "+79035550011 is calling", notified
    focus.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
    expect(card).to_be_visible()
    expect(card).to_contain_text("Unknown number")
    expect(card).to_contain_text("+79035550011")
    for label in ("Create a contact", "Create an account", "Create a lead"):
        expect(card.get_by_role("button", name=label)).to_be_visible()
    call_id = card.get_attribute("data-call-id")
    assert call_id

    card.get_by_role("button", name="Create a contact").click()
    card.get_by_label("Name").fill("Ivan Petrov")
    card.get_by_role("button", name="Create", exact=True).click()
    expect(card.get_by_role("link", name="Ivan Petrov")).to_be_visible()
    expect(card).to_contain_text("Linked to this call")
    expect(card).to_have_class(re.compile(r"\banswered\b"))  # the desk phone took it
    screenshot(page, "in-call")
    # A reload during the call keeps its card, and the card its link.
    page.reload()
    card = page.locator(f'.ringing[data-call-id="{call_id}"]')
    expect(card.get_by_role("link", name="Ivan Petrov")).to_be_visible()

    _assert_succeeded(customer, desk_phone, pbx=pbx)
    expect(card).to_have_count(0)
    base = f"http://127.0.0.1:{pbx.server.http_port}"
    with httpx.Client(base_url=base) as client:
        token = client.post(
            "/api/v1/auth/login", json={"username": LOGIN, "password": PASSWORD}
        ).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"

        def closed() -> bool:
            return client.get(f"/api/v1/calls/{call_id}").json()["status"] == "answered"

        _until(closed, "the call's record was not closed")
        call = client.get(f"/api/v1/calls/{call_id}").json()
        assert call["card"]["type"] == "contact" and call["card"]["name"] == "Ivan Petrov", call
        contact = client.get(f"/api/v1/contacts/{call['card']['id']}").json()
        assert [p["e164"] for p in contact["phones"]] == ["+79035550011"], contact

    page.get_by_role("link", name="History").click()
    row = page.locator(f'li.call[data-call-id="{call_id}"]')
    expect(row).to_contain_text("answered")
    expect(row).not_to_have_class("call missed")
    expect(row.get_by_role("link", name="Ivan Petrov")).to_be_visible()


def test_two_tabs_show_the_call_and_one_holds_the_softphone(
    pbx: Pbx, context: BrowserContext, page: Page
) -> None:
    provider_port = _operator(pbx, ring_timeout=5)
    desk_phone = pbx.device(BOB, "call_uas_cancelled.xml")
    _sign_in(page, pbx)
    second = context.new_page()
    _sign_in(second, pbx)
    # The first tab holds the softphone; the second says so and waits.
    expect(page.get_by_text("runs in another tab")).to_have_count(0)
    expect(second.get_by_text("Your softphone runs in another tab")).to_be_visible()
    customer = _customer(pbx, provider_port, STRANGER, "provider_uac_refused.xml", talk_ms=0)
    # Both show the call.
    for tab in (page, second):
        expect(tab.locator(".ringing")).to_contain_text("+79035550011")
    _assert_succeeded(customer, desk_phone, pbx=pbx)
    # The first tab closes: the second takes the softphone over.
    page.close()
    expect(second.get_by_text("Your softphone runs in another tab")).to_have_count(0)
