"""A call answered in the panel carries audio both ways: a baresip desk
phone calls the operator's line, the panel's softphone (JsSIP in headless
Chromium, its microphone a WAV of a tone) rings and is answered with the
Answer button; the desk phone hears the browser's tone (FFT over what it
recorded), and the page receives the desk phone's audio (WebRTC's own
statistics: packets and audio energy received). Skipped on a server
without SIP over WebSocket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from ..integration import tones
from ..integration.baresip import Baresip
from ..integration.test_calls import ALICE, Pbx
from ..integration.tones import CALLEE_TONE, CALLER_TONE, write_tone
from .conftest import BASE_ARGS, CHROMIUM, SIDE_PANEL
from .test_calls import _sign_in
from .test_softphone import _line_with_operator

pytestmark = pytest.mark.integration

TALK = 4.0
DESK_RTP_PORTS = (24400, 24599)

# Every RTCPeerConnection the page makes, kept where the test can ask it
# for its statistics.
_PEER_CONNECTIONS = """
(() => {
  const Real = window.RTCPeerConnection;
  window.__peerConnections = [];
  window.RTCPeerConnection = function (...args) {
    const made = new Real(...args);
    window.__peerConnections.push(made);
    return made;
  };
  window.RTCPeerConnection.prototype = Real.prototype;
})();
"""

_RECEIVED = """
async () => {
  const pc = window.__peerConnections[window.__peerConnections.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && report.kind === "audio") {
      return {packets: report.packetsReceived, energy: report.totalAudioEnergy || 0};
    }
  }
  return null;
}
"""


@pytest.fixture
def tone_browser(playwright: Playwright, tmp_path: Path) -> Iterator[Browser]:
    """Chromium whose microphone plays the callee's tone."""
    microphone = write_tone(tmp_path / "microphone.wav", CALLEE_TONE, seconds=30)
    launched = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            *BASE_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
        ],
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def tone_page(tone_browser: Browser) -> Iterator[Page]:
    context = tone_browser.new_context(
        locale="en-US", viewport=SIDE_PANEL, permissions=["microphone", "notifications"]
    )
    context.set_default_timeout(10_000)
    context.add_init_script(_PEER_CONNECTIONS)
    try:
        yield context.new_page()
    finally:
        context.close()


def _received(page: Page) -> dict[str, Any] | None:
    found: dict[str, Any] | None = page.evaluate(_RECEIVED)
    return found


def test_a_call_answered_in_the_panel_carries_audio_both_ways(
    pbx: Pbx, tone_page: Page, tmp_path: Path
) -> None:
    _line_with_operator(pbx)
    pbx.line(ALICE)
    page = tone_page
    _sign_in(page, pbx)
    expect(page.locator(".badge")).to_have_attribute("data-state", "registered")
    server = pbx.server
    desk_dir = tmp_path / "caller"
    desk_dir.mkdir()
    account = (
        f"<sip:{ALICE.username}@{server.host}:{server.port};transport=udp>"
        f";auth_pass={ALICE.password};regint=600"
    )
    desk = Baresip(
        desk_dir,
        account=account,
        source=write_tone(tmp_path / "desk.wav", CALLER_TONE),
        rtp_ports=DESK_RTP_PORTS,
        auto_answer=False,
    )
    with desk:
        desk.wait_registered()
        desk.dial(f"sip:102@{server.host}:{server.port}")
        answer = page.locator(".ringing").get_by_role("button", name="Answer")
        expect(answer).to_be_enabled()
        answer.click()
        desk.wait_event("CALL_ESTABLISHED", 10)
        time.sleep(TALK)
        received = _received(page)
        desk.hangup()
        desk.wait_event("CALL_CLOSED", 5)
    diagnostics = f"--- callbridge ---\n{server.log()}\n--- desk ---\n{desk.log()}"
    # The browser's tone, through Chromium's own audio processing (its gain
    # control changes the level) and our WebRTC leg, at the desk phone.
    tones.assert_hears(desk, CALLEE_TONE, diagnostics, seconds=TALK - 1, same_level=False)
    assert received is not None, diagnostics
    # 50 packets a second of the desk phone's tone, at its level.
    assert received["packets"] >= 40 * (TALK - 1), (received, diagnostics)
    assert received["energy"] > 0.05, (received, diagnostics)
