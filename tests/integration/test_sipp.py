"""`callbridge serve` against SIPp on loopback, over UDP and TCP.

The tests share one server (a start costs seconds): none configures it or
leaves a binding or a block behind, and each reads the log from its own
beginning. Those that need a server of their own start it."""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, run_sipp, start_server, stop_server

pytestmark = pytest.mark.integration

TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("sipp"))
    try:
        yield srv
    finally:
        stop_server(srv.process)
    assert srv.process.returncode == 0, srv.log()


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The module's server, its log from this test's beginning."""
    assert shared_server.process.poll() is None, "callbridge died:\n" + shared_server.log()
    return shared_server.since_now()


def _events(server: Server, event: str, **fields: str) -> list[str]:
    wanted = [f"{k}={v}" for k, v in fields.items()]
    return [
        line
        for line in server.log().splitlines()
        if f" {event} " in line and all(w in line.split() for w in wanted)
    ]


def _call_id(server: Server, method: str) -> str:
    lines = _events(server, "sip.new_request", method=method)
    assert lines, server.log()
    match = re.search(r"call_id=(\S+)", lines[-1])
    assert match
    return match.group(1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_answered_with_200_and_capabilities(
    server: Server, tmp_path: Path, transport: str
) -> None:
    result = run_sipp("options.xml", server, tmp_path, transport=transport, calls=3)
    assert result.returncode == 0, result.output
    assert result.successful == 3
    assert result.failed == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unauthenticated_invite_gets_407_from_a_transaction_whose_ack_stops_retransmissions(
    server: Server, tmp_path: Path, transport: str
) -> None:
    result = run_sipp("invite_407.xml", server, tmp_path, transport=transport)
    assert result.returncode == 0, result.output
    call_id = _call_id(server, "INVITE")
    log = server.log().splitlines()
    sends = [i for i, line in enumerate(log) if " sip.send " in line and call_id in line]
    first_ack = next(i for i, line in enumerate(log) if "method=ACK" in line and call_id in line)
    # One 407, and none after the ACK during SIPp's 2.2 s pause: on UDP,
    # Timer G would have repeated it at 0.5 s and 1.5 s had the ACK not
    # matched the transaction.
    assert [log[i].split("status=")[1].split()[0] for i in sends] == ["407"]
    assert sends[0] < first_ack
    assert not _events(server, "sip.stray_ack", call_id=call_id)


INVITE = (
    "INVITE sip:100@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-retrans-{n};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:raw@127.0.0.1:{me}>;tag=raw{n}\r\n"
    "To: <sip:100@{host}:{port}>\r\n"
    "Call-ID: retrans-{n}@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Length: 0\r\n\r\n"
)


def test_retransmitted_invite_is_answered_from_its_transaction(server: Server) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        me = sock.getsockname()[1]
        invite = INVITE.format(host=server.host, port=server.port, me=me, n=1).encode()
        sock.sendto(invite, (server.host, server.port))
        sock.sendto(invite, (server.host, server.port))
        answers = [sock.recv(65535) for _ in range(2)]
        # The same 407 twice: same To tag, so one transaction made both.
        assert answers[0] == answers[1]
        assert answers[0].startswith(b"SIP/2.0 407 ")
        to_tag = re.search(rb"\r\nTo: [^\r]*;tag=([^;\r]+)", answers[0])
        assert to_tag
        assert len(_events(server, "sip.new_request", call_id="retrans-1@127.0.0.1")) == 1
        # Without an ACK, Timer G repeats the 407 (first after T1 = 0.5 s).
        assert sock.recv(65535) == answers[0]
        ack = (
            INVITE.format(host=server.host, port=server.port, me=me, n=1)
            .replace("INVITE sip:", "ACK sip:", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
            .replace(">\r\nCall-ID", f">;tag={to_tag.group(1).decode()}\r\nCall-ID")
        )
        sock.sendto(ack.encode(), (server.host, server.port))
        # After the ACK, silence: Timer G stopped (its next shot was at 1.5 s).
        sock.settimeout(2.0)
        with pytest.raises(TimeoutError):
            sock.recv(65535)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_request_is_answered_400_with_reason(
    server: Server, tmp_path: Path, transport: str
) -> None:
    result = run_sipp("bad_max_forwards_400.xml", server, tmp_path, transport=transport)
    assert result.returncode == 0, result.output
    assert _events(server, "sip.parse_error", status="400")


def test_unsupported_version_is_answered_505(server: Server, tmp_path: Path) -> None:
    result = run_sipp("bad_version_505.xml", server, tmp_path)
    assert result.returncode == 0, result.output


def _garbage(rng: random.Random) -> bytes:
    """Random bytes, and random bytes dressed up as the start of SIP."""
    size = rng.choice([0, 1, 3, 50, 400, 1400, 9000])
    noise = rng.randbytes(size)
    return rng.choice(
        [
            noise,
            b"INVITE sip:x@y SIP/2.0\r\n" + noise,
            b"SIP/2.0 200 OK\r\nVia: " + noise,
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n" + noise,
            b"\r\n\r\n",
        ]
    )


def test_random_datagrams_leave_the_server_answering_options(
    server: Server, tmp_path: Path
) -> None:
    rng = random.Random(4475)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(600):
            sock.sendto(_garbage(rng), (server.host, server.port))
            if i % 100 == 0:
                time.sleep(0.01)  # let the loop drain; loss here would hide nothing
    result = run_sipp("options.xml", server, tmp_path)
    assert result.returncode == 0, result.output
    assert server.process.poll() is None


def test_random_tcp_streams_leave_the_server_answering_options(
    server: Server, tmp_path: Path
) -> None:
    rng = random.Random(5118)
    for _ in range(30):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            try:
                for _ in range(rng.randint(1, 5)):
                    sock.sendall(_garbage(rng))
            except OSError:
                pass  # the server may close a connection it cannot frame: that is right
    result = run_sipp("options.xml", server, tmp_path, transport="t1")
    assert result.returncode == 0, result.output
    assert server.process.poll() is None


def test_malformed_datagrams_between_good_requests_do_not_harm_them(
    server: Server, tmp_path: Path
) -> None:
    rng = random.Random(3261)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as garbage:
        for _ in range(5):
            for _ in range(20):
                garbage.sendto(_garbage(rng), (server.host, server.port))
            result = run_sipp("options.xml", server, tmp_path)
            assert result.returncode == 0, result.output
    assert _events(server, "sip.parse_error")


def test_options_load_is_answered_without_loss(server: Server, tmp_path: Path) -> None:
    # Correctness under modest load (no timing asserted: bench/ measures speed).
    result = run_sipp("options.xml", server, tmp_path, calls=2000, rate=1000, timeout=60)
    assert result.returncode == 0, result.output
    assert result.successful == 2000


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    stop_server(srv.process)
    assert srv.process.returncode == 0
    assert "callbridge.stopping" in srv.log()


def test_full_sip_messages_are_logged_as_json_lines_when_asked(tmp_path: Path) -> None:
    srv = start_server(tmp_path, CALLBRIDGE_LOG_FORMAT="json", CALLBRIDGE_LOG_SIP_MESSAGES="true")
    try:
        result = run_sipp("options.xml", srv, tmp_path)
        assert result.returncode == 0, result.output
    finally:
        stop_server(srv.process)
    events = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    received = [e for e in events if e["event"] == "sip.recv" and e.get("method") == "OPTIONS"]
    sent = [e for e in events if e["event"] == "sip.send" and e.get("status") == "200"]
    assert received and received[0]["message"].startswith("OPTIONS sip:")
    assert sent and sent[0]["message"].startswith("SIP/2.0 200 OK\r\n")


def test_cancel_matches_its_invite_or_gets_481(server: Server) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        me = sock.getsockname()[1]
        invite = INVITE.format(host=server.host, port=server.port, me=me, n=2)
        sock.sendto(invite.encode(), (server.host, server.port))
        answer = sock.recv(65535)
        assert answer.startswith(b"SIP/2.0 407 ")
        cancel = invite.replace("INVITE sip:", "CANCEL sip:", 1).replace(
            "CSeq: 1 INVITE", "CSeq: 1 CANCEL"
        )
        sock.sendto(cancel.encode(), (server.host, server.port))
        # The INVITE was already answered: the CANCEL matches it (200) and
        # changes nothing (RFC 3261 §9.2). Timer G's repeat of the 407 may
        # arrive first.
        replies = [sock.recv(65535) for _ in range(2)]
        ok = [r for r in replies if b"CSeq: 1 CANCEL" in r]
        assert ok and ok[0].startswith(b"SIP/2.0 200 ")
        to_tag = re.search(rb"\r\nTo: [^\r]*;tag=([^;\r]+)", answer)
        assert to_tag and to_tag.group(1) in ok[0]  # the same To tag as the 407's
        stray = cancel.replace("z9hG4bK-retrans-2", "z9hG4bK-unknown-2")
        sock.sendto(stray.encode(), (server.host, server.port))
        while True:
            reply = sock.recv(65535)
            if b"z9hG4bK-unknown-2" in reply:
                break
        assert reply.startswith(b"SIP/2.0 481 ")
