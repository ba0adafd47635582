"""First run as a newcomer meets it: `callbridge serve` with no admin logs
a setup link; the page behind it creates the administrator, who then signs
in at `/`; the link is spent. The page speaks Russian to a Russian browser."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from ..integration.conftest import Server, start_server, stop_server
from .conftest import BASE_ARGS, CHROMIUM

pytestmark = pytest.mark.integration

_LINK = re.compile(r"http\.setup_link.*?url=\"?(http://[^\s\"]+)")
PASSWORD = "first-admin-password"


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server on an empty database, with no CALLBRIDGE_ADMIN_PASSWORD."""
    server = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD="", CALLBRIDGE_LOG_LEVEL="info")
    try:
        yield server
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()


def setup_link(server: Server) -> str:
    deadline = time.monotonic() + 5
    while (found := _LINK.search(server.log())) is None:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    return found.group(1)


def test_the_logged_link_creates_the_admin_who_then_signs_in(
    fresh_server: Server, page: Page
) -> None:
    link = setup_link(fresh_server)
    assert link.startswith(f"http://127.0.0.1:{fresh_server.http_port}/#/setup?token=")
    assert " WARNING " in next(line for line in fresh_server.log().splitlines() if link in line)

    # Before setup, `/` is the sign-in page, which says where the way in is.
    page.goto(f"http://127.0.0.1:{fresh_server.http_port}/")
    expect(page.get_by_text("open the setup link")).to_be_visible()

    page.goto(link)
    expect(page.get_by_role("heading", name="Create the administrator")).to_be_visible()
    page.get_by_label("Login").fill("boss")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create the administrator").click()
    expect(page.get_by_text("The administrator is created: sign in.")).to_be_visible()
    assert "token=" not in page.url  # taken out of the address bar

    page.get_by_label("Login").fill("boss")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # An admin has no internal line: the softphone stays offline, and says so.
    expect(page.locator(".badge")).to_have_attribute("data-state", "offline")

    # The link is spent: the same page now refuses it.
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    page.reload()
    page.get_by_label("Login").fill("second")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create the administrator").click()
    expect(page.get_by_role("alert")).to_contain_text("used already")
    with httpx.Client(base_url=f"http://127.0.0.1:{fresh_server.http_port}") as client:
        assert client.get("/api/v1/setup").json() == {"needed": False}


def test_refused_permissions_are_explained_at_sign_in(
    fresh_server: Server, playwright: Playwright
) -> None:
    token = setup_link(fresh_server).rsplit("token=", 1)[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{fresh_server.http_port}") as client:
        created = client.post(
            "/api/v1/setup", json={"token": token, "login": "boss", "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
    # A browser of its own that allows nothing: no fake consent for the
    # microphone, no permission granted, so both requests are refused.
    strict = playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS)
    try:
        page = strict.new_context(locale="en-US").new_page()
        page.goto(f"http://127.0.0.1:{fresh_server.http_port}/")
        page.get_by_label("Login").fill("boss")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        problems = page.locator(".problems")
        expect(problems).to_contain_text("microphone")
        expect(problems).to_contain_text("calls cannot be answered in this browser")
        expect(problems).to_contain_text("Notifications are blocked")
    finally:
        strict.close()


def test_a_russian_browser_gets_russian(fresh_server: Server, browser: Browser) -> None:
    context = browser.new_context(locale="ru-RU")
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{fresh_server.http_port}/")
        expect(page.get_by_role("button", name="Войти")).to_be_visible()
        expect(page.get_by_label("Пароль")).to_be_visible()
    finally:
        context.close()
