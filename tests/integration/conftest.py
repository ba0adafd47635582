"""Real peers on loopback: a `callbridge serve` subprocess and SIPp runs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


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
    deadline = time.monotonic() + 15
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
