"""A browser's calls through `callbridge serve`, end to end, against baresip
as the desk phone. aiortc is the browser; its SIP goes over UDP from a small
agent here (the SIP WebSocket is another piece of work), registering with a
`;transport=ws` Contact as JsSIP does. The browser calls the desk phone
(callbridge answers it with ICE-lite + DTLS-SRTP and offers the phone plain
RTP), and the desk phone calls the browser (offered WebRTC with actpass).
Each side plays a tone and the other must hear it."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from callbridge.sip.digest import compute_ha1, compute_response
from tests.webrtc_peer import Browser, tone_level

from . import tones
from .baresip import Baresip
from .conftest import Server, start_server, stop_server
from .test_audio import ADMIN_PASSWORD, ALICE, BOB, create_lines, line_account, phone
from .tones import CALLEE_TONE, CALLER_TONE

pytestmark = pytest.mark.integration

CALLBRIDGE_RTP_PORTS = (31000, 31999)
CALLEE_RTP_PORTS = (32000, 32199)
CALLER_RTP_PORTS = (32200, 32399)
TALK = 3.0


class BrowserSip(asyncio.DatagramProtocol):
    """Just enough SIP over UDP for a browser: as a caller INVITE (answering
    the 407), ACK, BYE; as a callee REGISTER (answering the 401) with a
    WebSocket Contact as JsSIP's, INVITEs queued for the test to answer, BYE
    answered."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.responses: asyncio.Queue[str] = asyncio.Queue()
        self.invites: asyncio.Queue[str] = asyncio.Queue()
        self.byes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0"):
            self.responses.put_nowait(text)
        elif text.startswith("INVITE"):
            self.invites.put_nowait(text)
        elif text.startswith("BYE"):
            self.byes += 1
            self.respond(text, "200 OK")

    def respond(
        self, request: str, status: str, extra: tuple[str, ...] = (), body: str = ""
    ) -> None:
        head = request.split("\r\n\r\n", 1)[0].split("\r\n")
        names = ("via", "from", "to", "call-id", "cseq")
        keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in names]
        lines = [f"SIP/2.0 {status}", *keep, *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self._send("\r\n".join(lines) + "\r\n\r\n" + body)

    def _send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.server)

    @property
    def local(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def request(
        self, method: str, uri: str, headers: list[str], body: str = "", branch: str = ""
    ) -> str:
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local};branch={branch};rport",
            "Max-Forwards: 70",
            *headers,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        self._send("\r\n".join(lines) + "\r\n\r\n" + body)
        return branch

    async def final(self, timeout: float = 10) -> str:
        while True:
            response = await asyncio.wait_for(self.responses.get(), timeout)
            if not response.startswith("SIP/2.0 1"):
                return response


def authorization(challenge: str, *, method: str, uri: str, username: str, password: str) -> str:
    """An MD5 digest answer (qop=auth) to a 401's or 407's challenge."""
    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    response = compute_response(
        ha1=compute_ha1(username, params["realm"], password),
        algorithm="MD5",
        method=method,
        uri=uri,
        nonce=params["nonce"],
        qop="auth",
        nc=1,
        cnonce="0a1b2c3d",
    )
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (
        f'Digest username="{username}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a1b2c3d", '
        f'response="{response}"{opaque}'
    )


def header(message: str, name: str) -> str:
    found = re.search(rf"^{name}:\s*(.*)$", message, re.M | re.I)
    assert found, f"no {name} in {message}"
    return found.group(1).strip()


async def open_agent(server: Server) -> BrowserSip:
    loop = asyncio.get_running_loop()
    _, sip = await loop.create_datagram_endpoint(
        lambda: BrowserSip((server.host, server.port)), local_addr=("127.0.0.1", 0)
    )
    return sip


async def register_browser(server: Server, sip: BrowserSip, line: tuple[str, str, str]) -> None:
    """REGISTER `line` as JsSIP does: a Contact with transport=ws."""
    number, username, password = line
    uri = f"sip:{server.host}:{server.port}"
    aor = f"<sip:{username}@{server.host}:{server.port}>"
    base = [
        f"From: {aor};tag={secrets.token_hex(4)}",
        f"To: {aor}",
        f"Call-ID: {secrets.token_hex(10)}",
        f"Contact: <sip:{number}@{sip.local};transport=ws>",
        "Expires: 600",
    ]
    sip.request("REGISTER", uri, [*base, "CSeq: 1 REGISTER"])
    challenge = await sip.final()
    assert challenge.startswith("SIP/2.0 401"), challenge
    credentials = authorization(
        header(challenge, "WWW-Authenticate"),
        method="REGISTER",
        uri=uri,
        username=username,
        password=password,
    )
    sip.request("REGISTER", uri, [*base, "CSeq: 2 REGISTER", f"Authorization: {credentials}"])
    ok = await sip.final()
    assert ok.startswith("SIP/2.0 200"), ok


