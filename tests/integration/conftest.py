"""Real peers on loopback: a `callbridge serve` subprocess and SIPp runs.

Ports are picked free at run time, but for the RTP ranges tests fix (below
the kernel's ephemeral ports, 32768 on). `make test` runs two groups of
these files at once, so each file keeps ranges of its own: callbridge's
relay ranges may overlap one another (it skips a port another process
holds), a phone's overlaps nothing. In use: 10000-19999 (callbridge's
default), 20000-20999 (test_calls' ENV: every test on its `pbx`, the
panel's too), 21000-22399 test_audio, 23000-24399 test_proxy, 24400-24599
tests/web/test_audio, 24600-24699 test_flows, 25000-26399 test_hold,
27000-28399 test_recording, 29000-30399 test_dtmf, 30400-30599 test_proxy
(linphone), 31000-32399 test_webrtc_calls (and test_webrtc_opus, in the
same group); and above the ephemeral ports (61000 on) the ranges
`free_port_range` finds free (test_webrtc, test_music_on_hold and the unit
tests)."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"
_LISTENING_RE = re.compile(r"sip\.listening.*?\bport\W+(\d+)")
_HTTP_LISTENING_RE = re.compile(r"http\.listening.*?\bport\W+(\d+)")


@dataclass
class Server:
    host: str
    port: int
    process: subprocess.Popen[str]
    log_path: Path
    http_port: int
    log_start: int = 0  # where in the log this view of the server begins (bytes)

    def log(self) -> str:
        """The log from `log_start` on: all of it, or what a test sharing the
        server logged since it began (see `since_now`)."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def since_now(self) -> Server:
        """The same running server, its log read from here on: what a test
        that shares a module's server sees of it."""
        return replace(self, log_start=self.log_path.stat().st_size)


def start_server(tmp_path: Path, **env: str) -> Server:
    """Start `callbridge serve` on 127.0.0.1 with free ports (SIP and HTTP) and its
    database in `tmp_path`, and wait until both listen."""
    log_path = tmp_path / "callbridge.log"
    environment = {
        **os.environ,
        "CALLBRIDGE_SIP_HOST": "127.0.0.1",
        "CALLBRIDGE_SIP_PORT": "0",
        "CALLBRIDGE_HTTP_HOST": "127.0.0.1",
        "CALLBRIDGE_HTTP_PORT": "0",
        "CALLBRIDGE_DATA_DIR": str(tmp_path),
        "CALLBRIDGE_DATABASE_URL": "",  # the embedded SQLite, whatever the caller's environment
        "CALLBRIDGE_LOG_LEVEL": "debug",
        # Every test peer lives on loopback, which the default (`public`) leaves out.
        "CALLBRIDGE_MEDIA_ALLOWED_NETWORKS": "public,127.0.0.0/8,::1/128",
        # The tests' few calls must not be shed when a loaded 2-core machine
        # runs the loop late; test_overload.py sets the real threshold itself.
        "CALLBRIDGE_OVERLOAD_DELAY": "0.25",
        **env,
    }
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "callbridge", "serve"],
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30  # generous: a loaded 2-core machine starts slowly
    while time.monotonic() < deadline:
        log = log_path.read_text(errors="replace")
        sip, http = _LISTENING_RE.search(log), _HTTP_LISTENING_RE.search(log)
        if sip and http:
            return Server("127.0.0.1", int(sip.group(1)), process, log_path, int(http.group(1)))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_server(process)
    raise RuntimeError("callbridge serve did not start:\n" + log_path.read_text())


def stop_server(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        stop_server(srv.process)
    assert srv.process.returncode == 0, srv.log()


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class SippResult:
    returncode: int
    output: str
    stats: dict[str, str]

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0"))

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0"))

    @property
    def retransmissions(self) -> int:
        return int(self.stats.get("Retransmissions(C)", "0"))


def run_sipp(
    scenario: str,
    target: Server,
    tmp_path: Path,
    *,
    transport: str = "u1",
    calls: int = 1,
    rate: float | None = None,
    timeout: float = 30,
    extra: list[str] | None = None,
    local_ip: str = "127.0.0.1",
) -> SippResult:
    """Run a SIPp UAC scenario against `target` from `local_ip` and read its
    final statistics."""
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.fail("sipp is not installed: `make test` installs Debian's sip-tester")
    stat_file = tmp_path / f"{scenario}-{time.monotonic_ns()}.csv"
    args = [
        sipp,
        f"{target.host}:{target.port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        local_ip,
        "-p",
        str(
            free_port(
                socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM, local_ip
            )
        ),
        "-mp",
        str(free_port()),
        "-t",
        transport,
        "-m",
        str(calls),
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stat_file),
        "-fd",
        "3600",
        "-recv_timeout",
        "5000",
    ]
    if rate is not None:
        args += ["-r", str(rate)]
    args += extra or []
    completed = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=timeout + 30
    )
    return SippResult(
        completed.returncode,
        completed.stdout + completed.stderr,
        _last_stats(stat_file),
    )


