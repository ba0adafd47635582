"""DTMF through `callbridge serve` with real phones on loopback: digits sent
as RFC 4733 events, as SIP INFO and as tones in the audio each reach the
other phone in the form it accepted, and `POST /api/v1/calls/{id}/dtmf`
plays digits from the API into the employee's own call.

baresip 1.0 sends RFC 4733 (`sndcode`) and reports each digit it receives,
as an event or in an INFO, with `CALL_DTMF_START`; it cannot send INFO, so
SIPp does that."""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from callbridge.media.dtmf import COLUMNS, ROWS

from . import test_calls
from .baresip import Baresip
from .conftest import Server, start_server, start_sipp, stop_server
from .test_calls import start_pbx  # noqa: F401 - a fixture
from .tones import RATE, write_tone

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-dtmf-tests"
EMPLOYEE_PASSWORD = "employee-pass-for-dtmf"


@dataclass(frozen=True)
class LineSpec:
    number: str
    username: str
    password: str


ALICE = LineSpec("101", "alice", "alice-sip-password-for-dtmf")
BOB = LineSpec("102", "bob", "bob-sip-password-for-dtmf")
CAROL = LineSpec("103", "carol", "carol-sip-password-for-dtmf")
CALLBRIDGE_RTP_PORTS = (29000, 29999)
ALICE_RTP_PORTS = (30000, 30199)
BOB_RTP_PORTS = (30200, 30399)


class Pbx:
    def __init__(self, server: Server, api: httpx.Client) -> None:
        self.server = server
        self.api = api
        self.employee_token = ""
        self.supervisor_token = ""

    def as_employee(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.employee_token}"}

    def as_supervisor(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.supervisor_token}"}

    def events(self) -> ClientConnection:
        """The employee's live call events."""
        return connect(
            f"ws://127.0.0.1:{self.server.http_port}/ws/events?token={self.employee_token}"
        )


def _dtmf_pbx(tmp_path: Path, *, inband_for_alice: bool = False) -> Iterator[Pbx]:
    srv = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.http_port}", timeout=10) as api:
            login = api.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            api.headers["Authorization"] = f"Bearer {login.json()['token']}"
            employee = api.post(
                "/api/v1/employees",
                json={
                    "name": "Bob",
                    "login": "bob.employee",
                    "password": EMPLOYEE_PASSWORD,
                    "role": "operator",
                },
            )
            employee.raise_for_status()
            for line in (ALICE, BOB, CAROL):
                body = {"number": line.number, "username": line.username, "password": line.password}
                if line is ALICE:
                    body["inband_dtmf"] = inband_for_alice
                if line is BOB:  # the employee signed in to the API
                    body["employee_id"] = employee.json()["id"]
                created = api.post("/api/v1/internal-lines", json=body)
                created.raise_for_status()
                assert created.json()["inband_dtmf"] is (line is ALICE and inband_for_alice)
            api.post("/api/v1/config/apply").raise_for_status()
            pbx = Pbx(srv, api)
            signed_in = api.post(
                "/api/v1/auth/login",
                json={"username": "bob.employee", "password": EMPLOYEE_PASSWORD},
            )
            pbx.employee_token = signed_in.json()["token"]
            # A supervisor sees every call but takes part in none.
            api.post(
                "/api/v1/employees",
                json={
                    "name": "Sam",
                    "login": "sam.supervisor",
                    "password": EMPLOYEE_PASSWORD,
                    "role": "supervisor",
                },
            ).raise_for_status()
            pbx.supervisor_token = api.post(
                "/api/v1/auth/login",
                json={"username": "sam.supervisor", "password": EMPLOYEE_PASSWORD},
            ).json()["token"]
            yield pbx
    finally:
        stop_server(srv.process)


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[Pbx]:
    yield from _dtmf_pbx(tmp_path)


@pytest.fixture
def inband_pbx(tmp_path: Path) -> Iterator[Pbx]:
    yield from _dtmf_pbx(tmp_path, inband_for_alice=True)


def write_digits(path: Path, digits: str, *, lead: float, seconds: float) -> Path:
    """A WAV of `lead` seconds of quiet, then `digits` as DTMF tones (150 ms,
    150 ms apart), then quiet up to `seconds`."""
    keypad = ("123A", "456B", "789C", "*0#D")
    out = np.zeros(int(seconds * RATE))
    at = int(lead * RATE)
    t = np.arange(int(0.15 * RATE)) / RATE
    for digit in digits:
        row = next(r for r, keys in enumerate(keypad) if digit in keys)
        column = keypad[row].index(digit)
        out[at : at + len(t)] = 6000 * (
            np.sin(2 * np.pi * ROWS[row] * t) + np.sin(2 * np.pi * COLUMNS[column] * t)
        )
        at += 2 * len(t)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(out.astype("<i2").tobytes())
    return path


