"""The panel in headless Chromium (Debian's, driven by Playwright for
Python: never `playwright install`) against a real `callbridge serve`, with
fake media devices. The bundle is `make web`'s (web/dist)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

# A callbridge for calls (admin, lines, SIPp phones): the integration tests'.
from ..integration.test_calls import pbx, start_pbx  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "web" / "dist" / "index.html"
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# A narrow side panel beside a CRM: the size the screenshots show.
SIDE_PANEL = {"width": 360, "height": 720}


# Quiet, headless, and nothing sent off this machine.
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Per module, not per session: Playwright's sync API keeps an event loop
# running in this thread while it lives, and an async test (tests/api's)
# after it in the same pytest session could not start its own.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not BUNDLE.is_file():
        pytest.fail("the panel is not built: `make web` (make web-test does it)")
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: `make test-deps` installs Debian's")
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium with fake media devices that the page may use."""
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*BASE_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile in English with the microphone and notifications allowed."""
    opened = browser.new_context(
        locale="en-US", viewport=SIDE_PANEL, permissions=["microphone", "notifications"]
    )
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    """A small PNG of the page for the README (docs/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
