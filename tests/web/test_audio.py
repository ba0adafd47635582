"""A call answered in the panel carries audio both ways: a baresip desk
phone calls the operator's line, the panel's softphone (JsSIP in headless
Chromium, its microphone a WAV of a tone) rings and is answered with the
Answer button; the desk phone hears the browser's tone (FFT over what it
recorded), and the page receives the desk phone's audio (WebRTC's own
statistics: packets and audio energy received). Then the call's controls:
Hold (the desk phone hears the music on hold, then the tone again), a DTMF
digit from the keypad (the desk phone reports it), a note saved to the
call, Hang up in the panel. A reload during a softphone call ends it (the
page's BYE) and says so. Skipped on a server without SIP over WebSocket."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from ..integration import tones
from ..integration.baresip import Baresip
from ..integration.test_calls import ALICE, Pbx, _first, _wait_for
from ..integration.test_dtmf import digits_heard
from ..integration.tones import (
    CALLEE_TONE,
    CALLER_TONE,
    analyse_music,
    read_samples,
    write_tone,
)
from .conftest import BASE_ARGS, CHROMIUM, SIDE_PANEL, screenshot
from .test_calls import _sign_in, _until
from .test_softphone import _line_with_operator

pytestmark = pytest.mark.integration

TALK = 4.0
HOLD = 4.0
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


@pytest.fixture
def music_pbx(start_pbx: Callable[..., Pbx]) -> Pbx:
    """A callbridge with its music on hold, as a new install has."""
    return start_pbx(CALLBRIDGE_MUSIC_ON_HOLD="true")


def _operator_with_a_colleague(pbx: Pbx, page: Page) -> Page:
    """Bob signed in to the panel, its softphone registered; Alice's line
    (101) for the desk phone that calls him or that he calls."""
    _line_with_operator(pbx)
    pbx.line(ALICE)
    _sign_in(page, pbx)
    expect(page.locator(".badge")).to_have_attribute("data-state", "registered")
    return page


def _desk_phone(pbx: Pbx, tmp_path: Path, *, auto_answer: bool = False) -> Baresip:
    server = pbx.server
    desk_dir = tmp_path / "caller"
    desk_dir.mkdir()
    account = (
        f"<sip:{ALICE.username}@{server.host}:{server.port};transport=udp>"
        f";auth_pass={ALICE.password};regint=600"
    )
    return Baresip(
        desk_dir,
        account=account,
        # baresip hangs up when its source ends: longer than any call here.
        source=write_tone(tmp_path / "desk.wav", CALLER_TONE, seconds=40),
        rtp_ports=DESK_RTP_PORTS,
        auto_answer=auto_answer,
    )


def _answered_in_the_panel(pbx: Pbx, page: Page, desk: Baresip) -> float:
    """The desk phone calls the operator, who answers in the panel; when."""
    desk.wait_registered()
    desk.dial(f"sip:102@{pbx.server.host}:{pbx.server.port}")
    answer = page.locator(".ringing").get_by_role("button", name="Answer")
    expect(answer).to_be_enabled()
    answer.click()
    desk.wait_event("CALL_ESTABLISHED", 10)
    return time.monotonic()


def test_a_call_answered_in_the_panel_carries_audio_both_ways(
    music_pbx: Pbx, tone_page: Page, tmp_path: Path
) -> None:
    pbx = music_pbx
    page = _operator_with_a_colleague(pbx, tone_page)
    server = pbx.server
    with _desk_phone(pbx, tmp_path) as desk:
        established = _answered_in_the_panel(pbx, page, desk)
        card = page.locator(".ringing.answered")
        call_id = card.get_attribute("data-call-id")
        expect(card.get_by_role("timer")).to_have_text(re.compile(r"^0:0[0-9]$"))
        time.sleep(TALK)
        received = _received(page)

        # Hold: callbridge plays the music to the desk phone; the card says
        # so once the server has.
        # The times the server's hold began after and ended before, by the
        # desk phone's recording (which began at `established`).
        hold = card.get_by_role("button", name="Hold")
        hold_clicked = time.monotonic() - established
        hold.click()
        expect(card).to_contain_text("on hold")
        expect(hold).to_have_attribute("aria-pressed", "true")
        held_at = time.monotonic() - established
        screenshot(page, "on-hold")
        time.sleep(HOLD)
        resume_clicked = time.monotonic() - established
        hold.click()
        expect(card).not_to_contain_text("on hold")
        resume_seen = time.monotonic() - established

        # A digit from the keypad, as RFC 4733 events in the browser's media.
        card.get_by_role("button", name="Keypad").click()
        card.get_by_role("button", name="Send 5").click()
        assert digits_heard(desk, 1) == "5", desk.log()

        # Mute is the browser's own: pressed, then released.
        mute = card.get_by_role("button", name="Mute")
        mute.click()
        expect(mute).to_have_attribute("aria-pressed", "true")
        expect(card).to_contain_text("muted")
        mute.click()
        expect(mute).to_have_attribute("aria-pressed", "false")

        card.get_by_label("Note").fill("Wants the invoice resent")
        card.get_by_role("button", name="Save note").click()
        expect(card.get_by_role("list", name="Notes of this call")).to_contain_text(
            "Wants the invoice resent"
        )
        screenshot(page, "in-call-controls")
        time.sleep(TALK)
        card.get_by_role("button", name="Hang up").click()
        desk.wait_event("CALL_CLOSED", 5)
        expect(card).to_have_count(0)
    diagnostics = f"--- callbridge ---\n{server.log()}\n--- desk ---\n{desk.log()}"
    # The browser's tone, through Chromium's own audio processing (its gain
    # control changes the level) and our WebRTC leg, at the desk phone:
    # before the hold, and again after it.
    tones.assert_hears(
        desk, CALLEE_TONE, diagnostics, seconds=TALK - 2, first=hold_clicked, same_level=False
    )
    tones.assert_hears(
        desk, CALLEE_TONE, diagnostics, seconds=TALK - 2, last=TALK, same_level=False
    )
    # While held, the desk phone heard the melody, not the browser.
    [recording] = desk.recordings("dec")
    samples, rate = read_samples(recording)
    music = analyse_music(samples[int((held_at + 0.5) * rate) : int(resume_clicked * rate)], rate)
    assert music.share > 0.9 and music.notes >= 4, f"{music}\n{diagnostics}"
    assert received is not None, diagnostics
    # 50 packets a second of the desk phone's tone, at its level.
    assert received["packets"] >= 40 * (TALK - 1), (received, diagnostics)
    assert received["energy"] > 0.05, (received, diagnostics)
    with pbx.api() as api:

        def closed() -> bool:
            return bool(api.get(f"/api/v1/calls/{call_id}").json()["status"] == "answered")

        _until(closed, "the call's record was not closed")
        record = api.get(f"/api/v1/calls/{call_id}").json()
        notes = api.get(f"/api/v1/calls/{call_id}/notes").json()["items"]
    # Counted by the server from the hold to the resume, in whole seconds.
    shortest, longest = resume_clicked - held_at, resume_seen - hold_clicked
    assert shortest - 1 <= record["hold_seconds"] <= longest + 1, (record, shortest, longest)
    assert record["hangup_side"] == "callee", record  # the operator hung up
    assert [n["text"] for n in notes] == ["Wants the invoice resent"], notes
    page.get_by_role("link", name="History").click()
    expect(page.locator(f'li.call[data-call-id="{call_id}"]')).to_contain_text("answered")


def test_a_reload_ends_the_softphone_call_and_says_so(
    pbx: Pbx, tone_page: Page, tmp_path: Path
) -> None:
    page = _operator_with_a_colleague(pbx, tone_page)
    with _desk_phone(pbx, tmp_path) as desk:
        _answered_in_the_panel(pbx, page, desk)
        expect(page.locator(".ringing.answered")).to_be_visible()
        page.reload()
        # The page's audio went with it: its BYE ends the call at once,
        # rather than leaving the caller in silence.
        desk.wait_event("CALL_CLOSED", 5)
    expect(
        page.get_by_role("status").filter(has_text="ended when the page was reloaded")
    ).to_contain_text(str(ALICE.number))
    expect(page.locator(".ringing")).to_have_count(0)
    expect(page.locator(".badge")).to_have_attribute("data-state", "registered")


def test_the_operator_dials_a_colleague_from_the_pad_and_hangs_up(
    pbx: Pbx, tone_page: Page, tmp_path: Path
) -> None:
    page = _operator_with_a_colleague(pbx, tone_page)
    with _desk_phone(pbx, tmp_path, auto_answer=True) as desk:
        desk.wait_registered()
        page.get_by_label("Number").fill(ALICE.number)
        page.get_by_role("button", name="Call", exact=True).click()
        card = page.locator(".ringing")
        expect(card).to_contain_text(ALICE.number)
        desk.wait_event("CALL_ESTABLISHED", 10)
        expect(card).to_have_class(re.compile(r"\banswered\b"))
        # In a call, the card carries the keypad and Hang up: no dial pad.
        expect(page.get_by_label("Number")).to_have_count(0)
        time.sleep(TALK)
        card.get_by_role("button", name="Hang up").click()
        desk.wait_event("CALL_CLOSED", 5)
    expect(card).to_have_count(0)
    expect(page.get_by_label("Number")).to_be_visible()
    diagnostics = f"--- callbridge ---\n{pbx.server.log()}\n--- desk ---\n{desk.log()}"
    tones.assert_hears(desk, CALLEE_TONE, diagnostics, seconds=TALK - 1, same_level=False)


def test_a_delayed_offer_rings_the_panel_which_gets_our_own_offer(
    pbx: Pbx, tone_page: Page
) -> None:
    """RFC 3261 §13.2.1 with a browser: the caller's INVITE has no SDP, so
    callbridge offers the browser the relay's formats itself; the browser's
    answer becomes our offer in the caller's 200, and the caller answers in
    its ACK; then audio flows both ways."""
    page = _operator_with_a_colleague(pbx, tone_page)
    alice_media = pbx.rtp(0x11)
    caller = pbx.call(
        ALICE, "102", "call_uac_delayed_offer.xml", rtp_port=alice_media.port, talk_ms=5000
    )
    answer = page.locator(".ringing").get_by_role("button", name="Answer")
    expect(answer).to_be_enabled()
    answer.click()
    offer = _wait_for(caller, _first("received", method="INVITE", status=200), "the 200")
    assert "RTP/AVP" in offer.body and "ice-" not in offer.body, offer.text
    alice_media.send_to(offer.sdp_media())
    time.sleep(3)
    received = _received(page)
    caller.wait()
    why = f"{caller.exchange()}\n--- callbridge ---\n{pbx.server.log()}"
    # The caller's stream reached the browser, and the browser's the caller.
    assert received is not None and received["packets"] >= 50, (received, why)
    assert len(alice_media.received) >= 50, why
    [record] = pbx.calls(1)
    assert record["status"] == "answered", record