def phone(
    pbx: Pbx,
    directory: Path,
    line: LineSpec,
    ports: tuple[int, int],
    *,
    source: Path | None = None,
    auto_answer: bool = False,
) -> Baresip:
    directory.mkdir()
    server = pbx.server
    return Baresip(
        directory,
        account=(
            f"<sip:{line.username}@{server.host}:{server.port};transport=udp>"
            f";auth_pass={line.password};regint=600"
        ),
        source=source or write_tone(directory / "tone.wav", 440.0, seconds=60),
        rtp_ports=ports,
        auto_answer=auto_answer,
    )


def digits_heard(phone: Baresip, count: int, timeout: float = 10) -> str:
    """The digits baresip reported receiving (CALL_DTMF_START), in order."""
    heard = ""
    for _ in range(count):
        event = phone.wait_event("CALL_DTMF_START", timeout=timeout)
        heard += str(event.get("param", ""))
    return heard


def in_progress_call(pbx: Pbx) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        calls = pbx.api.get("/api/v1/calls", params={"status": "in_progress"}).json()["items"]
        if calls:
            return str(calls[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no call in progress")


def dtmf_events(events: ClientConnection, count: int) -> list[tuple[str, str, str]]:
    """(side, digit, source) of the next `count` dtmf events."""
    found = []
    deadline = time.monotonic() + 10
    while len(found) < count:
        message = json.loads(events.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == "dtmf":
            assert message["duration"] > 0, message
            found.append((message["side"], message["digit"], message["source"]))
    return found


def dtmf_log(server: Server) -> list[str]:
    return [line for line in server.log().splitlines() if "call.dtmf" in line]


def test_rfc4733_digits_pass_through_and_api_digits_reach_the_other_phone(
    pbx: Pbx, tmp_path: Path
) -> None:
    alice = phone(pbx, tmp_path / "alice", ALICE, ALICE_RTP_PORTS)
    bob = phone(pbx, tmp_path / "bob", BOB, BOB_RTP_PORTS, auto_answer=True)
    with ExitStack() as running:
        running.enter_context(bob)
        running.enter_context(alice)
        events = running.enter_context(pbx.events())
        bob.wait_registered()
        alice.wait_registered()
        alice.dial(f"sip:{BOB.number}@{pbx.server.host}:{pbx.server.port}")
        for side in (alice, bob):
            side.wait_event("CALL_ESTABLISHED", timeout=10)
        call_id = in_progress_call(pbx)
        time.sleep(0.5)
        alice.command("sndcode", "159#")
        assert digits_heard(bob, 4) == "159#", pbx.server.log()
        # The API: the employee's side (bob's) sends to alice.
        sent = pbx.api.post(
            f"/api/v1/calls/{call_id}/dtmf", json={"digits": "12*"}, headers=pbx.as_employee()
        )
        assert sent.status_code == 202, sent.text
        assert digits_heard(alice, 3) == "12*", alice.log()
        # Alice's last digit ends (and is published) after the API's are queued.
        published = dtmf_events(events, 7)
        assert [e for e in published if e[2] == "rfc4733"] == [
            ("caller", digit, "rfc4733") for digit in "159#"
        ]
        assert [e for e in published if e[2] == "api"] == [
            ("callee", digit, "api") for digit in "12*"
        ]
        # The admin is no employee; the supervisor sees the call but has no
        # line in it: neither is a side of this call.
        refused = pbx.api.post(f"/api/v1/calls/{call_id}/dtmf", json={"digits": "1"})
        assert refused.status_code == 403, refused.text
        refused = pbx.api.post(
            f"/api/v1/calls/{call_id}/dtmf", json={"digits": "1"}, headers=pbx.as_supervisor()
        )
        assert refused.status_code == 403, refused.text
        alice.hangup()
        for side in (alice, bob):
            side.wait_event("CALL_CLOSED", timeout=10)
    over = pbx.api.post(
        f"/api/v1/calls/{call_id}/dtmf", json={"digits": "1"}, headers=pbx.as_employee()
    )
    assert over.status_code == 409, over.text
    lines = dtmf_log(pbx.server)
    assert sum("source=rfc4733" in line for line in lines) == 4, lines
    assert sum("source=api" in line for line in lines) == 3, lines
    # Digits never reach the log.
    assert not any("digit" in line.split("call.dtmf", 1)[1] for line in lines), lines


def test_the_api_refuses_bad_digits_and_unknown_calls(pbx: Pbx) -> None:
    headers = pbx.as_employee()
    for digits in ("", "12E", "1" * 33, "1 2", "\u0661"):
        answer = pbx.api.post(
            f"/api/v1/calls/{'a' * 32}/dtmf", json={"digits": digits}, headers=headers
        )
        assert answer.status_code == 422, (digits, answer.text)
    unknown = pbx.api.post(f"/api/v1/calls/{'a' * 32}/dtmf", json={"digits": "1"}, headers=headers)
    assert unknown.status_code == 404, unknown.text
    anonymous = pbx.api.post(
        f"/api/v1/calls/{'a' * 32}/dtmf", json={"digits": "1"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401, anonymous.text


def test_info_digits_reach_a_phone_that_takes_rfc4733_as_events(pbx: Pbx, tmp_path: Path) -> None:
    bob = phone(pbx, tmp_path / "bob", BOB, BOB_RTP_PORTS, auto_answer=True)
    with bob:
        bob.wait_registered()
        server = pbx.server
        sipp = start_sipp(
            "call_uac_info.xml",
            server,
            tmp_path,
            extra=[
                "-s",
                CAROL.number,
                "-au",
                CAROL.username,
                "-ap",
                CAROL.password,
                "-key",
                "callee",
                BOB.number,
                "-auth_uri",
                f"{BOB.number}@{server.host}:{server.port}",
                "-key",
                "rtp_port",
                "40000",
            ],
        )
        try:
            assert digits_heard(bob, 2) == "7#", sipp.exchange() + server.log()
            result = sipp.wait()
        finally:
            sipp.stop()
        assert result.successful == 1, sipp.exchange() + server.log()
        assert len(sipp.received(method="INFO", status=200)) == 2, sipp.exchange()
        assert len(sipp.received(method="INFO", status=400)) == 1, sipp.exchange()
        bob.command("reginfo")  # reads every event baresip sent before its answer
    assert list(bob.events()).count("CALL_DTMF_START") == 2, bob.messages
    lines = dtmf_log(pbx.server)
    assert sum("source=info" in line for line in lines) == 2, lines


def test_tones_in_the_audio_of_a_line_that_asks_for_it_reach_the_other_phone_as_events(
    inband_pbx: Pbx, tmp_path: Path
) -> None:
    pbx = inband_pbx
    (tmp_path / "alice").mkdir()
    source = write_digits(tmp_path / "alice" / "digits.wav", "480*", lead=2.0, seconds=60)
    alice = phone(pbx, tmp_path / "alice-phone", ALICE, ALICE_RTP_PORTS, source=source)
    bob = phone(pbx, tmp_path / "bob", BOB, BOB_RTP_PORTS, auto_answer=True)
    with ExitStack() as running:
        running.enter_context(bob)
        running.enter_context(alice)
        bob.wait_registered()
        alice.wait_registered()
        alice.dial(f"sip:{BOB.number}@{pbx.server.host}:{pbx.server.port}")
        for side in (alice, bob):
            side.wait_event("CALL_ESTABLISHED", timeout=10)
        assert digits_heard(bob, 4) == "480*", pbx.server.log()
        alice.hangup()
    lines = dtmf_log(pbx.server)
    assert sum("source=inband" in line for line in lines) == 4, lines


def test_digits_reach_a_phone_without_telephone_event_as_info_in_kind(
    start_pbx: Callable[..., test_calls.Pbx],  # noqa: F811 - the fixture's name
) -> None:
    """Alice (SIPp) offers telephone-event, Bob's SIPp answers without it:
    key 1, sent as RFC 4733, reaches Bob as an application/dtmf-relay INFO;
    key 9, sent as an application/dtmf INFO, as one of the same type."""
    pbx = start_pbx(**test_calls.ENV)
    for line in (test_calls.ALICE, test_calls.BOB):
        pbx.line(line)
    callee = pbx.device(test_calls.BOB, "call_uas_info.xml")
    caller = pbx.call(test_calls.ALICE, test_calls.BOB.number, "call_uac_dtmf.xml")
    for phone in (caller, callee):
        result = phone.wait()
        assert result.successful == 1, pbx.explain() + pbx.server.log()
    lines = dtmf_log(pbx.server)
    sources = sorted(line.split("source=")[1].split()[0] for line in lines)
    assert sources == ["info", "rfc4733"], lines
