"""OPTIONS answered per second over UDP under SIPp load, against a reference
run in the same command: SIPp answering SIPp (options_uas.xml).

    .venv/bin/python bench/options_load.py [--rate 5000] [--seconds 40]

For each target the same SIPp client sends `rate` OPTIONS per second for
`seconds`; a request counts as lost when it failed or had to be retransmitted
(no answer within SIPp's 500 ms). Prints one JSON line per target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "integration" / "scenarios"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def sipp_client(
    port: int,
    rate: int,
    seconds: int,
    workdir: Path,
    *,
    scenario: str = "options.xml",
    extra: tuple[str, ...] = (),
    local_ip: str = "127.0.0.1",
    local_port: int | None = None,
) -> dict[str, float]:
    local_port = local_port or free_port(local_ip)
    # `scenario` may also be a path (SCENARIOS / an absolute path is that path).
    stat_file = workdir / f"client-{port}-{local_port}-{Path(scenario).name}.csv"
    calls = rate * seconds
    started = time.monotonic()
    subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            local_ip,
            "-p",
            str(local_port),
            "-mp",
            str(free_port(local_ip)),
            "-m",
            str(calls),
            "-r",
            str(rate),
            "-l",
            str(rate * 4),
            "-nostdin",
            "-timeout",
            f"{seconds * 3 + 10}s",
            "-trace_stat",
            "-stf",
            str(stat_file),
            "-fd",
            "3600",
            *extra,
        ],
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    rows = [line.rstrip(";").split(";") for line in stat_file.read_text().splitlines() if line]
    stats = dict(zip(rows[0], rows[-1], strict=False))
    ok = int(stats["SuccessfulCall(C)"])
    failed = int(stats["FailedCall(C)"])
    retrans = int(stats["Retransmissions(C)"])
    return {
        "offered_per_s": rate,
        "requests": calls,
        "answered": ok,
        "failed": failed,
        "retransmissions": retrans,
        "lost_percent": round(100 * (failed + retrans) / calls, 3),
        "answered_per_s": round(ok / elapsed),
    }


def reference(
    rate: int,
    seconds: int,
    workdir: Path,
    *,
    server_scenario: str = "options_uas.xml",
    scenario: str = "options.xml",
    extra: tuple[str, ...] = (),
) -> dict[str, float]:
    """The same client against SIPp playing the server (`server_scenario`)."""
    port = free_port()
    server = subprocess.Popen(
        [
            "sipp",
            "-sf",
            str(SCENARIOS / server_scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(free_port()),
            "-nostdin",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        return sipp_client(port, rate, seconds, workdir, scenario=scenario, extra=extra)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def start_callbridge(workdir: Path, **settings: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """`callbridge serve` on loopback with free ports: (process, SIP port, HTTP port)."""
    log = workdir / "callbridge.log"
    env = {
        **os.environ,
        "CALLBRIDGE_SIP_HOST": "127.0.0.1",
        "CALLBRIDGE_SIP_PORT": "0",
        "CALLBRIDGE_HTTP_HOST": "127.0.0.1",
        "CALLBRIDGE_HTTP_PORT": "0",
        "CALLBRIDGE_DATA_DIR": str(workdir),
        "CALLBRIDGE_DATABASE_URL": "",
        "CALLBRIDGE_LOG_LEVEL": "info",
        **settings,
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "callbridge", "serve"], env=env, stdout=out, stderr=out
        )
    for _ in range(400):
        text = log.read_text()
        sip = re.search(r"sip\.listening .*port=(\d+)", text)
        http = re.search(r"http\.listening .*port=(\d+)", text)
        if sip and http:
            return server, int(sip.group(1)), int(http.group(1))
        time.sleep(0.05)
    stop_callbridge(server)
    raise RuntimeError("callbridge did not start:\n" + log.read_text())


def create_lines(http_port: int, admin_password: str, lines: list[dict[str, Any]]) -> None:
    """Sign in as `admin` and create each internal line (the API's JSON body)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as api:
        token = api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": admin_password}
        ).json()["token"]
        for line in lines:
            api.post(
                "/api/v1/internal-lines", json=line, headers={"Authorization": f"Bearer {token}"}
            ).raise_for_status()
        api.post(
            "/api/v1/config/apply", headers={"Authorization": f"Bearer {token}"}
        ).raise_for_status()


def stop_callbridge(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)


def measure(
    server: subprocess.Popen[bytes], run: Callable[[], dict[str, float]]
) -> dict[str, float]:
    """`run()`'s result with the server's CPU seconds and RSS added."""
    cpu_before = _cpu_seconds(server.pid)
    result = run()
    result["server_cpu_seconds"] = round(_cpu_seconds(server.pid) - cpu_before, 2)
    result["server_rss_mib"] = round(_rss_kib(server.pid) / 1024, 1)
    return result


def callbridge(rate: int, seconds: int, workdir: Path) -> dict[str, float]:
    server, port, _ = start_callbridge(workdir)
    try:
        return measure(server, lambda: sipp_client(port, rate, seconds, workdir))
    finally:
        stop_callbridge(server)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


Target = Callable[[int, int, Path], dict[str, float]]


def compare(
    description: str | None,
    *,
    rate: int,
    seconds: int,
    reference_name: str,
    reference: Target,
    callbridge: Target,
    ratio_of: str = "answered_per_s",
) -> None:
    """Parse --rate/--seconds, run the reference then callbridge with the same
    SIPp client, and print both results and the ratio of their `ratio_of` as
    JSON lines."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rate", type=int, default=rate)
    parser.add_argument("--seconds", type=int, default=seconds)
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: `make test-deps` installs Debian's sip-tester")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ref = reference(args.rate, args.seconds, workdir)
        ours = callbridge(args.rate, args.seconds, workdir)
    print(json.dumps({"target": reference_name, **ref}))
    print(json.dumps({"target": "callbridge", **ours}))
    ratio = ours[ratio_of] / max(ref[ratio_of], 1)
    print(json.dumps({"callbridge_vs_reference": round(ratio, 3)}))


def main() -> None:
    compare(
        __doc__,
        rate=5000,
        seconds=40,
        reference_name="sipp-uas (reference)",
        reference=reference,
        callbridge=callbridge,
    )


if __name__ == "__main__":
    main()
