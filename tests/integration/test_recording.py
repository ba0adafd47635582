"""Recording end to end: two baresip phones call through callbridge, each
playing its tone, and the call's recording holds the caller's tone on the
left channel and the callee's on the right (numpy's FFT, tones.py), fetched
over HTTP whole and by Range, by whoever may see the call only; and a
recording survives `kill -9` of the server mid-call: the next start makes
it a playable WAV of the audio up to the kill, and the record points to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from . import tones
from .baresip import Baresip
from .conftest import Server, start_server, stop_server
from .tones import CALLEE_TONE, CALLER_TONE, write_tone

pytestmark = pytest.mark.integration

TALK = 3.0
KILLED_AFTER = 5.0  # of talk: the writer is about 1.2 s behind the call
ADMIN_PASSWORD = "admin-pass-for-recording-tests"
ALICE = ("101", "alice", "alice-sip-password-for-tests")
BOB = ("102", "bob", "bob-sip-password-for-tests")
CALLBRIDGE_RTP_PORTS = (27000, 27999)
CALLER_RTP_PORTS = (28000, 28199)
CALLEE_RTP_PORTS = (28200, 28399)


def serve(tmp_path: Path) -> Server:
    return start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
    )


@contextmanager
def api(server: Server, token: str | None = None) -> Iterator[httpx.Client]:
    """A client signed in with `token`, or as the admin."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as client:
        if token is None:
            login = client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            token = login.json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def create_lines(client: httpx.Client) -> None:
    for number, username, password in (ALICE, BOB):
        client.post(
            "/api/v1/internal-lines",
            json={"number": number, "username": username, "password": password},
        ).raise_for_status()
    client.post("/api/v1/config/apply").raise_for_status()


def phone(server: Server, directory: Path, line: tuple[str, str, str], tone: float) -> Baresip:
    directory.mkdir(parents=True)
    _, username, password = line
    caller = directory.name == "caller"
    return Baresip(
        directory,
        account=f"<sip:{username}@{server.host}:{server.port};transport=udp>"
        f";auth_pass={password};regint=600",
        source=write_tone(directory.parent / f"{directory.name}-{tone:.0f}hz.wav", tone, 30),
        rtp_ports=CALLER_RTP_PORTS if caller else CALLEE_RTP_PORTS,
        auto_answer=not caller,
    )


def the_call(client: httpx.Client, *, recorded: bool = True, timeout: float = 10) -> dict[str, Any]:
    """The one call on record, once its recording is complete (if `recorded`)."""
    deadline = time.monotonic() + timeout
    while True:
        items = client.get("/api/v1/calls").json()["items"]
        if items and (items[0]["recording"] is not None or not recorded):
            assert len(items) == 1, items
            call: dict[str, Any] = items[0]
            return call
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete recording on record: {items}")
        time.sleep(0.1)


def assert_holds(heard: tones.Heard, tone: float, seconds: float, context: str) -> None:
    context = f"{heard}\n{context}"
    assert heard.seconds >= seconds, context
    assert abs(heard.peak_hz - tone) <= 20, context
    assert abs(20 * np.log10(max(heard.level, 1) / tones.SENT_RMS)) <= 3, context
    assert heard.purity >= 0.9, context


@dataclass
class RecordedCall:
    server: Server
    call: dict[str, Any]
    file: Path  # the recording as fetched over HTTP
    ranges: dict[str, httpx.Response]
    operator_status: int
    log: str


@pytest.fixture(scope="module")
def recorded_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedCall]:
    """101 calls 102 through callbridge, they talk for TALK seconds, 101
    hangs up; the recording is fetched over HTTP, whole and in parts, by the
    admin and by an operator who is neither of them."""
    tmp_path = tmp_path_factory.mktemp("recording")
    server = serve(tmp_path)
    try:
        with api(server) as admin:
            create_lines(admin)
            caller = phone(server, tmp_path / "caller", ALICE, CALLER_TONE)
            callee = phone(server, tmp_path / "callee", BOB, CALLEE_TONE)
            with ExitStack() as running:
                running.enter_context(callee)
                running.enter_context(caller)
                callee.wait_registered()
                caller.wait_registered()
                caller.dial(f"sip:{BOB[0]}@{server.host}:{server.port}")
                for side in (caller, callee):
                    side.wait_event("CALL_ESTABLISHED", timeout=5)
                time.sleep(TALK)
                caller.hangup()
                for side in (caller, callee):
                    side.wait_event("CALL_CLOSED", timeout=5)
            call = the_call(admin)
            whole = admin.get(call["recording"]["url"])
            assert whole.status_code == 200, whole.text
            file = tmp_path / "fetched.wav"
            file.write_bytes(whole.content)
            ranges = {
                header: admin.get(call["recording"]["url"], headers={"Range": header})
                for header in ("bytes=0-43", "bytes=1000-1999", "bytes=-100", "bytes=99999999-")
            }
            admin.post(
                "/api/v1/employees",
                json={
                    "name": "Olga",
                    "login": "olga",
                    "password": "olga-password",
                    "role": "operator",
                },
            ).raise_for_status()
            login = admin.post(
                "/api/v1/auth/login", json={"username": "olga", "password": "olga-password"}
            )
            with api(server, login.json()["token"]) as operator:
                operator_status = operator.get(call["recording"]["url"]).status_code
    finally:
        stop_server(server.process)
    yield RecordedCall(server, call, file, ranges, operator_status, server.log())


