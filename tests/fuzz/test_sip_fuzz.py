"""Mutation fuzzing of a live `callbridge serve` over UDP, TCP and
WebSocket (`/ws/sip`, one case a frame).

Seed messages (tests/fuzz/corpus.py) are damaged by tests/fuzz/mutator.py and
sent from 127.0.0.2, which the server knows as a provider's address, so that
what survives the parser reaches the trunk, routing and call layers too. After
each batch an OPTIONS from 127.0.0.1 must get its 200 within PROBE_TIMEOUT, and
at the end the server's log must hold no finding (tests/fuzz/findings.py).

FUZZ_SEED replays a run (the seed is printed); FUZZ_SIP_CASES sets the cases
per transport (`make fuzz` runs many more than `make test`)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ..integration.conftest import Server, start_server, stop_server
from .corpus import corpus, own_messages
from .findings import findings
from .mutator import Case, cases

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("FUZZ_SEED", "4475"))
CASES = int(os.environ.get("FUZZ_SIP_CASES", "20000"))
BATCH = 50
PROBE_TIMEOUT = 5.0
PROVIDER = "127.0.0.2"
ADMIN_PASSWORD = "admin-pass-for-fuzzing"
# Largest UDP payload over IPv4.
MAX_DATAGRAM = 65_507
# Cases per TCP connection: pipelined messages share a stream, and the
# server drops a stream at its first framing error.
PER_CONNECTION = 3
# Datagrams between two waits for the server's answer to an OPTIONS sent from
# the same socket: more at once would overflow its receive buffer, and a
# case the kernel drops tests nothing.
IN_FLIGHT = 5


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an internal line 101, an external line whose provider
    is PROVIDER and the default incoming route to 101; the flood guard off
    for the fuzzer's address (blocked, it would drop every later case)."""
    tmp_path = tmp_path_factory.mktemp("sip-fuzz")
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_GUARD_MAX_FAILURES="1000000000",
    )
    try:
        _provision(server)
        yield server
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()[-5000:]