async def browser_call(server: Server, browser: Browser, callee: str) -> tuple[BrowserSip, str]:
    """The browser's INVITE with credentials after the 407, and its ACK; the
    SIP agent and callbridge's answer."""
    sip = await open_agent(server)
    number, username, password = ALICE
    uri = f"sip:{callee}@{server.host}:{server.port}"
    call_id, tag = secrets.token_hex(10), secrets.token_hex(4)
    base = [
        f"From: <sip:{number}@{server.host}>;tag={tag}",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        f"Contact: <sip:{number}@{sip.local};transport=udp>",
    ]
    offer = await browser.offer()
    first = sip.request("INVITE", uri, [*base, "CSeq: 1 INVITE"], offer)
    challenge = await sip.final()
    assert challenge.startswith("SIP/2.0 407"), challenge
    # The ACK of a non-2xx belongs to the INVITE's transaction: its branch.
    to_challenge = [*base[:1], f"To: {header(challenge, 'To')}", *base[2:3], "CSeq: 1 ACK"]
    sip.request("ACK", uri, to_challenge, branch=first)
    credentials = authorization(
        header(challenge, "Proxy-Authenticate"),
        method="INVITE",
        uri=uri,
        username=username,
        password=password,
    )
    sip.request(
        "INVITE", uri, [*base, "CSeq: 2 INVITE", f"Proxy-Authorization: {credentials}"], offer
    )
    ok = await sip.final(timeout=15)
    assert ok.startswith("SIP/2.0 200"), ok
    to = header(ok, "To")
    target = re.search(r"<([^>]+)>", header(ok, "Contact"))
    assert target is not None
    sip.request("ACK", target.group(1), [*base[:1], f"To: {to}", *base[2:3], "CSeq: 2 ACK"])
    sip.dialog = (target.group(1), [*base[:1], f"To: {to}", *base[2:3]])  # type: ignore[attr-defined]
    return sip, ok.split("\r\n\r\n", 1)[1]


@pytest.fixture
def callbridge(tmp_path: Path) -> Iterator[Server]:
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
        CALLBRIDGE_LOG_SIP_MESSAGES="true",
    )
    try:
        create_lines(server)
        yield server
    finally:
        stop_server(server.process)


def recording_of(server: Server, workdir: Path) -> Path:
    """The answered call's recording, fetched from a link as the panel's
    player does (no Authorization header), once the call's record has it."""
    base_url = f"http://127.0.0.1:{server.http_port}"
    with httpx.Client(base_url=base_url, timeout=10) as api:
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        for _ in range(50):
            items = api.get("/api/v1/calls").json()["items"]
            if items and items[0]["status"] != "in_progress" and items[0]["recording"]:
                break
            time.sleep(0.1)
        assert items[0]["status"] == "answered", items
        link = api.post(f"/api/v1/calls/{items[0]['id']}/recording/link").json()["url"]
        played = httpx.get(base_url + link, timeout=10)
    assert played.status_code == 200, played.text
    path = workdir / "recording.wav"
    path.write_bytes(played.content)
    return path