def test_each_channel_holds_the_tone_its_side_sent(
    recorded_call: RecordedCall, tmp_path: Path
) -> None:
    context = recorded_call.log[-5000:]
    left = tones.channel_heard(recorded_call.file, 0, CALLER_TONE, tmp_path)
    right = tones.channel_heard(recorded_call.file, 1, CALLEE_TONE, tmp_path)
    assert_holds(left, CALLER_TONE, TALK - 1, context)
    assert_holds(right, CALLEE_TONE, TALK - 1, context)


def test_the_recording_lasts_as_long_as_the_call(recorded_call: RecordedCall) -> None:
    recording = recorded_call.call["recording"]
    assert TALK - 0.5 <= recording["duration"] <= TALK + 1.5, recording
    with wave.open(str(recorded_call.file)) as read:
        assert read.getnframes() / 8000 == pytest.approx(recording["duration"], abs=0.001)
    assert recording["size"] == recorded_call.file.stat().st_size


def test_ranges_get_206_with_the_right_bytes_and_a_bad_one_416(
    recorded_call: RecordedCall,
) -> None:
    content = recorded_call.file.read_bytes()
    size = len(content)
    expected = {
        "bytes=0-43": (0, 44),
        "bytes=1000-1999": (1000, 2000),
        "bytes=-100": (size - 100, size),
    }
    for header, (start, end) in expected.items():
        answer = recorded_call.ranges[header]
        assert answer.status_code == 206, header
        assert answer.content == content[start:end], header
        assert answer.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
    past = recorded_call.ranges["bytes=99999999-"]
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"


def test_an_operator_who_is_neither_party_cannot_fetch_it(recorded_call: RecordedCall) -> None:
    assert recorded_call.operator_status == 403


# --- kill -9 --------------------------------------------------------------------


def test_a_recording_survives_kill_9_and_plays_after_the_restart(tmp_path: Path) -> None:
    server = serve(tmp_path)
    logs = tmp_path / "before-kill.log"
    try:
        with api(server) as admin:
            create_lines(admin)
            token = str(admin.headers["Authorization"]).split()[1]
        caller = phone(server, tmp_path / "caller", ALICE, CALLER_TONE)
        callee = phone(server, tmp_path / "callee", BOB, CALLEE_TONE)
        with ExitStack() as running:
            running.enter_context(callee)
            running.enter_context(caller)
            callee.wait_registered()
            caller.wait_registered()
            caller.dial(f"sip:{BOB[0]}@{server.host}:{server.port}")
            for side in (caller, callee):
                side.wait_event("CALL_ESTABLISHED", timeout=5)
            time.sleep(KILLED_AFTER)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
            # With no server to answer their BYE and un-REGISTER, a `quit`
            # would wait out those transactions: the phones go at once.
            caller.kill()
            callee.kill()
        shutil.copy(server.log_path, logs)
    finally:
        stop_server(server.process)
    assert server.process.returncode == -signal.SIGKILL
    # Still being written when it died: the file is there, its record has no size.
    files = list((tmp_path / "recordings").rglob("*.wav"))
    assert len(files) == 1, files
    restarted = serve(tmp_path)
    try:
        assert "pbx.recordings_recovered count=1" in restarted.log(), restarted.log()
        with api(restarted, token) as admin:
            call = the_call(admin)
            fetched = admin.get(call["recording"]["url"])
        assert fetched.status_code == 200
    finally:
        stop_server(restarted.process)
    context = f"{logs.read_text()[-5000:]}\n{restarted.log()[-3000:]}"
    assert call["status"] == "failed" and call["hangup_cause"] == "interrupted by restart"
    path = tmp_path / "fetched.wav"
    path.write_bytes(fetched.content)
    assert fetched.content == files[0].read_bytes()
    with wave.open(str(path)) as read:  # a WAV the standard library reads whole
        frames = read.getnframes()
        assert len(read.readframes(frames)) == frames * 4
    # Up to the kill: all but the last second or so (what the writer had not
    # yet appended), and nothing after it.
    duration = call["recording"]["duration"]
    assert KILLED_AFTER - 1.5 <= duration <= KILLED_AFTER + 1.0, context
    assert frames / 8000 == pytest.approx(duration, abs=0.001)
    left = tones.channel_heard(path, 0, CALLER_TONE, tmp_path)
    right = tones.channel_heard(path, 1, CALLEE_TONE, tmp_path)
    assert_holds(left, CALLER_TONE, KILLED_AFTER - 2.0, context)
    assert_holds(right, CALLEE_TONE, KILLED_AFTER - 2.0, context)
