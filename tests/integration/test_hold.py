"""Hold with baresip phones: with music on hold, callbridge answers the
holding phone itself and the held one hears the melody, then the other
party again; without it, a hold longer than the RTP timeout lives.

baresip 1.0 holds with `a=sendonly` and then sends no RTP at all, only its
RTCP reports; relayed, the held side answers `recvonly`. callbridge must not
take that silence for a vanished phone: the held side is not expected to
send, and the holding side proves itself alive by its RTCP (issue 12)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .baresip import Baresip
from .conftest import Server, start_server, stop_server
from .tones import CALLEE_TONE, CALLER_TONE, analyse_music, assert_hears, read_samples, write_tone

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-hold-tests"
ALICE = ("101", "alice", "alice-sip-password-for-hold")
BOB = ("102", "bob", "bob-sip-password-for-hold")
CALLBRIDGE_RTP_PORTS = (25000, 25999)
ALICE_RTP_PORTS = (26000, 26199)
BOB_RTP_PORTS = (26200, 26399)
# baresip sends an RTCP report every 5 s or so (RFC 3550's minimum, randomised
# 0.5 to 1.5 times): the timeout must outlast the longest gap between two of them.
RTP_TIMEOUT = 9
HOLD = 2.5 * RTP_TIMEOUT
TALK = 3.0


@pytest.fixture(params=["relayed"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    srv = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
        CALLBRIDGE_RTP_TIMEOUT=str(RTP_TIMEOUT),
        CALLBRIDGE_MUSIC_ON_HOLD="true" if request.param == "music" else "false",
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{srv.http_port}", timeout=10) as api:
            sign_in(api)
            for number, username, password in (ALICE, BOB):
                api.post(
                    "/api/v1/internal-lines",
                    json={"number": number, "username": username, "password": password},
                ).raise_for_status()
            api.post("/api/v1/config/apply").raise_for_status()
        yield srv
    finally:
        stop_server(srv.process)


def sign_in(api: httpx.Client) -> None:
    login = api.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    api.headers["Authorization"] = f"Bearer {login.json()['token']}"


def phone(
    server: Server, directory: Path, line: tuple[str, str, str], tone: float, ports: tuple[int, int]
) -> Baresip:
    _, username, password = line
    directory.mkdir()
    return Baresip(
        directory,
        account=(
            f"<sip:{username}@{server.host}:{server.port};transport=udp>"
            f";auth_pass={password};regint=600"
        ),
        # The file outlasts the call: aufile ends the call when it ends.
        source=write_tone(directory / f"{tone:.0f}hz.wav", tone, seconds=HOLD + 4 * TALK),
        rtp_ports=ports,
        auto_answer=username == "bob",
    )


@dataclass
class HeldCall:
    """What `hold_and_resume` did: the phones, when (seconds from the
    answer) alice held and resumed, and everything's logs for a failure."""

    alice: Baresip
    bob: Baresip
    held_at: float
    resumed_at: float
    diagnostics: Callable[[], str]


def hold_and_resume(
    server: Server, tmp_path: Path, hold_for: float, during: Callable[[], None] = lambda: None
) -> HeldCall:
    """alice calls bob, they talk, alice holds for `hold_for` seconds
    (`during()` runs at its end), resumes, they talk again, and she hangs up."""
    alice = phone(server, tmp_path / "alice", ALICE, CALLER_TONE, ALICE_RTP_PORTS)
    bob = phone(server, tmp_path / "bob", BOB, CALLEE_TONE, BOB_RTP_PORTS)

    def diagnostics() -> str:
        return (
            f"--- callbridge ---\n{server.log()}\n--- alice ---\n{alice.log()}\n"
            f"--- bob ---\n{bob.log()}"
        )

    with ExitStack() as running:
        running.enter_context(bob)
        running.enter_context(alice)
        try:
            bob.wait_registered()
            alice.wait_registered()
            alice.dial(f"sip:{BOB[0]}@{server.host}:{server.port}")
            for side in (alice, bob):
                side.wait_event("CALL_ESTABLISHED", timeout=10)
            established = time.monotonic()
            time.sleep(TALK)
            alice.command("hold")
            held_at = time.monotonic() - established
            time.sleep(hold_for)
            during()
            alice.command("resume")
            resumed_at = time.monotonic() - established
            time.sleep(TALK + 1)
            alice.hangup()
            for side in (alice, bob):
                side.wait_event("CALL_CLOSED", timeout=10)
        except Exception as error:
            raise AssertionError(f"{error}\n{diagnostics()}") from error
    return HeldCall(alice, bob, held_at, resumed_at, diagnostics)


def test_a_relayed_hold_longer_than_the_rtp_timeout_resumes_with_audio_both_ways(
    server: Server, tmp_path: Path
) -> None:
    def still_up() -> None:
        assert "media.timeout" not in server.log(), "the held call was ended"

    call = hold_and_resume(server, tmp_path, HOLD, during=still_up)
    alice, bob, diagnostics = call.alice, call.bob, call.diagnostics
    assert "media.timeout" not in server.log(), diagnostics()
    assert "sendonly" in alice.log(), "alice did not hold with sendonly\n" + diagnostics()
    # After the resume, each hears the other again: the recordings' last
    # seconds hold the other's tone.
    assert_hears(bob, CALLER_TONE, diagnostics(), seconds=TALK - 1, last=TALK)
    assert_hears(alice, CALLEE_TONE, diagnostics(), seconds=TALK - 1, last=TALK)


MUSIC_HOLD = 5.0


@pytest.mark.parametrize("server", ["music"], indirect=True)
def test_the_held_phone_hears_the_music_then_the_other_party_again(
    server: Server, tmp_path: Path
) -> None:
    call = hold_and_resume(server, tmp_path, MUSIC_HOLD)
    alice, bob, diagnostics = call.alice, call.bob, call.diagnostics
    held_at, resumed_at = call.held_at, call.resumed_at
    why = diagnostics()
    # callbridge answered alice's hold and resume itself: bob never saw them.
    assert "sendonly" in alice.log() and "sendonly" not in bob.log(), why
    # What bob heard while held: the melody, not alice's tone.
    [recording] = bob.recordings("dec")
    samples, rate = read_samples(recording)
    during = samples[int((held_at + 1) * rate) : int((resumed_at - 0.5) * rate)]
    music = analyse_music(during, rate)
    assert music.share > 0.9 and music.notes >= 4, f"{music}\n{why}"
    # ... and after the resume, each hears the other again.
    assert_hears(bob, CALLER_TONE, why, seconds=TALK - 1, last=TALK)
    assert_hears(alice, CALLEE_TONE, why, seconds=TALK - 1, last=TALK)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as api:
        sign_in(api)
        [record] = api.get("/api/v1/calls").json()["items"]
    assert abs(record["hold_seconds"] - MUSIC_HOLD) <= 1.5, record
