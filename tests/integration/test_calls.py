"""Calls between internal lines through `callbridge serve`, end to end: SIPp
phones on loopback call each other through the B2BUA (scenarios/call_*.xml),
RTP is relayed between two sockets of the test, and every call leaves one
record at /api/v1/calls.

Each test starts its own callbridge with its own lines. A callee is a SIPp
UAS that first registers its line from the port it then listens on; a caller
is a SIPp UAC whose INVITE is challenged (407) and sent again with
credentials. When something fails, the assertion shows what each SIPp sent
and received; callbridge logged every SIP message (its log is in the test's
tmp_path)."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import PG_HOST, PG_PORT, _pg_admin
from .conftest import (
    RtpEndpoint,
    RtpSprayer,
    Server,
    SippProcess,
    TracedMessage,
    free_port,
    start_server,
    start_sipp,
    stop_server,
)

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-call-tests"
# Below Linux's ephemeral ports, where free_port() picks the phones' ports.
RTP_PORTS = (20000, 20999)
ENV = {
    "CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # SIPp 3.6 answers only the first challenge and knows only MD5 (see README).
    "CALLBRIDGE_SIP_DIGEST_ALGORITHMS": "MD5",
    "CALLBRIDGE_RTP_PORTS": f"{RTP_PORTS[0]}-{RTP_PORTS[1]}",
    "CALLBRIDGE_LOG_SIP_MESSAGES": "true",
    # The scenarios check that a hold re-INVITE reaches the other phone, as
    # it does without music on hold (with it: tests/integration/test_hold.py).
    "CALLBRIDGE_MUSIC_ON_HOLD": "false",
}
COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'


@dataclass(frozen=True)
class Line:
    number: str
    username: str
    password: str


ALICE = Line("101", "alice", "alice-sip-pass-for-call-tests")
BOB = Line("102", "bob", "bob-sip-pass-for-call-tests")
CAROL = Line("103", "carol", "carol-sip-pass-for-call-tests")


@dataclass
class Pbx:
    """A callbridge with the SIPp phones and RTP endpoints a test started,
    all stopped when the test ends."""

    server: Server
    tmp_path: Path
    phones: list[SippProcess] = field(default_factory=list)
    media: list[RtpEndpoint] = field(default_factory=list)

    token: str | None = None

    @contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """An HTTP client for the API, signed in as the admin (once per test:
        signing in costs an argon2 verification)."""
        base_url = f"http://127.0.0.1:{self.server.http_port}"
        with httpx.Client(base_url=base_url, timeout=10) as api:
            if self.token is None:
                self.token = api.post(
                    "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                ).json()["token"]
            api.headers["Authorization"] = f"Bearer {self.token}"
            yield api

    def line(self, line: Line, **settings: int | bool) -> int:
        """Create `line` with `settings` (max_devices, ring_timeout, recording,
        ...); its id."""
        with self.api() as api:
            created = api.post(
                "/api/v1/internal-lines",
                json={
                    "number": line.number,
                    "username": line.username,
                    "password": line.password,
                    **settings,
                },
            )
            assert created.status_code == 201, created.text
            self.apply(api)
        return int(created.json()["id"])

    @staticmethod
    def apply(api: httpx.Client) -> None:
        """Apply the staged lines and rules (edits reach calls only then)."""
        applied = api.post("/api/v1/config/apply")
        assert applied.status_code == 200, applied.text

    def register(self, line: Line, port: int) -> None:
        """Register a device of `line` whose Contact is 127.0.0.1:`port`."""
        registered = start_sipp(
            "register.xml",
            self.server,
            self.tmp_path,
            port=port,
            timeout=10,
            recv_timeout=3,
            extra=["-s", line.number, "-au", line.username, "-ap", line.password],
        )
        result = registered.wait(timeout=15)
        assert result.successful == 1, registered.exchange() + "\n" + result.output

    def device(
        self,
        line: Line,
        scenario: str,
        *,
        rtp_port: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> SippProcess:
        """A phone of `line` that registers, then waits for a call as a SIPp
        UAS playing `scenario` on the same port; its SDP names `rtp_port`
        (by default SIPp's own media port)."""
        port, media_port = _free_ports(2)
        self.register(line, port)
        phone = start_sipp(
            scenario,
            self.server,
            self.tmp_path,
            port=port,
            media_port=media_port,
            extra=[
                "-s",
                line.number,
                "-key",
                "rtp_port",
                str(rtp_port or media_port),
                *extra,
            ],
        )
        self.phones.append(phone)
        _wait_bound(port, phone)
        return phone

    def call(
        self,
        caller: Line,
        callee: str,
        scenario: str,
        *,
        rtp_port: int | None = None,
        talk_ms: int = 0,
        recv_timeout: float = 10,
    ) -> SippProcess:
        """A phone of `caller` calling the number `callee` with `scenario`
        (a SIPp UAC, started in the background); `talk_ms` is its -d."""
        port, media_port = _free_ports(2)
        target = f"{callee}@{self.server.host}:{self.server.port}"
        phone = start_sipp(
            scenario,
            self.server,
            self.tmp_path,
            port=port,
            media_port=media_port,
            recv_timeout=recv_timeout,
            extra=[
                "-s",
                caller.number,
                "-au",
                caller.username,
                "-ap",
                caller.password,
                "-auth_uri",
                target,
                "-key",
                "callee",
                callee,
                "-key",
                "rtp_port",
                str(rtp_port or media_port),
                "-d",
                str(talk_ms),
            ],
        )
        self.phones.append(phone)
        return phone

    def rtp(self, fill: int) -> RtpEndpoint:
        endpoint = RtpEndpoint(fill)
        self.media.append(endpoint)
        return endpoint

    def calls(self, expected: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The call records, once `expected` of them are there and closed
        (they are written in the background)."""
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while True:
                page = api.get("/api/v1/calls", params={"limit": 100}).json()
                items: list[dict[str, Any]] = page["items"]
                done = all(item["status"] != "in_progress" for item in items)
                if (page["total"] >= expected and done) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert page["total"] == expected and done, f"call records: {items}"
        return items

    def stop(self) -> None:
        """Stop its phones, its media and the server."""
        for phone in self.phones:
            phone.stop()
        for endpoint in self.media:
            endpoint.close()
        stop_server(self.server.process)

    def explain(self) -> str:
        """What every phone sent and received, and where callbridge's log is."""
        return "\n".join(
            [phone.exchange() for phone in self.phones]
            + [f"callbridge log (every SIP message): {self.server.log_path}"]
        )


@pytest.fixture
def start_pbx(tmp_path: Path) -> Iterator[Callable[..., Pbx]]:
    """Start a callbridge for calls, with extra settings; all is stopped at
    the end of the test."""
    with ExitStack() as started:
        yield lambda **env: started.enter_context(pbx_running(tmp_path, **env))


@pytest.fixture
def pbx(start_pbx: Callable[..., Pbx]) -> Pbx:
    return start_pbx()


@contextmanager
def pbx_running(tmp_path: Path, **env: str) -> Iterator[Pbx]:
    """A callbridge for calls, with extra settings, stopped (with the phones
    and media the tests started) when the block ends: `start_pbx`'s, and a
    fixture's of a wider scope."""
    pbx = Pbx(start_server(tmp_path, **{**ENV, **env}), tmp_path)
    try:
        yield pbx
    finally:
        pbx.stop()
    assert pbx.server.process.returncode == 0, pbx.server.log()


def _free_ports(count: int) -> list[int]:
    """`count` distinct UDP ports free on loopback now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_bound(port: int, phone: SippProcess, timeout: float = 5) -> None:
    """Wait until the SIPp `phone` listens on UDP `port` (read from
    /proc/net/udp: binding the port to probe it could steal it from SIPp)."""
    wanted = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sockets = Path("/proc/net/udp").read_text().splitlines()[1:]
        if any(wanted in line.split(None, 2)[1] + " " for line in sockets):
            return
        if phone.process.poll() is not None:
            break
        time.sleep(0.02)
    pytest.fail(f"SIPp did not start listening on {port}:\n{phone.output()}")


def _wait_for(
    phone: SippProcess,
    found: Callable[[list[TracedMessage]], TracedMessage | None],
    why: str,
    timeout: float = 10,
) -> TracedMessage:
    """Wait until `found` picks a message out of `phone`'s trace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = found(phone.messages())
        if message is not None:
            return message
        time.sleep(0.02)
    pytest.fail(f"{why}: not seen within {timeout} s\n{phone.exchange()}")


def _first(direction: str, *, method: str, status: int | None = None) -> Callable[..., Any]:
    def pick(messages: list[TracedMessage]) -> TracedMessage | None:
        for message in messages:
            if (
                message.direction == direction
                and message.method == method
                and message.status == status
            ):
                return message
        return None

    return pick


def _one(messages: list[TracedMessage], what: str, why: str) -> TracedMessage:
    """The first of `messages` (retransmissions may follow it)."""
    assert messages, f"no {what}\n{why}"
    return messages[0]


def _sent_invite(phone: SippProcess) -> TracedMessage:
    return [m for m in phone.messages() if m.direction == "sent" and m.method == "INVITE"][-1]


def _final_status(caller: SippProcess) -> int | None:
    """The final response the caller got to its (last) INVITE."""
    finals = [
        m.status
        for m in caller.messages()
        if m.direction == "received"
        and m.status is not None
        and m.status >= 200
        and m.header("CSeq") == "2 INVITE"
    ]
    return finals[0] if finals else None


def _assert_anchored(message: TracedMessage, why: str) -> int:
    """The SDP of `message` is callbridge's: loopback, a port of its RTP
    range. Returns the port."""
    media = message.sdp_media()
    assert media is not None, f"no audio in the SDP of {message.first_line}:\n{message.text}\n{why}"
    address, port = media
    assert address == "127.0.0.1", f"{message.first_line}: c={address}\n{why}"
    assert RTP_PORTS[0] <= port <= RTP_PORTS[1], f"{message.first_line}: m=audio {port}\n{why}"
    return port


def _assert_succeeded(*phones: SippProcess, pbx: Pbx, timeout: float = 30) -> None:
    results = [phone.wait(timeout) for phone in phones]
    failed = [
        f"{phone.name}: rc={result.returncode} successful={result.successful}\n{result.output}"
        for phone, result in zip(phones, results, strict=True)
        if result.successful != 1
    ]
    assert not failed, "\n".join(failed) + "\n" + pbx.explain()


def _assert_record(
    record: dict[str, Any], *, status: str | set[str], caller: Line, callee: str
) -> None:
    statuses = {status} if isinstance(status, str) else status
    assert record["status"] in statuses, record
    assert record["direction"] == "internal", record
    assert (record["caller_number"], record["callee_number"]) == (caller.number, callee), record
    assert record["started_at"] is not None and record["ended_at"] is not None, record


# --- a call that connects --------------------------------------------------


def test_a_call_connects_through_callbridge_and_the_caller_hangs_up(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=1000)
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    # The callee's side is a call of callbridge's own: a new Call-ID, the
    # caller's number in From, the callee's in To, callbridge's media.
    invite = _one(callee.received(method="INVITE"), "INVITE at the callee", pbx.explain())
    assert invite.header("Call-ID") != _sent_invite(caller).header("Call-ID"), why
    assert f"sip:{ALICE.number}@" in (invite.header("From") or ""), invite.text
    assert f"sip:{BOB.number}@" in (invite.header("To") or ""), invite.text
    _assert_anchored(invite, why)
    # The ringing and the answer reach the caller, the answer with
    # callbridge's media in place of the callee's.
    assert caller.received(status=180, method="INVITE"), why
    answer = caller.received(status=200, method="INVITE")[0]
    assert _assert_anchored(answer, why) != callee.media_port, why
    # callbridge ACKed the callee's 200 and passed the caller's BYE on (the
    # callee's scenario requires both).
    assert callee.received(method="ACK") and callee.received(method="BYE"), why

    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "caller", record
    assert record["answered_at"] is not None, record
    assert 0 <= record["talk_seconds"] <= 3, record


def test_the_callee_hanging_up_sends_bye_to_the_caller(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_hangup.xml", extra=("-d", "1000"))
    caller = pbx.call(ALICE, BOB.number, "call_uac_wait_bye.xml")
    _assert_succeeded(caller, callee, pbx=pbx)

    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "callee", record


def test_early_media_183_reaches_the_caller_with_callbridges_sdp(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_early_media.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=300)
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    progress = caller.received(status=183, method="INVITE")
    assert progress, why
    assert _assert_anchored(progress[0], why) != callee.media_port, why
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)


# --- calls that do not connect ----------------------------------------------


def test_caller_cancel_is_recorded_as_cancelled(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_cancelled.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac_cancel.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    # The caller's CANCEL got its 200 and the INVITE 487; the callee was
    # cancelled in turn (its scenario answered 487 and got the ACK).
    assert caller.received(status=200, method="CANCEL"), why
    assert _final_status(caller) == 487, why
    assert callee.received(method="CANCEL"), why
    [record] = pbx.calls(1)
    _assert_record(record, status="cancelled", caller=ALICE, callee=BOB.number)
    assert record["answered_at"] is None and record["talk_seconds"] == 0, record


@pytest.mark.parametrize(
    ("scenario", "code", "status"),
    [
        pytest.param("call_uas_busy.xml", 486, "busy", id="busy"),
        pytest.param("call_uas_decline.xml", 603, "rejected", id="decline"),
        pytest.param("call_uas_no_codec.xml", 488, "failed", id="no-codec-in-common"),
    ],
)
def test_a_callee_refusing_is_relayed_to_the_caller_and_recorded(
    pbx: Pbx, scenario: str, code: int, status: str
) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, scenario)
    caller = pbx.call(ALICE, BOB.number, "call_uac_refused.xml")
    _assert_succeeded(caller, callee, pbx=pbx)

    assert _final_status(caller) == code, pbx.explain()
    [record] = pbx.calls(1)
    _assert_record(record, status=status, caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "callee", record


def test_an_unanswered_call_is_cancelled_at_the_ring_timeout_and_recorded_as_missed(
    pbx: Pbx,
) -> None:
    pbx.line(ALICE)
    pbx.line(BOB, ring_timeout=5)  # the API's shortest
    callee = pbx.device(BOB, "call_uas_cancelled.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac_refused.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    assert _final_status(caller) == 480, why
    cancel = _one(callee.received(method="CANCEL"), "CANCEL at the callee", pbx.explain())
    assert cancel.header("Reason"), cancel.text
    invite = _one(callee.received(method="INVITE"), "INVITE at the callee", pbx.explain())
    rang = (cancel.at - invite.at).total_seconds()
    assert 4.5 <= rang <= 7, f"rang {rang:.1f} s\n{why}"
    [record] = pbx.calls(1)
    _assert_record(record, status="missed", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "system", record


def test_a_line_with_no_registered_device_gives_480(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    caller = pbx.call(ALICE, BOB.number, "call_uac_refused.xml")
    _assert_succeeded(caller, pbx=pbx)

    assert _final_status(caller) == 480, pbx.explain()
    [record] = pbx.calls(1)
    _assert_record(record, status={"failed", "missed"}, caller=ALICE, callee=BOB.number)


def test_an_unknown_number_gives_404(pbx: Pbx) -> None:
    pbx.line(ALICE)
    caller = pbx.call(ALICE, "199", "call_uac_refused.xml")
    _assert_succeeded(caller, pbx=pbx)

    assert _final_status(caller) == 404, pbx.explain()
    [record] = pbx.calls(1)
    _assert_record(record, status={"failed", "rejected"}, caller=ALICE, callee="199")


def test_an_invite_with_a_malformed_sdp_gets_488_and_the_callee_never_rings(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    # Bob's device registers, then its port is watched by the test.
    port = free_port()
    pbx.register(BOB, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as device:
        device.bind(("127.0.0.1", port))
        device.settimeout(0.5)
        caller = pbx.call(ALICE, BOB.number, "call_uac_bad_sdp.xml")
        _assert_succeeded(caller, pbx=pbx)
        assert _final_status(caller) == 488, pbx.explain()
        with pytest.raises(TimeoutError):
            data = device.recv(65535)
            pytest.fail(f"the callee got {data[:200]!r}")
    [record] = pbx.calls(1)
    _assert_record(record, status={"failed", "rejected"}, caller=ALICE, callee=BOB.number)


# --- limits -------------------------------------------------------------------


def test_the_talk_limit_ends_the_call_with_bye_to_both_sides(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB, max_talk_duration=2)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac_wait_bye.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    answer = caller.received(status=200, method="INVITE")[0]
    bye = _one(caller.received(method="BYE"), "BYE at the caller", pbx.explain())
    talked = (bye.at - answer.at).total_seconds()
    assert 1.5 <= talked <= 4, f"talked {talked:.1f} s\n{why}"
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "system", record
    assert 1 <= record["talk_seconds"] <= 3, record


def test_a_second_caller_gets_486_while_the_line_takes_one_call_at_a_time(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB, max_incoming_calls=1)
    pbx.line(CAROL)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    first = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=2000)
    _wait_for(callee, _first("sent", method="INVITE", status=200), "Bob answering Alice")
    second = pbx.call(CAROL, BOB.number, "call_uac_refused.xml")
    _assert_succeeded(second, pbx=pbx)
    assert _final_status(second) == 486, pbx.explain()
    _assert_succeeded(first, callee, pbx=pbx)

    records = {record["caller_number"]: record for record in pbx.calls(2)}
    _assert_record(records[ALICE.number], status="answered", caller=ALICE, callee=BOB.number)
    _assert_record(records[CAROL.number], status="busy", caller=CAROL, callee=BOB.number)


def test_every_device_rings_and_the_first_answer_cancels_the_others(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB, max_devices=2)
    answering = pbx.device(BOB, "call_uas_answer.xml")
    ringing = pbx.device(BOB, "call_uas_cancelled.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=500)
    _assert_succeeded(caller, answering, ringing, pbx=pbx)

    cancel = _one(
        ringing.received(method="CANCEL"), "CANCEL at the device still ringing", pbx.explain()
    )
    assert cancel.header("Reason") == COMPLETED_ELSEWHERE, cancel.text
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "caller", record


class _RawCallee:
    """A device of a line played by a UDP socket of the test, for what SIPp
    cannot play: SIPp takes an identical ACK for a retransmission of the
    first and answers it with its 200 again, forever."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(5)

    def receive(self, method: str) -> tuple[str, tuple[str, int]]:
        """The next request of `method` (others, such as retransmissions, skipped)."""
        while True:
            data, source = self.sock.recvfrom(65535)
            text = data.decode()
            if text.startswith(f"{method} "):
                return text, source

    def answer(self, request: str, status: str, to_tag: str, body: str = "") -> bytes:
        """The response to `request`: its Via, From, Call-ID and CSeq, its To with `to_tag`."""
        headers = [line for line in request.split("\r\n\r\n")[0].split("\r\n")[1:] if line]
        kept = [h for h in headers if h.split(":")[0].lower() in ("via", "from", "call-id", "cseq")]
        to = next(h for h in headers if h.lower().startswith("to:"))
        if ";tag=" not in to:
            to += f";tag={to_tag}"
        extra = ["Content-Type: application/sdp"] if body else []
        lines = [f"SIP/2.0 {status}", *kept, to, "Contact: <sip:102@127.0.0.1>", *extra]
        return ("\r\n".join([*lines, f"Content-Length: {len(body)}", "", body])).encode()


def test_a_repeated_200_gets_the_same_ack_again_during_and_after_the_call(pbx: Pbx) -> None:
    """A 2xx is acknowledged by the UAC core, not its INVITE transaction
    (RFC 3261 §13.2.2.4): each time the callee's 200 comes again, callbridge
    sends the same ACK again; after the call, from what the ended call
    leaves for 64*T1."""
    pbx.line(ALICE)
    pbx.line(BOB)
    port, media_port = _free_ports(2)
    pbx.register(BOB, port)
    callee = _RawCallee(port)
    try:
        caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=1000)
        invite, source = callee.receive("INVITE")
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        ok = callee.answer(invite, "200 OK", "raw-callee", sdp)
        callee.sock.sendto(ok, source)
        acks = [callee.receive("ACK")[0]]
        callee.sock.sendto(ok, source)  # while the call is up
        acks.append(callee.receive("ACK")[0])
        bye, _ = callee.receive("BYE")
        callee.sock.sendto(callee.answer(bye, "200 OK", "raw-callee"), source)
        callee.sock.sendto(ok, source)  # after it ended
        acks.append(callee.receive("ACK")[0])
    finally:
        callee.sock.close()
    _assert_succeeded(caller, pbx=pbx)

    vias = [[h for h in ack.split("\r\n") if h.lower().startswith("via:")] for ack in acks]
    assert len(vias[0]) == 1 and vias == [vias[0]] * 3, vias
    assert acks == [acks[0]] * 3, acks
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)


def test_an_ended_call_is_let_go_at_once_not_held_for_its_32_seconds(pbx: Pbx) -> None:
    """An ended call's dialogs and INVITE transactions still meet
    retransmissions for 64*T1 (32 s). They do it as small records, and the
    call itself goes when it ends: held whole for those 32 s, tens of
    thousands of calls at 200 calls/s made the garbage collector's passes
    stall the PBX long enough to lose calls (docs/BENCHMARKS.md)."""
    dave = Line("104", "dave", "dave-sip-pass-for-call-tests")
    for line in (ALICE, CAROL, dave):
        pbx.line(line)
    pbx.line(BOB, max_devices=2)
    # Parallel ring: one device answers, the other is cancelled (487).
    answering = pbx.device(BOB, "call_uas_answer.xml")
    ringing = pbx.device(BOB, "call_uas_cancelled.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=300)
    _assert_succeeded(caller, answering, ringing, pbx=pbx)
    # A callee busy, and a caller who gives up.
    busy = pbx.device(CAROL, "call_uas_busy.xml")
    refused = pbx.call(ALICE, CAROL.number, "call_uac_refused.xml")
    _assert_succeeded(refused, busy, pbx=pbx)
    cancelled = pbx.device(dave, "call_uas_cancelled.xml")
    giving_up = pbx.call(ALICE, dave.number, "call_uac_cancel.xml")
    _assert_succeeded(giving_up, cancelled, pbx=pbx)
    pbx.calls(3)

    # Well within the 32 s: the records still answer for the dialogs.
    stop_server(pbx.server.process)
    stats = [line for line in pbx.server.log().splitlines() if "b2bua.stats" in line]
    assert stats and "calls_in_memory=0" in stats[-1].replace('"', ""), stats


# --- media ------------------------------------------------------------------


def _stream_both_ways(
    caller: SippProcess, caller_media: RtpEndpoint, callee: SippProcess, callee_media: RtpEndpoint
) -> None:
    """Once the call is answered, each side's RTP endpoint streams to the
    media address callbridge gave it in SDP."""
    offer = _wait_for(callee, _first("received", method="INVITE"), "callbridge's INVITE")
    _wait_for(callee, _first("sent", method="INVITE", status=200), "the callee's 200")
    callee_media.send_to(offer.sdp_media())
    answer = _wait_for(caller, _first("received", method="INVITE", status=200), "the 200")
    caller_media.send_to(answer.sdp_media())


def test_rtp_is_relayed_both_ways_between_the_legs(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_media.port)
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", rtp_port=alice_media.port, talk_ms=2500)
    _stream_both_ways(caller, alice_media, callee, bob_media)
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    # About 2 s of 50 packets a second each way; each side hears the other
    # from the address callbridge gave it (symmetric RTP).
    heard_by_bob = bob_media.payloads_from(alice_media.fill)
    heard_by_alice = alice_media.payloads_from(bob_media.fill)
    stats = (
        f"alice sent {alice_media.sent} packets and heard {heard_by_alice}; "
        f"bob sent {bob_media.sent} and heard {heard_by_bob}"
    )
    assert heard_by_bob >= 50 and heard_by_alice >= 50, f"{stats}\n{why}"
    offer = callee.received(method="INVITE")[0].sdp_media()
    answer = caller.received(status=200, method="INVITE")[0].sdp_media()
    assert {source for _, source in bob_media.received} == {offer}, stats
    assert {source for _, source in alice_media.received} == {answer}, stats


# Issue 11, "RTP bleed": 32 pairs, so the sprayer covers the whole range.
SPRAYED_PORTS = (20900, 20963)


def test_a_stranger_spraying_the_relay_ports_gets_none_of_a_nat_callers_call(
    start_pbx: Callable[..., Pbx],
) -> None:
    """A stranger on 127.0.0.3 sprays a steady RTP stream at every relay port
    through the ringing and the answer of a call whose caller is behind NAT
    (its SDP names a port it never sends from). It hears none of the
    callee's audio and injects none of its own; both phones hear each other."""
    pbx = start_pbx(CALLBRIDGE_RTP_PORTS=f"{SPRAYED_PORTS[0]}-{SPRAYED_PORTS[1]}")
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    sprayer = RtpSprayer("127.0.0.3", range(SPRAYED_PORTS[0], SPRAYED_PORTS[1] + 1), 0x66)
    try:
        callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_media.port)
        behind_nat = _free_ports(1)[0]  # what alice's SDP claims; she sends from another port
        caller = pbx.call(ALICE, BOB.number, "call_uac.xml", rtp_port=behind_nat, talk_ms=2500)
        _stream_both_ways(caller, alice_media, callee, bob_media)
        _assert_succeeded(caller, callee, pbx=pbx)
    finally:
        sprayer.close()
    heard_by_bob = bob_media.payloads_from(alice_media.fill)
    heard_by_alice = alice_media.payloads_from(bob_media.fill)
    stats = (
        f"the stranger sent {sprayer.sent} packets and got {len(sprayer.received)} back, "
        f"{sprayer.payloads_from(bob_media.fill)} of bob's and "
        f"{sprayer.payloads_from(alice_media.fill)} of alice's; alice heard bob "
        f"{heard_by_alice} times and the stranger {alice_media.payloads_from(0x66)}; "
        f"bob heard alice {heard_by_bob} times and the stranger {bob_media.payloads_from(0x66)}"
    )
    assert sprayer.sent > 1000, stats
    assert sprayer.received == [], f"{stats}\n{pbx.explain()}"
    assert alice_media.payloads_from(0x66) == bob_media.payloads_from(0x66) == 0, stats
    assert heard_by_bob >= 50 and heard_by_alice >= 50, f"{stats}\n{pbx.explain()}"
    answer = caller.received(status=200, method="INVITE")[0].sdp_media()
    assert {source for _, source in alice_media.received} == {answer}, stats


def test_while_the_call_rings_nobody_latches_even_from_any_host(
    start_pbx: Callable[..., Pbx],
) -> None:
    """With the host check off (SIP through a proxy), the latch window still
    opens only when our 200 goes out: a stranger's steady stream during the
    ringing takes nothing, and the NAT caller latches after the answer."""
    pbx = start_pbx(
        CALLBRIDGE_RTP_PORTS=f"{SPRAYED_PORTS[0]}-{SPRAYED_PORTS[1]}",
        CALLBRIDGE_MEDIA_LATCH_SIGNALLING_HOST="false",
    )
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_media.port)
    behind_nat = _free_ports(1)[0]
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", rtp_port=behind_nat, talk_ms=2500)
    _wait_for(callee, _first("sent", method="INVITE", status=180), "the callee's 180")
    # The callee answers 300 ms after its 180: spray well inside the ringing.
    sprayer = RtpSprayer("127.0.0.3", range(SPRAYED_PORTS[0], SPRAYED_PORTS[1] + 1), 0x66)
    time.sleep(0.15)
    sprayer.close()
    _stream_both_ways(caller, alice_media, callee, bob_media)
    _assert_succeeded(caller, callee, pbx=pbx)
    heard_by_alice = alice_media.payloads_from(bob_media.fill)
    heard_by_bob = bob_media.payloads_from(alice_media.fill)
    stats = (
        f"the stranger sent {sprayer.sent}; alice heard bob {heard_by_alice} times, "
        f"bob heard alice {heard_by_bob} times and the stranger {bob_media.payloads_from(0x66)}"
    )
    assert sprayer.sent > 500, stats
    assert bob_media.payloads_from(0x66) == 0, stats
    assert heard_by_alice >= 50 and heard_by_bob >= 50, f"{stats}\n{pbx.explain()}"


def test_media_is_never_sent_to_addresses_outside_the_allowed_networks(
    start_pbx: Callable[..., Pbx],
) -> None:
    """With the default `public`, phones on loopback (a private range, as far
    as the setting goes) get no media, whatever their SDP or packets say."""
    pbx = start_pbx(CALLBRIDGE_MEDIA_ALLOWED_NETWORKS="public")
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_media.port)
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", rtp_port=alice_media.port, talk_ms=2000)
    _stream_both_ways(caller, alice_media, callee, bob_media)
    _assert_succeeded(caller, callee, pbx=pbx)
    stats = f"alice sent {alice_media.sent}, bob sent {bob_media.sent}"
    assert alice_media.sent >= 50 and bob_media.sent >= 50, stats
    assert alice_media.received == [] and bob_media.received == [], stats


@pytest.mark.parametrize("own", ["first relay port", "last relay port", "sip port"])
def test_an_offer_naming_callbridges_own_sockets_gets_488_and_the_callee_never_rings(
    start_pbx: Callable[..., Pbx], own: str
) -> None:
    """Issue 11: an SDP that points the relay at itself (its RTP range or its
    SIP socket) would make it feed itself: refused before anyone rings."""
    pbx = start_pbx(CALLBRIDGE_RTP_PORTS=f"{SPRAYED_PORTS[0]}-{SPRAYED_PORTS[1]}")
    pbx.line(ALICE)
    pbx.line(BOB)
    port = {
        "first relay port": SPRAYED_PORTS[0],
        "last relay port": SPRAYED_PORTS[1],
        "sip port": pbx.server.port,
    }[own]
    device_port = free_port()
    pbx.register(BOB, device_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as device:
        device.bind(("127.0.0.1", device_port))
        device.settimeout(0.5)
        caller = pbx.call(ALICE, BOB.number, "call_uac_refused.xml", rtp_port=port)
        _assert_succeeded(caller, pbx=pbx)
        assert _final_status(caller) == 488, pbx.explain()
        with pytest.raises(TimeoutError):
            data = device.recv(65535)
            pytest.fail(f"the callee got {data[:200]!r}")
    [record] = pbx.calls(1)
    _assert_record(record, status={"failed", "rejected"}, caller=ALICE, callee=BOB.number)


def test_a_delayed_offer_is_made_by_the_callee_and_answered_in_the_acks(pbx: Pbx) -> None:
    """RFC 3261 §13.2.1: an INVITE without SDP goes on without SDP; the
    callee's 200 offers, anchored for the caller; the caller's ACK answers,
    anchored in our ACK to the callee; then RTP flows both ways."""
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    callee = pbx.device(BOB, "call_uas_delayed_offer.xml", rtp_port=bob_media.port)
    caller = pbx.call(
        ALICE, BOB.number, "call_uac_delayed_offer.xml", rtp_port=alice_media.port, talk_ms=2500
    )
    invite = _wait_for(callee, _first("received", method="INVITE"), "callbridge's INVITE")
    assert invite.body.strip() == "" and invite.header("Content-Type") is None, invite.text
    offer = _wait_for(caller, _first("received", method="INVITE", status=200), "the 200")
    alice_media.send_to(offer.sdp_media())
    ack = _wait_for(callee, _first("received", method="ACK"), "callbridge's ACK with an answer")
    bob_media.send_to(ack.sdp_media())
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    # The callee's offer reached the caller anchored, its codecs untouched;
    # the caller's answer reached the callee anchored.
    assert _assert_anchored(offer, why) != bob_media.port, why
    assert "RTP/AVP 0 8 101" in offer.body, offer.text
    assert _assert_anchored(ack, why) != alice_media.port, why
    assert "RTP/AVP 0 101" in ack.body, ack.text
    heard_by_bob = bob_media.payloads_from(alice_media.fill)
    heard_by_alice = alice_media.payloads_from(bob_media.fill)
    assert heard_by_bob >= 50 and heard_by_alice >= 50, (heard_by_bob, heard_by_alice, why)
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)


def test_a_delayed_offer_the_caller_leaves_unanswered_ends_the_call(pbx: Pbx) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_delayed_offer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac_delayed_offer_unanswered.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    # The callee's 200 is ACKed (without an answer: there is none) before its BYE.
    ack = _one(callee.received(method="ACK"), "ACK at the callee", why)
    assert ack.body.strip() == "" and callee.received(method="BYE"), why
    [record] = pbx.calls(1)
    _assert_record(record, status="failed", caller=ALICE, callee=BOB.number)
    assert record["hangup_cause"] == "no SDP answer in the ACK", record


def test_a_device_that_stops_sending_rtp_is_hung_up_after_the_rtp_timeout(
    start_pbx: Callable[..., Pbx],
) -> None:
    pbx = start_pbx(CALLBRIDGE_RTP_TIMEOUT="3")
    pbx.line(ALICE)
    pbx.line(BOB)
    alice_media, bob_media = pbx.rtp(0x11), pbx.rtp(0x22)
    callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_media.port)
    caller = pbx.call(ALICE, BOB.number, "call_uac_wait_bye.xml", rtp_port=alice_media.port)
    _stream_both_ways(caller, alice_media, callee, bob_media)
    time.sleep(1)
    bob_media.send_to(None)  # Bob's phone goes silent; Alice's keeps talking
    silent_since = datetime.now()
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    assert alice_media.payloads_from(bob_media.fill) > 0, why
    for phone in (caller, callee):
        bye = _one(phone.received(method="BYE"), f"BYE at {phone.name}", pbx.explain())
        waited = (bye.at - silent_since).total_seconds()
        assert 2.5 <= waited <= 6, f"{phone.name}: BYE {waited:.1f} s after the silence\n{why}"
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "system", record


def test_hold_reinvite_and_info_pass_through_to_the_other_side(pbx: Pbx) -> None:
    """The callee answers without telephone-event: the caller's DTMF INFO
    reaches it as INFO (to a phone with telephone-event it would be RFC 4733,
    tests/integration/test_dtmf.py)."""
    pbx.line(ALICE)
    pbx.line(BOB)
    # The scenarios check the SDP of each side: the callee gets the hold as
    # sendonly and the caller the recvonly answer, both anchored on callbridge.
    callee = pbx.device(BOB, "call_hold_uas.xml")
    caller = pbx.call(ALICE, BOB.number, "call_hold_uac.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()
    hold = [m for m in callee.received(method="INVITE") if "a=sendonly" in m.text]
    assert len(hold) == 1, why
    _assert_anchored(hold[0], why)
    [info] = callee.received(method="INFO")
    assert "Signal=5" in info.text and "application/dtmf-relay" in info.text, why
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)


def test_a_reinvite_without_sdp_is_offered_by_the_other_side_and_answered_in_the_acks(
    pbx: Pbx,
) -> None:
    """RFC 3261 §14: a re-INVITE without an offer (a session refresh, a
    phone taking a call back) goes on without one; the other side's 200
    offers, anchored; the ACK answers, anchored in our ACK to the other side."""
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_refresh_uas.xml")
    caller = pbx.call(ALICE, BOB.number, "call_refresh_uac.xml")
    _assert_succeeded(caller, callee, pbx=pbx)
    why = pbx.explain()

    first, refresh = callee.received(method="INVITE")[:2]
    assert first.body and not refresh.body.strip(), why
    # The caller's scenario checked the offer in the 200 (the callee's codecs
    # on callbridge's address); the callee's ACKs: the first plain, the second
    # with the caller's answer, anchored.
    plain, answered = callee.received(method="ACK")[:2]
    assert not plain.body.strip(), why
    assert "RTP/AVP 0 101" in answered.body, answered.text
    assert _assert_anchored(answered, why) != caller.media_port, why
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "caller", record


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database of this test's own (the server migrates it)."""
    with postgres_database() as url:
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped when the block ends."""
    name = f"callbridge_calls_{secrets.token_hex(6)}"
    user = asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_a_call_is_recorded_on_postgresql(
    start_pbx: Callable[..., Pbx], fresh_postgres: str
) -> None:
    pbx = start_pbx(CALLBRIDGE_DATABASE_URL=fresh_postgres)
    pbx.line(ALICE)
    pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=500)
    _assert_succeeded(caller, callee, pbx=pbx)
    [record] = pbx.calls(1)
    _assert_record(record, status="answered", caller=ALICE, callee=BOB.number)
    assert record["hangup_side"] == "caller", record


def test_an_apply_during_a_call_leaves_the_call_on_the_settings_it_began_with(
    pbx: Pbx,
) -> None:
    pbx.line(ALICE)
    bob = pbx.line(BOB)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=3000)
    _wait_for(caller, _first("received", method="INVITE", status=200), "the answer")
    # A talk limit of 1 s applied mid-call does not cut the call that runs.
    with pbx.api() as api:
        changed = api.patch(f"/api/v1/internal-lines/{bob}", json={"max_talk_duration": 1})
        assert changed.status_code == 200, changed.text
        pbx.apply(api)
    _assert_succeeded(caller, callee, pbx=pbx)
    [record] = pbx.calls(1)
    assert (record["status"], record["hangup_side"]) == ("answered", "caller"), record
    assert record["talk_seconds"] >= 3, record
