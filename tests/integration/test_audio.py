"""Audio end to end: two baresip phones on loopback each play a pure tone and
record what they receive, and numpy's FFT says whether the other's tone got
through (tones.py).

The peer-to-peer test is the control: it proves the harness (config, dialing,
auto-answer, hang-up, recording, analysis) without callbridge, so that when
the test through callbridge fails, callbridge is what failed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from . import tones
from .baresip import Baresip
from .conftest import Server, start_server, stop_server
from .tones import CALLEE_TONE, CALLER_TONE, write_tone

pytestmark = pytest.mark.integration

OPUS = "opus/48000/2"  # baresip's name for it in `audio_codecs`
TALK = 3.0  # seconds between answer and hang-up
ADMIN_PASSWORD = "admin-pass-for-audio-tests"
ALICE = ("101", "alice", "alice-sip-password-for-tests")
BOB = ("102", "bob", "bob-sip-password-for-tests")
CALLBRIDGE_RTP_PORTS = (21000, 21999)
CALLER_RTP_PORTS = (22000, 22199)
CALLEE_RTP_PORTS = (22200, 22399)


def assert_hears(phone: Baresip, tone: float, diagnostics: str = "") -> None:
    tones.assert_hears(phone, tone, diagnostics, seconds=TALK - 1)


# -- phones ----------------------------------------------------------------


def phone(
    directory: Path,
    account: str,
    tone: float,
    rtp_ports: tuple[int, int],
    codecs: str = "PCMU,PCMA",
) -> Baresip:
    directory.mkdir(parents=True)
    return Baresip(
        directory,
        account=account,
        source=write_tone(directory.parent / f"{directory.name}-{tone:.0f}hz.wav", tone),
        rtp_ports=rtp_ports,
        auto_answer=directory.name == "callee",
        codecs=codecs,
    )


def talk(caller: Baresip, callee: Baresip, uri: str) -> None:
    """The caller dials `uri`, the callee answers by itself, they talk for
    `TALK` seconds, and the caller hangs up; both see the call close."""
    caller.dial(uri)
    for side in (caller, callee):
        side.wait_event("CALL_ESTABLISHED", timeout=5)
    time.sleep(TALK)
    caller.hangup()
    for side in (caller, callee):
        side.wait_event("CALL_CLOSED", timeout=5)


# -- peer to peer: the harness -------------------------------------------

P2P_ACCOUNT = "<sip:{}@127.0.0.1;transport=udp>;regint=0"


def test_two_phones_hear_each_others_tone_peer_to_peer(tmp_path: Path) -> None:
    # No registrar: each account only listens (regint=0), and A dials B's port.
    caller = phone(tmp_path / "caller", P2P_ACCOUNT.format("a"), CALLER_TONE, CALLER_RTP_PORTS)
    callee = phone(tmp_path / "callee", P2P_ACCOUNT.format("b"), CALLEE_TONE, CALLEE_RTP_PORTS)
    with ExitStack() as running:
        running.enter_context(callee)
        running.enter_context(caller)
        talk(caller, callee, f"sip:b@127.0.0.1:{callee.sip_port}")
    logs = f"--- caller ---\n{caller.log()}\n--- callee ---\n{callee.log()}"
    assert_hears(callee, CALLER_TONE, logs)
    assert_hears(caller, CALLEE_TONE, logs)


# -- through callbridge --------------------------------------------------


@dataclass
class CallThroughCallbridge:
    server: Server
    caller: Baresip
    callee: Baresip

    def assert_relayed_to(self, phone: Baresip) -> None:
        """`phone`'s RTP came from callbridge's ports, not from the other phone."""
        low, high = CALLBRIDGE_RTP_PORTS
        sources = phone.rtp_sources()
        assert sources, f"no RTP reached {phone.directory.name}\n{self.diagnostics()}"
        for host, port in sources:
            assert host == self.server.host and low <= port <= high, (
                f"RTP from {host}:{port}\n{self.diagnostics()}"
            )

    def diagnostics(self) -> str:
        return (
            f"--- callbridge ---\n{callbridge_log(self.server)}\n"
            f"--- caller (101) ---\n{self.caller.log()}\n"
            f"--- callee (102) ---\n{self.callee.log()}"
        )


def callbridge_log(server: Server) -> str:
    """callbridge's own log lines (not the database's or uvicorn's), with each
    logged SIP message laid out on lines of its own."""
    kept = []
    for line in server.log().splitlines():
        fields = line.split(" ", 3)
        if len(fields) > 2 and fields[1] in ("DEBUG", "INFO") and "callbridge" not in fields[2]:
            continue
        kept.append(line.replace("\\r\\n", "\n    ").replace('\\"', '"'))
    return "\n".join(kept)


def create_lines(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as api:
        login = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        api.headers["Authorization"] = f"Bearer {login.json()['token']}"
        for number, username, password in (ALICE, BOB):
            api.post(
                "/api/v1/internal-lines",
                json={"number": number, "username": username, "password": password},
            ).raise_for_status()
        api.post("/api/v1/config/apply").raise_for_status()


def line_account(server: Server, line: tuple[str, str, str]) -> str:
    _, username, password = line
    return (
        f"<sip:{username}@{server.host}:{server.port};transport=udp>"
        f";auth_pass={password};regint=600"
    )


@pytest.fixture(scope="module")
def call_through_callbridge(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CallThroughCallbridge]:
    """101 calls 102 through callbridge, they talk, 101 hangs up; then every
    process is stopped and the recordings are in place."""
    tmp_path = tmp_path_factory.mktemp("callbridge-audio")
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
        CALLBRIDGE_LOG_SIP_MESSAGES="true",
        # The default digest setting (MD5 alone) is the one baresip 1.0 needs.
    )
    call: CallThroughCallbridge | None = None
    try:
        create_lines(server)
        call = CallThroughCallbridge(
            server,
            phone(tmp_path / "caller", line_account(server, ALICE), CALLER_TONE, CALLER_RTP_PORTS),
            phone(tmp_path / "callee", line_account(server, BOB), CALLEE_TONE, CALLEE_RTP_PORTS),
        )
        with ExitStack() as running:
            running.enter_context(call.callee)
            running.enter_context(call.caller)
            call.callee.wait_registered()
            call.caller.wait_registered()
            talk(call.caller, call.callee, f"sip:{BOB[0]}@{server.host}:{server.port}")
    except Exception as error:
        diagnostics = call.diagnostics() if call else callbridge_log(server)
        raise AssertionError(f"{error}\n{diagnostics}") from error
    finally:
        stop_server(server.process)
    assert call is not None
    assert server.process.returncode == 0, call.diagnostics()
    yield call


def test_a_callers_tone_reaches_the_callee_through_callbridge(
    call_through_callbridge: CallThroughCallbridge,
) -> None:
    call = call_through_callbridge
    call.assert_relayed_to(call.callee)
    assert_hears(call.callee, CALLER_TONE, call.diagnostics())


def test_the_callees_tone_reaches_the_caller_through_callbridge(
    call_through_callbridge: CallThroughCallbridge,
) -> None:
    call = call_through_callbridge
    call.assert_relayed_to(call.caller)
    assert_hears(call.caller, CALLEE_TONE, call.diagnostics())


def test_a_codec_callbridge_does_not_know_passes_through_untouched(tmp_path: Path) -> None:
    """Two phones that share only Opus: callbridge relays the offer and the
    answer with Opus in them and its packets without decoding, and each
    hears the other (callbridge itself knows only G.711; docs/PHONES.md)."""
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
        CALLBRIDGE_LOG_SIP_MESSAGES="true",
    )
    caller = callee = None
    try:
        create_lines(server)
        caller = phone(
            tmp_path / "caller", line_account(server, ALICE), CALLER_TONE, CALLER_RTP_PORTS, OPUS
        )
        callee = phone(
            tmp_path / "callee", line_account(server, BOB), CALLEE_TONE, CALLEE_RTP_PORTS, OPUS
        )
        call = CallThroughCallbridge(server, caller, callee)
        with ExitStack() as running:
            running.enter_context(callee)
            running.enter_context(caller)
            callee.wait_registered()
            caller.wait_registered()
            talk(caller, callee, f"sip:{BOB[0]}@{server.host}:{server.port}")
    finally:
        stop_server(server.process)
    diagnostics = call.diagnostics()
    for side in (caller, callee):
        # Each phone saw only Opus in the other's SDP, relayed by callbridge.
        offered = re.findall(r"^a=rtpmap:\d+ (\S+)", side.log(), re.M)
        assert offered and set(offered) <= {"opus/48000/2", "telephone-event/8000"}, diagnostics
        call.assert_relayed_to(side)
    assert_hears(callee, CALLER_TONE, diagnostics)
    assert_hears(caller, CALLEE_TONE, diagnostics)
