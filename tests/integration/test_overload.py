"""Overload shedding end to end (pbx/overload.py through `callbridge serve`):
a flood of new INVITEs keeps callbridge behind, new calls get 503 with
Retry-After, while a call already up is hung up normally and a phone
registers. No timing is asserted: the flood keeps a fixed number of
INVITEs outstanding (as SIPp's -l does), so callbridge's socket always
holds a queue whatever the machine's speed, and the overload threshold
(the real setting) sits below what that queue makes it wait."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from .test_calls import ALICE, BOB, CAROL, Pbx, _assert_succeeded, _first, _wait_for, start_pbx

pytestmark = pytest.mark.integration

_ = start_pbx  # a fixture
RETRY_AFTER = 7
OUTSTANDING = 300


class InviteFlood:
    """New INVITEs from one UDP socket of the test, each answered final
    response ACKed and replaced by a new INVITE, so `outstanding` of them
    are always waiting at callbridge. Counts the final statuses, and keeps
    the 503s' Retry-After and To."""

    def __init__(self, host: str, port: int, outstanding: int = OUTSTANDING) -> None:
        self.target = (host, port)
        self.outstanding = outstanding
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.local_port = self.sock.getsockname()[1]
        self.statuses: Counter[int] = Counter()
        self.refusals: list[tuple[str | None, str | None]] = []  # (Retry-After, To)
        self._sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InviteFlood:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _invite(self) -> bytes:
        self._sent += 1
        n = self._sent
        host, port = self.target
        return (
            f"INVITE sip:{BOB.number}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch=z9hG4bK-flood-{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{ALICE.number}@{host}>;tag=flood{n}\r\n"
            f"To: <sip:{BOB.number}@{host}>\r\n"
            f"Call-ID: flood-{n}@127.0.0.1\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:{ALICE.number}@127.0.0.1:{self.local_port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def _ack(self, response: str) -> bytes:
        """The ACK of a non-2xx final response: the INVITE's branch, its To."""
        via = _header(response, "Via")
        to = _header(response, "To")
        call_id = _header(response, "Call-ID")
        from_ = _header(response, "From")
        host, port = self.target
        return (
            f"ACK sip:{BOB.number}@{host}:{port} SIP/2.0\r\n"
            f"Via: {via}\r\nMax-Forwards: 70\r\nFrom: {from_}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _run(self) -> None:
        for _ in range(self.outstanding):
            self.sock.sendto(self._invite(), self.target)
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                # Lost on the way (a full socket): put the window back.
                for _ in range(self.outstanding // 10):
                    self.sock.sendto(self._invite(), self.target)
                continue
            except OSError:
                return
            text = data.decode("utf-8", "replace")
            match = re.match(r"SIP/2\.0 (\d{3})", text)
            if match is None or int(match.group(1)) < 200:
                continue
            status = int(match.group(1))
            self.statuses[status] += 1
            if status == 503:
                self.refusals.append((_header(text, "Retry-After"), _header(text, "To")))
            self.sock.sendto(self._ack(text), self.target)
            self.sock.sendto(self._invite(), self.target)


def _header(text: str, name: str) -> str | None:
    match = re.search(rf"(?im)^{re.escape(name)}:[ \t]*(.*?)\r?$", text)
    return match.group(1) if match else None


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_flood_of_new_calls_is_shed_with_503_while_calls_up_and_registrations_are_served(
    start_pbx: Callable[..., Pbx],
) -> None:
    pbx = start_pbx(
        CALLBRIDGE_OVERLOAD_DELAY="0.01",
        CALLBRIDGE_OVERLOAD_RETRY_AFTER=str(RETRY_AFTER),
        # Thousands of INVITEs: log them as a server in production would.
        CALLBRIDGE_LOG_LEVEL="info",
        CALLBRIDGE_LOG_SIP_MESSAGES="false",
    )
    pbx.line(ALICE)
    pbx.line(BOB, max_devices=2)  # a second phone answers the call after the flood
    pbx.line(CAROL)
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=4000, recv_timeout=30)
    _wait_for(callee, _first("received", method="ACK"), "the call up (the callee's ACK)")

    with InviteFlood(pbx.server.host, pbx.server.port) as flood:
        shedding = _until(lambda: flood.statuses[503] > 0, timeout=20)
        # Behind a queue of new INVITEs, a phone registers, and the call up
        # ends with the caller's BYE, passed on and answered.
        pbx.register(CAROL, _free_port())
        _assert_succeeded(caller, callee, pbx=pbx, timeout=60)
        refused_during = flood.statuses[503]
    why = f"flood answers: {dict(flood.statuses)}\n{pbx.explain()}"
    assert shedding, why
    assert refused_during > 0, why
    for retry_after, to in flood.refusals:
        assert retry_after == str(RETRY_AFTER), why
        assert to is not None and ";tag=" in to, why
    log = pbx.server.log()
    assert "sip.overload_started" in log, why

    # The flood over, the overload ends (said once, after a calm spell) and
    # new calls are taken on again.
    assert _until(lambda: "sip.overload_ended" in pbx.server.log(), timeout=30), why
    assert pbx.server.log().count("sip.overload_started") == 1, why
    callee = pbx.device(BOB, "call_uas_answer.xml")
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", talk_ms=200)
    _assert_succeeded(caller, callee, pbx=pbx)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