async def test_a_browser_calls_a_desk_phone_and_each_hears_the_other(
    callbridge: Server, tmp_path: Path
) -> None:
    desk: Baresip = phone(
        tmp_path / "callee", line_account(callbridge, BOB), CALLEE_TONE, CALLEE_RTP_PORTS
    )
    browser = Browser(CALLER_TONE)
    try:
        with desk:
            desk.wait_registered()
            sip, answer = await browser_call(callbridge, browser, BOB[0])
            await browser.accept(answer)
            # Ours: ICE-lite, DTLS passive, one host candidate on our address.
            assert "a=ice-lite" in answer and "a=setup:passive" in answer, answer
            assert re.findall(r"a=candidate:\S+ 1 udp \d+ (\S+) ", answer) == [callbridge.host]
            await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 5)
            deadline = time.monotonic() + 10
            while browser.state != "connected" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert browser.state == "connected", callbridge.log()
            await asyncio.sleep(TALK)
            target, dialog = sip.dialog  # type: ignore[attr-defined]
            sip.request("BYE", target, [*dialog, "CSeq: 3 BYE"])
            bye = await sip.final()
            assert bye.startswith("SIP/2.0 200"), bye
            await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 5)
    finally:
        await browser.close()
    diagnostics = f"--- callbridge ---\n{callbridge.log()}\n--- desk ---\n{desk.log()}"
    # What the desk phone got was plain RTP/AVP with G.711 only.
    offered = re.findall(r"^m=audio \d+ (\S+) ", desk.log(), re.M)
    assert "RTP/AVP" in offered and "UDP/TLS/RTP/SAVPF" not in offered, diagnostics
    # A browser with G.711 is relayed: its leg never gets a transcoder.
    assert "media.webrtc_codec" not in callbridge.log(), diagnostics
    tones.assert_hears(desk, CALLER_TONE, diagnostics, seconds=TALK - 1)
    rms, peak, purity = tone_level(browser.samples(last=TALK - 1), CALLEE_TONE)
    assert abs(peak - CALLEE_TONE) < 20 and purity > 0.9 and rms > 5000, (rms, peak, purity)

    # Recorded like any call: the browser (the caller, an internal call's
    # customer) on the left, the desk phone on the right; played from a
    # link as the panel's player does, without the header.
    recording = recording_of(callbridge, tmp_path)
    left = tones.channel_heard(recording, 0, CALLER_TONE, tmp_path)
    right = tones.channel_heard(recording, 1, CALLEE_TONE, tmp_path)
    for heard, tone in ((left, CALLER_TONE), (right, CALLEE_TONE)):
        assert heard.seconds >= TALK - 1 and abs(heard.peak_hz - tone) <= 20, (heard, diagnostics)
        assert heard.purity >= 0.9, (heard, diagnostics)


async def test_a_desk_phone_calls_a_browser_which_is_offered_webrtc_and_both_hear(
    callbridge: Server, tmp_path: Path
) -> None:
    desk: Baresip = phone(
        tmp_path / "caller", line_account(callbridge, ALICE), CALLER_TONE, CALLER_RTP_PORTS
    )
    browser = Browser(CALLEE_TONE)
    sip = await open_agent(callbridge)
    try:
        await register_browser(callbridge, sip, BOB)
        with desk:
            desk.wait_registered()
            desk.dial(f"sip:{BOB[0]}@{callbridge.host}:{callbridge.port}")
            invite = await asyncio.wait_for(sip.invites.get(), 10)
            offer = invite.split("\r\n\r\n", 1)[1]
            # Ours to the browser: WebRTC, actpass, one host candidate.
            assert "UDP/TLS/RTP/SAVPF" in offer and "a=setup:actpass" in offer, offer
            assert "a=ice-lite" in offer and "a=rtcp-mux" in offer, offer
            answer = await browser.answer(offer)
            tag = ";tag=" + secrets.token_hex(4)
            to = header(invite, "To") + tag
            head = invite.replace(header(invite, "To"), to, 1)
            sip.respond(head, "180 Ringing")
            contact = f"Contact: <sip:{BOB[0]}@{sip.local};transport=ws>"
            sip.respond(head, "200 OK", (contact,), answer)
            await asyncio.to_thread(desk.wait_event, "CALL_ESTABLISHED", 5)
            deadline = time.monotonic() + 10
            while browser.state != "connected" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert browser.state == "connected", callbridge.log()
            await asyncio.sleep(TALK)
            desk.hangup()
            await asyncio.to_thread(desk.wait_event, "CALL_CLOSED", 5)
            deadline = time.monotonic() + 5
            while sip.byes == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert sip.byes == 1
    finally:
        await browser.close()
        assert sip.transport is not None
        sip.transport.close()
    diagnostics = f"--- callbridge ---\n{callbridge.log()}\n--- desk ---\n{desk.log()}"
    tones.assert_hears(desk, CALLEE_TONE, diagnostics, seconds=TALK - 1)
    rms, peak, purity = tone_level(browser.samples(last=TALK - 1), CALLER_TONE)
    assert abs(peak - CALLER_TONE) < 20 and purity > 0.9 and rms > 5000, (rms, peak, purity)
