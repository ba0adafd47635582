"""A browser's softphone over SIP-over-WebSocket (`/ws/sip`, RFC 7118) with
the short-lived credential `POST /api/v1/me/sip-credentials` gives it: it
registers as one of its employee's devices, is called over its own socket
beside a SIPp desk phone, and goes when its socket closes. And what an
attacker tries with the credential or the socket gets the right refusal."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import queue
import secrets
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from .conftest import free_port, start_sipp, stop_server
from .test_calls import (
    ALICE,
    BOB,
    Pbx,
    _assert_succeeded,
    start_pbx,  # noqa: F401 - a fixture
)
from .ws_phone import WsPhone, header, plain_sdp, sip_websocket, status_of

pytestmark = pytest.mark.integration

SECRET = "a-test-secret-for-browser-credentials"
LOGIN = ("bob", "bob-signs-in-with-this")


@pytest.fixture
def browser_pbx(start_pbx: Callable[..., Pbx]) -> Pbx:  # noqa: F811 - the fixture's name
    # The secret is known so that a test can forge what an attacker could.
    return start_pbx(CALLBRIDGE_BROWSER_SIP_SECRET=SECRET)


def employee_with_line(pbx: Pbx, *, max_devices: int = 2) -> int:
    """Bob, an employee who signs in, with line 102; his employee id."""
    line_id = pbx.line(BOB, max_devices=max_devices)
    with pbx.api() as api:
        created = api.post(
            "/api/v1/employees",
            json={
                "name": "Bob",
                "login": LOGIN[0],
                "password": LOGIN[1],
                "internal_line_id": line_id,
            },
        )
        assert created.status_code == 201, created.text
        pbx.apply(api)
    return int(created.json()["id"])


def sip_credentials(pbx: Pbx, token: str | None = None) -> dict[str, Any]:
    """Bob's credential, asked with `token` (a new sign-in's without)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{pbx.server.http_port}", timeout=10) as api:
        token = token or sign_in(api)
        issued = api.post(
            "/api/v1/me/sip-credentials", headers={"Authorization": f"Bearer {token}"}
        )
        assert issued.status_code == 200, issued.text
        assert issued.headers["cache-control"] == "no-store"
        body: dict[str, Any] = issued.json()
        return body


def sign_in(api: httpx.Client) -> str:
    signed = api.post("/api/v1/auth/login", json={"username": LOGIN[0], "password": LOGIN[1]})
    assert signed.status_code == 200, signed.text
    token: str = signed.json()["token"]
    return token


def registrations(pbx: Pbx) -> list[dict[str, Any]]:
    with pbx.api() as api:
        lines = api.get("/api/v1/internal-lines").json()["items"]
        [line] = [line for line in lines if line["number"] == BOB.number]
        items: list[dict[str, Any]] = api.get(
            f"/api/v1/internal-lines/{line['id']}/registrations"
        ).json()["items"]
        return items