def _last_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))


# --- SIPp in the background, its message traces, and RTP endpoints -----------


@dataclass
class TracedMessage:
    """One SIP message from SIPp's -trace_msg file, as SIPp sent or received it."""

    direction: str  # "sent" or "received"
    at: datetime
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def status(self) -> int | None:
        """The status code of a response; None for a request."""
        parts = self.first_line.split()
        return int(parts[1]) if parts[0] == "SIP/2.0" else None

    @property
    def method(self) -> str:
        """The request's method, or the CSeq method of a response."""
        if self.status is None:
            return self.first_line.split()[0]
        return (self.header("CSeq") or " ?").split()[-1]

    def header(self, name: str) -> str | None:
        """The first value of the header `name` (compact forms not expanded)."""
        head = self.text.split("\n\n", 1)[0]
        for line in head.split("\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def body(self) -> str:
        parts = self.text.split("\n\n", 1)
        return parts[1] if len(parts) == 2 else ""

    def sdp_media(self) -> tuple[str, int] | None:
        """The connection address and the port of the audio stream of the SDP body."""
        address = re.search(r"^c=IN IP4 (\S+)", self.body, re.MULTILINE)
        port = re.search(r"^m=audio (\d+) ", self.body, re.MULTILINE)
        if address is None or port is None:
            return None
        return address.group(1), int(port.group(1))

    def summary(self) -> str:
        arrow = "->" if self.direction == "sent" else "<-"
        return f"{self.at.time()} {arrow} {self.first_line}"


_TRACE_SPLIT = re.compile(
    r"^-{47} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message (sent|received)[^\n]*\n\n",
    re.MULTILINE,
)


def parse_message_trace(text: str) -> list[TracedMessage]:
    """The messages of a SIPp -trace_msg file, in order."""
    parts = _TRACE_SPLIT.split(text)
    messages = []
    for i in range(1, len(parts) - 2, 3):
        at = datetime.strptime(parts[i], "%Y-%m-%d %H:%M:%S.%f")
        messages.append(TracedMessage(parts[i + 1], at, parts[i + 2].strip("\n") + "\n"))
    return messages


@dataclass
class SippProcess:
    """A SIPp run in the background: a UAS waiting for callbridge's INVITE, or
    a UAC beside other peers. Each keeps its files in a directory of its own:
    `messages.log` (-trace_msg), `errors.log`, `logs.log` (<log> actions),
    `stats.csv` and `output.txt` (stdout and stderr)."""

    name: str
    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    media_port: int

    def wait(self, timeout: float = 30) -> SippResult:
        """Wait until SIPp ends (killing it after `timeout` seconds) and read
        its final statistics."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        return SippResult(self.process.returncode, self.output(), _last_stats(self.stat_file))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def stat_file(self) -> Path:
        return self.directory / "stats.csv"

    def output(self) -> str:
        text = ""
        for name in ("output.txt", "errors.log"):
            path = self.directory / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def messages(self) -> list[TracedMessage]:
        path = self.directory / "messages.log"
        return parse_message_trace(path.read_text(errors="replace")) if path.exists() else []

    def received(
        self, *, method: str | None = None, status: int | None = None
    ) -> list[TracedMessage]:
        """The messages SIPp received: requests of `method`, or responses with
        `status` (and, with both, responses to `method`)."""
        return [
            m
            for m in self.messages()
            if m.direction == "received"
            and (status is None or m.status == status)
            and (method is None or m.method == method)
            and (status is not None or method is None or m.status is None)
        ]

    def exchange(self) -> str:
        """Every message's first line with its direction: what a failing test shows."""
        lines = [m.summary() for m in self.messages()]
        return f"{self.name} ({self.directory}):\n  " + "\n  ".join(lines or ["(no message)"])


def start_sipp(
    scenario: str,
    target: Server,
    tmp_path: Path,
    *,
    port: int | None = None,
    media_port: int | None = None,
    calls: int = 1,
    timeout: float = 30,
    recv_timeout: float = 10,
    extra: list[str] | None = None,
    local_ip: str = "127.0.0.1",
) -> SippProcess:
    """Start SIPp with `scenario` over UDP, from `local_ip`:`port` (a free
    one if None), towards `target`, without waiting for it; `-timeout` and
    `-recv_timeout` bound the run. Stop it with `wait()` or `stop()`, in a
    finally block."""
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.fail("sipp is not installed: `make test` installs Debian's sip-tester")
    port = port if port is not None else free_port(host=local_ip)
    while media_port is None or media_port == port:
        media_port = free_port(host=local_ip)
    directory = tmp_path / f"sipp-{Path(scenario).stem}-{port}-{time.monotonic_ns()}"
    directory.mkdir()
    args = [
        sipp,
        f"{target.host}:{target.port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        local_ip,
        "-p",
        str(port),
        "-mp",
        str(media_port),
        "-t",
        "u1",
        "-m",
        str(calls),
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-recv_timeout",
        str(int(recv_timeout * 1000)),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(directory / "stats.csv"),
        "-fd",
        "3600",
        "-trace_msg",
        "-message_file",
        str(directory / "messages.log"),
        "-trace_err",
        "-error_file",
        str(directory / "errors.log"),
        "-trace_logs",
        "-log_file",
        str(directory / "logs.log"),
        *(extra or []),
    ]
    with (directory / "output.txt").open("wb") as output:
        process = subprocess.Popen(
            args, cwd=directory, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    return SippProcess(Path(scenario).stem, process, directory, port, media_port)


class RtpEndpoint:
    """A phone's media on loopback: a UDP socket that sends a 20 ms RTP
    stream (PCMU, 160 bytes of `fill`) to where it is told, from the port it
    advertises in SDP (so symmetric RTP latches on it), and keeps what arrives."""

    def __init__(self, fill: int, host: str = "127.0.0.1") -> None:
        self.fill = fill
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.005)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.sent = 0
        self._target: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def send_to(self, target: tuple[str, int] | None) -> None:
        """Start sending to `target` (None: fall silent)."""
        self._target = target

    def payloads_from(self, fill: int) -> int:
        """How many packets arrived carrying the stream of the endpoint with `fill`."""
        return sum(1 for data, _ in self.received if data[12:] == bytes([fill]) * 160)

    def _run(self) -> None:
        ssrc = random.getrandbits(32)
        sequence = random.getrandbits(16)
        timestamp = random.getrandbits(32)
        next_send = time.monotonic()
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
                self.received.append((data, source))
            except (TimeoutError, OSError):
                pass
            now = time.monotonic()
            if now >= next_send:
                next_send = now + 0.02
                target = self._target
                if target is not None:
                    header = struct.pack("!BBHII", 0x80, 0, sequence, timestamp, ssrc)
                    try:
                        self.sock.sendto(header + bytes([self.fill]) * 160, target)
                        self.sent += 1
                    except OSError:
                        pass
                    sequence = (sequence + 1) & 0xFFFF
                    timestamp = (timestamp + 160) & 0xFFFFFFFF

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class RtpSprayer:
    """An attacker on another host (`host`, e.g. 127.0.0.3) that sprays a
    steady RTP stream at every port of `ports` (a stream per port: its own
    SSRC, consecutive sequence numbers, one packet per port every
    `interval` seconds, faster than a phone) and keeps what comes back."""

    def __init__(self, host: str, ports: range, fill: int, interval: float = 0.005) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.ports = ports
        self.fill = fill
        self.interval = interval
        self.sent = 0
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def payloads_from(self, fill: int) -> int:
        return sum(1 for data, _ in self.received if data[12:] == bytes([fill]) * 160)

    def _run(self) -> None:
        ssrcs = {port: random.getrandbits(32) for port in self.ports}
        sequence = random.getrandbits(16)
        payload = bytes([self.fill]) * 160
        while not self._stop.wait(self.interval):
            for port in self.ports:
                header = struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, ssrcs[port])
                try:
                    self.sock.sendto(header + payload, ("127.0.0.1", port))
                    self.sent += 1
                except OSError:
                    pass
            sequence = (sequence + 1) & 0xFFFF
            while True:
                try:
                    data, source = self.sock.recvfrom(2048)
                except OSError:
                    break
                self.received.append((data, source))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
