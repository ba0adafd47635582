"""A browser that speaks only Opus (aiortc with its codecs restricted to
Opus), through `callbridge serve`, against baresip as the desk phone: its leg
is transcoded (Opus on the browser's side, G.711 for the phone and the
recorder), and each side hears the other's tone. A browser with G.711 is
still relayed without transcoding (test_webrtc_calls.py checks the log)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path

import pytest

from tests.webrtc_peer import Browser, tone_level

from . import tones
from .baresip import Baresip
from .conftest import Server
from .test_audio import ALICE, BOB, line_account, phone
from .test_webrtc_calls import (
    CALLEE_RTP_PORTS,
    CALLER_RTP_PORTS,
    TALK,
    browser_call,
    callbridge,
    header,
    open_agent,
    recording_of,
    register_browser,
)
from .tones import CALLEE_TONE, CALLER_TONE

pytestmark = pytest.mark.integration

__all__ = ["callbridge"]  # the fixture, shared with test_webrtc_calls.py

OPUS = ("audio/opus",)


async def wait_connected(browser: Browser, server: Server) -> None:
    deadline = time.monotonic() + 10
    while browser.state != "connected" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert browser.state == "connected", server.log()


async def test_an_opus_only_browser_calls_a_desk_phone_transcoded_and_each_hears_the_other(
    callbridge: Server, tmp_path: Path
) -> None:
    desk: Baresip = phone(
        tmp_path / "callee", line_account(callbridge, BOB), CALLEE_TONE, CALLEE_RTP_PORTS
    )
    browser = Browser(CALLER_TONE, codecs=OPUS)
    try:
        with desk:
            desk.wait_registered()
            sip, answer = await browser_call(callbridge, browser, BOB[0])
            # Ours names the browser's Opus alone; the phone was offered G.711.
            formats = re.search(r"^m=audio \d+ UDP/TLS/RTP/SAVPF ([\d ]+)", answer, re.M)
            assert formats is not None, answer
            assert re.search(r"a=rtpmap:\d+ opus/48000/2", answer), answer
            assert "PCMU" not in answer and "PCMA" not in answer, answer
            await browser.accept(answer)
            await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 5)
            await wait_connected(browser, callbridge)
            await asyncio.sleep(TALK)
            target, dialog = sip.dialog  # type: ignore[attr-defined]
            sip.request("BYE", target, [*dialog, "CSeq: 3 BYE"])
            bye = await sip.final()
            assert bye.startswith("SIP/2.0 200"), bye
            await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 5)
            sip.transport.close()  # type: ignore[union-attr]
    finally:
        await browser.close()
    log = callbridge.log()
    diagnostics = f"--- callbridge ---\n{log}\n--- desk ---\n{desk.log()}"
    assert "media.webrtc_codec" in log and "opus-transcoded" in log, diagnostics
    offered = re.findall(r"^m=audio \d+ RTP/AVP ([\d ]+)", desk.log(), re.M)
    assert offered and set(offered[0].split()) <= {"0", "8", "101"}, diagnostics
    # aiortc's Opus encoder upmixes its mono tone to stereo at -3 dB (the
    # centre-channel mix level): the level the phone hears is not the one sent.
    tones.assert_hears(desk, CALLER_TONE, diagnostics, seconds=TALK - 1, same_level=False)
    rms, peak, purity = tone_level(browser.samples(last=TALK - 1), CALLEE_TONE)
    assert abs(peak - CALLEE_TONE) < 20 and purity > 0.9 and rms > 3000, (rms, peak, purity)
    # The recorder taps G.711 on both legs: both tones, one a channel.
    recording = recording_of(callbridge, tmp_path)
    left = tones.channel_heard(recording, 0, CALLER_TONE, tmp_path)
    right = tones.channel_heard(recording, 1, CALLEE_TONE, tmp_path)
    for heard, tone in ((left, CALLER_TONE), (right, CALLEE_TONE)):
        assert heard.seconds >= TALK - 1 and abs(heard.peak_hz - tone) <= 20, (heard, diagnostics)
        assert heard.purity >= 0.9, (heard, diagnostics)


async def test_a_desk_phone_calls_an_opus_only_browser_transcoded_and_both_hear(
    callbridge: Server, tmp_path: Path
) -> None:
    desk: Baresip = phone(
        tmp_path / "caller", line_account(callbridge, ALICE), CALLER_TONE, CALLER_RTP_PORTS
    )
    browser = Browser(CALLEE_TONE, codecs=OPUS)
    sip = await open_agent(callbridge)
    try:
        await register_browser(callbridge, sip, BOB)
        with desk:
            desk.wait_registered()
            desk.dial(f"sip:{BOB[0]}@{callbridge.host}:{callbridge.port}")
            invite = await asyncio.wait_for(sip.invites.get(), 10)
            offer = invite.split("\r\n\r\n", 1)[1]
            assert re.search(r"a=rtpmap:\d+ opus/48000/2", offer), offer
            answer = await browser.answer(offer)
            assert "PCMU" not in answer and "opus" in answer, answer
            to = header(invite, "To") + ";tag=" + secrets.token_hex(4)
            head = invite.replace(header(invite, "To"), to, 1)
            contact = f"Contact: <sip:{BOB[0]}@{sip.local};transport=ws>"
            sip.respond(head, "200 OK", (contact,), answer)
            await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 5)
            await wait_connected(browser, callbridge)
            await asyncio.sleep(TALK)
            desk.hangup()
            await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 5)
    finally:
        await browser.close()
        assert sip.transport is not None
        sip.transport.close()
    log = callbridge.log()
    diagnostics = f"--- callbridge ---\n{log}\n--- desk ---\n{desk.log()}"
    assert "opus-transcoded" in log, diagnostics
    tones.assert_hears(desk, CALLEE_TONE, diagnostics, seconds=TALK - 1, same_level=False)
    rms, peak, purity = tone_level(browser.samples(last=TALK - 1), CALLER_TONE)
    assert abs(peak - CALLER_TONE) < 20 and purity > 0.9 and rms > 3000, (rms, peak, purity)