def wait_registrations(
    pbx: Pbx, expected: Callable[[list[dict[str, Any]]], bool], why: str, timeout: float = 5
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = registrations(pbx)
        if expected(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{why}: {found}")
        time.sleep(0.1)


def stored_transports(pbx: Pbx, settle: float = 1.0) -> list[str]:
    """The transports of line 102's bindings in the store, read `settle`
    seconds after the last REGISTER (they are written in the background,
    within milliseconds)."""
    time.sleep(settle)
    with contextlib.closing(sqlite3.connect(pbx.tmp_path / "callbridge.db")) as db:
        rows = db.execute(
            "SELECT transport FROM registrations WHERE aor = ?", (BOB.number,)
        ).fetchall()
    return sorted(row[0] for row in rows)


@pytest.fixture
def phones() -> Iterator[list[WsPhone]]:
    opened: list[WsPhone] = []
    yield opened
    for phone in opened:
        phone.close()


def browser(pbx: Pbx, phones: list[WsPhone], credential: dict[str, Any]) -> WsPhone:
    phone = WsPhone(
        pbx.server.http_port, BOB.number, credential["username"], credential["password"]
    )
    phones.append(phone)
    return phone


def forged(employee_id: int, number: str, expires_at: int, tag: str) -> tuple[str, str]:
    """A credential made with the server's secret, as docs/SECURITY.md describes it."""
    username = f"web/{employee_id}/{number}/{expires_at}/{tag}"
    key = hashlib.sha256(b"callbridge browser SIP credential v1\x00" + SECRET.encode()).digest()
    mac = hmac.new(key, username.encode(), hashlib.sha256).digest()
    return username, base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_a_browser_registers_as_a_device_of_its_line_and_goes_when_its_socket_closes(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    employee_with_line(pbx)
    credential = sip_credentials(pbx)
    assert credential["ws_url"] == "/ws/sip"
    assert credential["uri"] == f"sip:{BOB.number}@127.0.0.1"
    assert credential["ice_servers"] == []
    assert BOB.password not in str(credential)

    phone = browser(pbx, phones, credential)
    answer = phone.register()
    assert status_of(answer) == 200, answer
    assert ".invalid;transport=ws>" in (header(answer, "Contact") or ""), answer
    # The answer came back over the socket, to the Via of a `.invalid` host.
    assert "received=127.0.0.1" in (header(answer, "Via") or ""), answer

    [device] = wait_registrations(pbx, lambda found: len(found) == 1, "not listed")
    assert device["user_agent"] == "JsSIP 3.10.1 (test)", device
    assert str(device["source"]).startswith("ws:127.0.0.1:"), device

    phone.close()
    wait_registrations(pbx, lambda found: not found, "the closed browser is still bound")
    assert "pbx.browser_gone" in pbx.server.log()


def test_a_browser_counts_against_the_lines_max_devices(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    employee_with_line(pbx, max_devices=1)
    pbx.register(BOB, free_port())  # the desk phone takes the only place
    answer = browser(pbx, phones, sip_credentials(pbx)).register()
    assert status_of(answer) == 403 and "Too Many Devices" in answer, answer


def test_a_call_forks_to_the_desk_phone_and_the_browser_over_its_socket(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    pbx.line(ALICE)
    employee_with_line(pbx)
    # The desk phone first: SIPp's scenario reads the first Contact of its 200.
    desk = pbx.device(BOB, "call_uas_cancelled.xml")
    phone = browser(pbx, phones, sip_credentials(pbx))
    assert status_of(phone.register()) == 200
    # The desk phone's binding is kept for a restart; the browser's socket
    # cannot outlive the process, so its binding is not.
    assert stored_transports(pbx) == ["udp"]
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=500)

    invite = phone.next("INVITE ")
    assert invite.startswith(f"INVITE sip:{phone.contact_user}@{phone.host};transport=ws "), invite
    # Our Via and Contact name the HTTP port, where WebSockets are served.
    http = f"127.0.0.1:{pbx.server.http_port}"
    assert f"SIP/2.0/WS {http};" in (header(invite, "Via") or ""), invite
    assert f"@{http};transport=ws>" in (header(invite, "Contact") or ""), invite
    tag = secrets.token_hex(4)
    phone.respond(invite, "180 Ringing", to_tag=tag)
    phone.respond(invite, "200 OK", to_tag=tag, body=plain_sdp(free_port()))
    phone.next("ACK ")
    bye = phone.next("BYE ")
    phone.respond(bye, "200 OK", to_tag=tag)
    _assert_succeeded(caller, desk, pbx=pbx)

    [record] = pbx.calls(1)
    assert record["status"] == "answered", record
    assert desk.received(method="CANCEL"), pbx.explain()


def test_a_browser_places_a_call_signed_with_its_credential(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    pbx.line(ALICE)
    employee_with_line(pbx)
    callee = pbx.device(ALICE, "call_uas_answer.xml")
    phone = browser(pbx, phones, sip_credentials(pbx))
    assert status_of(phone.register()) == 200

    answer, _, _ = phone.call(ALICE.number, plain_sdp(free_port()))
    assert "transport=ws" in (header(answer, "Contact") or ""), answer
    assert status_of(phone.hang_up(answer)) == 200
    _assert_succeeded(callee, pbx=pbx)
    [record] = pbx.calls(1)
    assert (record["caller_number"], record["callee_number"]) == (BOB.number, ALICE.number)
    assert record["status"] == "answered", record


def test_the_credential_signs_only_over_websocket_only_its_line_only_until_it_expires(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    pbx.line(ALICE)
    employee_id = employee_with_line(pbx)
    credential = sip_credentials(pbx)

    # Another line (Alice's) with Bob's credential: authenticated, refused.
    answer = browser(pbx, phones, credential).register(to=ALICE.number)
    assert status_of(answer) == 403 and "Not Your Line" in answer, answer

    # Tampered: Bob's password with Alice's line in the username: no digest matches.
    username = credential["username"].replace(f"/{BOB.number}/", f"/{ALICE.number}/")
    phone = WsPhone(pbx.server.http_port, ALICE.number, username, credential["password"])
    phones.append(phone)
    assert status_of(phone.register()) == 401

    # Expired (made with the secret, so the digest is right): refused, and said why.
    tag = credential["username"].rsplit("/", 1)[1]
    username, password = forged(employee_id, BOB.number, int(time.time()) - 1, tag)
    phone = WsPhone(pbx.server.http_port, BOB.number, username, password)
    phones.append(phone)
    answer = phone.register()
    assert status_of(answer) == 403 and "Credential Expired" in answer, answer

    # Over UDP, the valid credential is nobody's.
    refused = start_sipp(
        "register_refused.xml",
        pbx.server,
        pbx.tmp_path,
        timeout=10,
        recv_timeout=3,
        extra=["-s", BOB.number, "-au", credential["username"], "-ap", credential["password"]],
    )
    refused.wait(timeout=15)
    # Challenged again after its credentials, and never bound.
    assert len(refused.received(status=401, method="REGISTER")) == 2, refused.exchange()
    assert not refused.received(status=200, method="REGISTER"), refused.exchange()
    assert registrations(pbx) == []
    assert "auth.failed" in pbx.server.log()


def test_a_leavers_browser_is_let_go_and_refused_at_once(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    employee_id = employee_with_line(pbx)
    phone = browser(pbx, phones, sip_credentials(pbx))
    assert status_of(phone.register()) == 200
    wait_registrations(pbx, lambda found: len(found) == 1, "not registered")

    with pbx.api() as api:
        deleted = api.delete(f"/api/v1/employees/{employee_id}")
        assert deleted.status_code == 204, deleted.text
    wait_registrations(pbx, lambda found: not found, "the leaver's browser stayed bound")
    # Its credential has hours left, and its digest is right: refused all the same.
    answer = phone.register()
    assert status_of(answer) == 403 and "Line Disabled" in answer, answer


def test_signing_out_lets_that_sign_ins_browser_go_and_refuses_its_credential(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    employee_with_line(pbx)
    with httpx.Client(base_url=f"http://127.0.0.1:{pbx.server.http_port}", timeout=10) as api:
        tokens = [sign_in(api), sign_in(api)]  # two tabs, two sign-ins
    leaving, staying = (browser(pbx, phones, sip_credentials(pbx, t)) for t in tokens)
    assert status_of(leaving.register()) == 200 and status_of(staying.register()) == 200
    wait_registrations(pbx, lambda found: len(found) == 2, "not both registered")

    with httpx.Client(base_url=f"http://127.0.0.1:{pbx.server.http_port}", timeout=10) as api:
        out = api.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens[0]}"})
        assert out.status_code == 204, out.text
    [kept] = wait_registrations(pbx, lambda found: len(found) == 1, "the signed-out tab stayed")
    assert kept["contact"].startswith(f"<sip:{staying.contact_user}@"), kept
    answer = leaving.register()
    assert status_of(answer) == 403 and "Credential Revoked" in answer, answer
    assert "pbx.browser_revoked" in pbx.server.log()


def test_a_handshake_without_the_sip_subprotocol_is_refused(browser_pbx: Pbx) -> None:
    pbx = browser_pbx
    for offered in ((), ("chat",)):
        with pytest.raises(InvalidStatus) as refused:
            sip_websocket(pbx.server.http_port, subprotocols=offered)
        assert refused.value.response.status_code == 403
    with sip_websocket(pbx.server.http_port) as ws:
        assert ws.subprotocol == "sip"


def test_malformed_frames_get_400_or_are_dropped_and_an_oversized_one_closes_the_socket(
    browser_pbx: Pbx, phones: list[WsPhone]
) -> None:
    pbx = browser_pbx
    phone = WsPhone(pbx.server.http_port, BOB.number, "nobody", "nothing")
    phones.append(phone)
    # A request with a malformed Max-Forwards: answered 400, over the socket.
    phone.send(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS {phone.host};branch=z9hG4bKbad1\r\n"
        "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: bad1\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: many\r\n\r\n"
    )
    assert status_of(phone.next("SIP/2.0 4")) == 400
    # Garbage is dropped; the socket stays and serves the next request.
    phone.send(b"\x00\xff not SIP at all".decode("latin-1"))
    phone.send(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/WSS {phone.host};branch=z9hG4bKgood\r\n"
        "From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: good\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert status_of(phone.next("SIP/2.0 200")) == 200
    # A frame past the size limit (65,535 by default) closes the socket: 1009.
    phone.send("OPTIONS " + "x" * 70_000)
    assert phone.closed() == 1009
    # Each counted, as callbridge says when it stops.
    stop_server(pbx.server.process)
    [stats] = [line for line in pbx.server.log().splitlines() if " sip.stats " in line]
    for counted in ("parse_errors=2", "answered_errors=1", "ws_oversized=1"):
        assert f" {counted} " in f"{stats} ", stats


def test_a_browser_that_goes_while_its_answers_are_queued_costs_no_traceback(
    browser_pbx: Pbx,
) -> None:
    # Found by the SIP fuzzer over /ws/sip: a client that closes right after
    # a burst of requests; the server closes its side of the socket at once,
    # and the answers still queued could not be sent (an ERROR with a
    # traceback in the log, "websocket.send after websocket.close").
    pbx = browser_pbx
    for attempt in range(20):
        with sip_websocket(pbx.server.http_port) as ws:
            for n in range(20):
                ws.send(
                    "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/WS client.invalid;branch=z9hG4bKgone{attempt}x{n}\r\n"
                    f"From: <sip:x@127.0.0.1>;tag={n}\r\nTo: <sip:127.0.0.1>\r\n"
                    f"Call-ID: gone{attempt}x{n}\r\nCSeq: 1 OPTIONS\r\n"
                    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
    time.sleep(1.5)  # what a closed socket's writer may still flush
    log = pbx.server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


# --- JsSIP itself, the softphone's SIP stack, under Node ---------------------

JSSIP = Path(__file__).parent / "jssip"


class JsSip:
    """tests/integration/jssip/peer.mjs: JsSIP registering with a credential,
    reporting each event as a JSON line; stopped (unregistering) by closing
    its stdin."""

    def __init__(self, pbx: Pbx, credential: dict[str, Any]) -> None:
        node = shutil.which("node")
        if node is None or not (JSSIP / "node_modules" / "jssip").is_dir():
            pytest.fail("JsSIP is not installed: `make test-deps` runs npm ci in " + str(JSSIP))
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [node, str(JSSIP / "peer.mjs")],
            cwd=JSSIP,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **os.environ,
                "JSSIP_WS_URL": f"ws://127.0.0.1:{pbx.server.http_port}{credential['ws_url']}",
                "JSSIP_URI": credential["uri"],
                "JSSIP_USERNAME": credential["username"],
                "JSSIP_PASSWORD": credential["password"],
            },
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.events.put(json.loads(line))

    def next(self, event: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                found = self.events.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(found)
            if found["event"] == event:
                return found
        raise AssertionError(f"JsSIP: no {event} within {timeout} s; saw {self.seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def test_jssip_registers_rings_beside_a_desk_phone_and_is_cancelled_when_it_answers(
    browser_pbx: Pbx,
) -> None:
    pbx = browser_pbx
    pbx.line(ALICE)
    employee_with_line(pbx)
    desk = pbx.device(BOB, "call_uas_answer.xml")
    jssip = JsSip(pbx, sip_credentials(pbx))
    try:
        jssip.next("registered")
        found = wait_registrations(pbx, lambda found: len(found) == 2, "JsSIP is not listed")
        [device] = [d for d in found if str(d["source"]).startswith("ws:")]
        assert device["user_agent"] == "JsSIP (callbridge test)", device

        caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=500)
        assert jssip.next("incoming")["from"] == ALICE.number
        # The desk phone answers: the ringing browser is cancelled over its socket.
        assert jssip.next("ended")["cause"] == "Canceled"
        _assert_succeeded(caller, desk, pbx=pbx)
    finally:
        jssip.stop()
    assert jssip.process.returncode == 0
    wait_registrations(pbx, lambda found: len(found) == 1, "JsSIP's binding stayed")
