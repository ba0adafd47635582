"""The recording player in the panel's History: a call on a recorded line
(SIPp phones through callbridge, recording off for everyone else) gets a
Play control that opens an <audio> player on a recording link, which plays
and seeks the server's WAV by Range; a call not recorded gets none; a link
that stopped working is asked for again at the next Play, and an API error
is said in the row, in a card's History too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, Response, expect

from ..integration.test_calls import ALICE, BOB, CAROL, Pbx
from .conftest import screenshot
from .test_calls import _employ_bob, _fits_the_side_panel, _sign_in, _until

pytestmark = pytest.mark.integration

TALK_MS = 2000
PLAY = "Play recording"


def _duration(audio: Locator) -> float:
    """The player's duration once it has read the file's header."""
    _until(lambda: bool(audio.evaluate("a => a.duration > 0")), "the player read no duration", 5)
    return float(audio.evaluate("a => a.duration"))


def _recorded_call(pbx: Pbx) -> tuple[str, str]:
    """Alice calls Bob, whose line is recorded; then Carol, whose line says
    never. The ids of the recorded call and of the other, once the
    recording is complete."""
    desk_phone = pbx.device(BOB, "call_uas_answer.xml", extra=("-m", "2"))
    alice = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=TALK_MS)
    assert alice.wait().successful == 1, pbx.explain()
    carol = pbx.call(CAROL, BOB.number, "call_uac.xml")
    assert carol.wait().successful == 1, pbx.explain()
    assert desk_phone.wait().successful == 2, pbx.explain()
    found: dict[str, Any] = {}
    with pbx.api() as api:

        def complete() -> bool:
            items = api.get("/api/v1/calls").json()["items"]
            found.update({item["caller_number"]: item for item in items})
            return len(items) == 2 and found[ALICE.number]["recording"] is not None

        _until(complete, "the recording was not completed")
    assert found[CAROL.number]["status"] == "answered", found
    assert found[CAROL.number]["recording"] is None, found
    return found[ALICE.number]["id"], found[CAROL.number]["id"]


def test_a_recorded_call_plays_and_seeks_in_the_history_and_a_card(
    start_pbx: Callable[..., Pbx], page: Page
) -> None:
    pbx = start_pbx(CALLBRIDGE_RECORDING="false")
    _employ_bob(pbx, ring_timeout=5, recording=True)
    pbx.line(ALICE)
    pbx.line(CAROL, recording=False)
    recorded_id, plain_id = _recorded_call(pbx)
    with pbx.api() as api:
        anna = api.post(
            "/api/v1/contacts",
            json={"name": "Anna Petrova", "call_id": recorded_id, "phones": []},
        )
        assert anna.status_code == 201, anna.text

    audio_answers: list[Response] = []
    links: list[Response] = []

    def seen(response: Response) -> None:
        if "/recording?token=" in response.url:
            audio_answers.append(response)
        elif response.url.endswith("/recording/link"):
            links.append(response)

    page.on("response", seen)
    _sign_in(page, pbx)
    page.get_by_role("link", name="History").click()
    row = page.locator(f'li.call[data-call-id="{recorded_id}"]')
    plain = page.locator(f'li.call[data-call-id="{plain_id}"]')
    expect(plain).to_be_visible()
    expect(plain.get_by_role("button", name=PLAY)).to_have_count(0)

    # From the keyboard: the player opens, reads the length, and seeks.
    row.get_by_role("button", name=PLAY).focus()
    page.keyboard.press("Enter")
    audio = row.locator("audio")
    expect(audio).to_have_attribute("preload", "metadata")
    duration = _duration(audio)
    assert abs(duration - TALK_MS / 1000) <= 1, duration
    middle = duration / 2
    assert audio.evaluate(
        """(a, t) => Array.from({length: a.seekable.length},
                              (_, i) => [a.seekable.start(i), a.seekable.end(i)])
                  .some(([start, end]) => start <= t && t <= end)""",
        middle,
    ), "the middle is not seekable"
    landed = audio.evaluate(
        """(a, t) => new Promise((done) => {
             a.addEventListener("seeked", () => done(a.currentTime), {once: true});
             a.currentTime = t;
           })""",
        middle,
    )
    assert abs(landed - middle) < 0.25, (landed, middle)
    partial = [r for r in audio_answers if r.status == 206]
    assert partial, [(r.status, r.url) for r in audio_answers]
    assert partial[0].headers["content-range"].startswith("bytes 0-"), partial[0].headers
    screenshot(page, "player")
    _fits_the_side_panel(page)

    # A link the server no longer knows (an expired one answers the same
    # 401): the row says so, and Play asks for a new link that plays.
    audio.evaluate("a => { a.src = a.src.replace(/token=[^&]*/, 'token=no-longer-valid'); }")
    expect(row.get_by_role("alert")).to_contain_text("press Play recording again")
    _until(lambda: audio_answers[-1].status == 401, "the server did not refuse the token")
    row.get_by_role("button", name=PLAY).click()
    expect(row.get_by_role("alert")).to_have_count(0)
    _until(lambda: len(links) == 2, "Play asked for no new link")
    assert _duration(audio) == duration

    # The card's own History has the player too; the recording deleted
    # meanwhile, Play says why it cannot play.
    row.get_by_role("link", name="Anna Petrova").click()
    expect(page.get_by_role("heading", name="Contact Anna Petrova")).to_be_visible()
    card_row = page.locator(f'li.call[data-call-id="{recorded_id}"]')
    with pbx.api() as api:
        deleted = api.delete(f"/api/v1/calls/{recorded_id}/recording")
        assert deleted.status_code == 204, deleted.text
    card_row.get_by_role("button", name=PLAY).click()
    expect(card_row.get_by_role("alert")).to_have_text(
        "The recording cannot be played: this call has no recording"
    )
    expect(card_row.locator("audio")).to_have_count(0)