def _provision(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as api:
        login = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        api.headers["Authorization"] = f"Bearer {login.json()['token']}"
        for path, body in (
            (
                "/api/v1/internal-lines",
                {"number": "101", "username": "alice", "password": "fuzz-line-pass-1"},
            ),
            (
                "/api/v1/external-lines",
                {"code": "provider", "server": f"{PROVIDER}:5060", "username": "380441234567"},
            ),
        ):
            created = api.post(path, json=body)
            assert created.status_code == 201, created.text
        rules = api.get("/api/v1/routing-rules").json()["items"]
        [default] = [r for r in rules if r["is_default"]]
        changed = api.patch(
            f"/api/v1/routing-rules/{default['id']}",
            json={"action": {"type": "internal_line", "target": "101"}},
        )
        assert changed.status_code == 200, changed.text
        applied = api.post("/api/v1/config/apply")
        assert applied.status_code == 200, applied.text


def _options_message(server: Server, transport: str, port: int, source: str = "127.0.0.1") -> bytes:
    unique = time.monotonic_ns()
    return (
        f"OPTIONS sip:{server.host}:{server.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {source}:{port};branch=z9hG4bKprobe{unique}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{source}>;tag=p{port}\r\n"
        f"To: <sip:{server.host}>\r\n"
        f"Call-ID: probe{unique}@{source}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _websocket(server: Server, source: str) -> ClientConnection:
    """A SIP WebSocket to the server from `source` (a loopback address)."""
    sock = socket.create_connection(
        ("127.0.0.1", server.http_port), timeout=PROBE_TIMEOUT, source_address=(source, 0)
    )
    return connect(
        f"ws://127.0.0.1:{server.http_port}/ws/sip",
        sock=sock,
        subprotocols=["sip"],  # type: ignore[list-item]
        open_timeout=PROBE_TIMEOUT,
        max_size=None,
    ).__enter__()


def _options_over_websocket(ws: ClientConnection, server: Server, source: str) -> bytes:
    """Send an OPTIONS over `ws` and wait for its answer: the frames sent
    before it have all been read by then (a socket's frames are read in order)."""
    message = _options_message(server, "ws", ws.local_address[1], source=source)
    call_id = message.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0]
    ws.send(message.decode())
    deadline = time.monotonic() + PROBE_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        frame = ws.recv(timeout=left)
        data = frame.encode() if isinstance(frame, str) else frame
        if call_id in data:
            return data
    raise TimeoutError("no answer to OPTIONS over the WebSocket")


def _options(server: Server, transport: str) -> bytes:
    if transport == "ws":
        with _websocket(server, "127.0.0.1") as ws:
            return _options_over_websocket(ws, server, "127.0.0.1")
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.bind(("127.0.0.1", 0))
        message = _options_message(server, transport, sock.getsockname()[1])
        if transport == "udp":
            sock.sendto(message, (server.host, server.port))
            return sock.recv(65_535)
        sock.connect((server.host, server.port))
        sock.sendall(message)
        return sock.recv(65_535)


def assert_answers(server: Server, transport: str, batch: list[Case], record: Path) -> None:
    """The server is alive and answers OPTIONS with 200 in time; if not,
    the batch that did it is written to `record` for the report."""
    problem = None
    if server.process.poll() is not None:
        problem = f"the server exited with {server.process.returncode}"
    else:
        try:
            answer = _options(server, transport)
            if not answer.startswith(b"SIP/2.0 200 "):
                problem = f"OPTIONS got {answer[:80]!r}"
        except (OSError, ConnectionClosed, InvalidStatus) as error:
            problem = f"OPTIONS over {transport} got no answer in {PROBE_TIMEOUT} s: {error!r}"
    if problem is not None:
        record.write_text("\n".join(case.describe() for case in batch))
        pytest.fail(f"{problem} after a batch of cases (seed {SEED}), written to {record}")


def _send_udp(sock: socket.socket, server: Server, batch: list[Case]) -> None:
    for start in range(0, len(batch), IN_FLIGHT):
        for case in batch[start : start + IN_FLIGHT]:
            sock.sendto(case.data, (server.host, server.port))
        _sync(sock, server)


def _sync(sock: socket.socket, server: Server) -> None:
    """Wait until the server has read every datagram sent before: it reads a
    socket in order, so the answer to an OPTIONS sent last comes after them."""
    probe = _options_message(server, "udp", sock.getsockname()[1], source=PROVIDER)
    call_id = probe.split(b"Call-ID: ", 1)[1].split(b"\r\n", 1)[0]
    sock.sendto(probe, (server.host, server.port))
    sock.settimeout(PROBE_TIMEOUT)
    try:
        while call_id not in sock.recv(65_535):
            pass
    except TimeoutError:
        # Every later case would wait as long: stop here and say why.
        pytest.fail(
            f"no answer to the fuzzer's own OPTIONS within {PROBE_TIMEOUT} s (seed {SEED}): "
            f"the server stalls, or its flood guard now blocks {PROVIDER} (loosen it "
            "in the fixture, or the fuzzer tests nothing behind the guard)"
        )


def _send_tcp(server: Server, batch: list[Case]) -> None:
    for start in range(0, len(batch), PER_CONNECTION):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.bind((PROVIDER, 0))
            sock.connect((server.host, server.port))
            try:
                for case in batch[start : start + PER_CONNECTION]:
                    sock.sendall(case.data)
                sock.shutdown(socket.SHUT_WR)
                # Read to the end, so that the server has seen every case
                # before the probe: it closes a half-closed connection.
                while sock.recv(65_535):
                    pass
            except OSError:
                pass  # the server closed a stream it could not frame


def _send_ws(server: Server, batch: list[Case]) -> None:
    """Each case as one frame (binary: a mutated case need not be UTF-8),
    over one WebSocket until the server closes it (an oversized frame)."""
    ws = _websocket(server, PROVIDER)
    try:
        for case in batch:
            try:
                ws.send(case.data)
            except ConnectionClosed:
                ws = _websocket(server, PROVIDER)
        with contextlib.suppress(ConnectionClosed):
            _options_over_websocket(ws, server, PROVIDER)
    finally:
        ws.close()


@pytest.mark.parametrize("transport", ["udp", "tcp", "ws"])
def test_mutated_messages_neither_crash_nor_stall_the_server(
    fuzzed_server: Server, transport: str, tmp_path: Path
) -> None:
    server = fuzzed_server
    seed = SEED + {"udp": 0, "tcp": 1, "ws": 2}[transport]
    print(f"SIP fuzz over {transport}: seed {seed} (FUZZ_SEED={SEED}), {CASES} cases")
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((PROVIDER, 0))
        source_port = udp.getsockname()[1]
        seeds = corpus(f"{server.host}:{server.port}", PROVIDER, source_port, transport)
        todo = cases(seed, seeds, CASES, max_size=MAX_DATAGRAM if transport == "udp" else None)
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            if transport == "udp":
                _send_udp(udp, server, batch)
            elif transport == "ws":
                _send_ws(server, batch)
            else:
                _send_tcp(server, batch)
            assert_answers(server, transport, batch, tmp_path / f"batch-{start}.txt")
    elapsed = time.monotonic() - started
    print(f"SIP fuzz over {transport}: {CASES} cases in {elapsed:.1f} s")
    new = findings(server.log())
    assert not new, f"seed {seed}: {len(new)} findings in the log, first:\n" + "\n\n".join(new[:3])


# --- What the fuzzer found, replayed one by one ------------------------------

_NO_VIA_REQUEST = (
    "OPTIONS sip:{server} SIP/2.0\r\n"
    "Via:{via}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:probe@127.0.0.2>;tag=nv1\r\n"
    "To: <sip:{server}>\r\n"
    "Call-ID: no-via-{unique}@127.0.0.2\r\n"
    "CSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("via", ["", " ", ",", " , ,\t"])
def test_a_via_field_holding_no_via_is_refused_without_a_traceback(
    fuzzed_server: Server, transport: str, via: str, tmp_path: Path
) -> None:
    """Found by the fuzzer (a truncated RFC 4475 `unksm2`): a Via field with
    nothing in it passed the parser, and the transport's stamp of `received`
    then raised from the protocol callback."""
    server = fuzzed_server
    before = len(server.log())
    message = _NO_VIA_REQUEST.format(
        server=f"{server.host}:{server.port}", via=via, unique=time.monotonic_ns()
    ).encode()
    case = Case(message, "empty-via", ())
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((PROVIDER, 0))
            _send_udp(udp, server, [case])
    else:
        _send_tcp(server, [case])
    assert_answers(server, transport, [case], tmp_path / "case.txt")
    found = findings(server.log()[before:])
    assert not found, "\n\n".join(found)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("method", ["options", "invite", "register"])
@pytest.mark.parametrize(
    "header", ['Require: a, "b', "Proxy-Require: timer, <x", "Require: a>, <b"]
)
def test_a_malformed_header_read_after_parsing_gets_400(
    fuzzed_server: Server, transport: str, method: str, header: str
) -> None:
    """Found by the fuzzer (RFC 4475 `bext01` with a `<` inserted): the
    parser leaves Require to the layer that reads it, whose ParseError then
    escaped the handler with a traceback and left the request unanswered."""
    server = fuzzed_server
    before = len(server.log())
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.bind((PROVIDER, 0))
        seeds = own_messages(
            f"{server.host}:{server.port}", PROVIDER, sock.getsockname()[1], transport
        )
        head, body = seeds[method].split(b"\r\n\r\n", 1)
        message = head + b"\r\n" + header.encode() + b"\r\n\r\n" + body
        # A new transaction each time, not a retransmission of the last one.
        unique = str(time.monotonic_ns()).encode()
        message = message.replace(b"z9hG4bK", b"z9hG4bK" + unique).replace(
            b"Call-ID: ", b"Call-ID: " + unique
        )
        sock.connect((server.host, server.port))
        sock.sendall(message)
        answer = sock.recv(65_535)
    assert answer.startswith(b"SIP/2.0 400 "), answer
    found = findings(server.log()[before:])
    assert not found, "\n\n".join(found)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Via", 'SIP/2.0/{transport} 127.0.0.2;branch=z9hG4bK"{unique}'),
        ("Via", 'SIP/2.0/{transport} 127.0.0.2;branch=\xff"z9hG4bK{unique}'),
        ("From", '<sip:caller@127.0.0.2>;tag=a"b'),
        ("To", '<sip:{server}>;x=y"'),
    ],
)
def test_a_stray_quote_in_a_last_parameter_is_refused_without_a_traceback(
    fuzzed_server: Server, transport: str, header: str, value: str
) -> None:
    """Found by the fuzzer (RFC 4475 `zeromf` with bytes inserted): a quote
    inside the only or last parameter's value passed the parser; the
    `received` the transport adds to the Via then made it open a quoted
    string, and reading the Via again raised in the handler."""
    server = fuzzed_server
    before = len(server.log())
    unique = str(time.monotonic_ns())
    fields = {
        "Via": f"SIP/2.0/{transport.upper()} 127.0.0.2;rport;branch=z9hG4bK{unique}",
        "From": "<sip:caller@127.0.0.2>;tag=f1",
        "To": f"<sip:{server.host}:{server.port}>",
    }
    fields[header] = value.format(
        transport=transport.upper(), unique=unique, server=f"{server.host}:{server.port}"
    )
    message = (
        f"OPTIONS sip:{server.host}:{server.port} SIP/2.0\r\n"
        + "".join(f"{name}: {text}\r\n" for name, text in fields.items())
        + f"Call-ID: quote-{unique}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(1.0)
        sock.bind((PROVIDER, 0))
        sock.connect((server.host, server.port))
        sock.sendall(message)
        try:
            answer = sock.recv(65_535)
        except TimeoutError:
            answer = b""
    # With the Via unreadable there is nowhere to answer: dropped and counted.
    if header == "Via":
        assert answer == b"", answer
    else:
        assert answer.startswith(b"SIP/2.0 400 "), answer
    assert_answers(server, transport, [Case(message, "stray-quote", ())], Path("/dev/null"))
    found = findings(server.log()[before:])
    assert not found, "\n\n".join(found)
