"""Call setups per second through callbridge's B2BUA over UDP, under SIPp
load, against a reference run in the same command: the same SIPp callers
calling the same SIPp callee directly.

    .venv/bin/python bench/call_load.py [--rate 200] [--seconds 20]
    .venv/bin/python bench/call_load.py --overload --rate CLEAN [--seconds 60]

Goal: 200 calls/s sustained for 60 s with < 0.1% failed: the full run is
`--seconds 60` (`make bench` runs the 20 s default; 60 s matters, as ended
calls' dialogs linger 32 s and call records are written behind).

A call (bench/scenarios/call_uac.xml → call_uas.xml): INVITE; callbridge
answers 407 and the caller ACKs it and sends the INVITE again with MD5
digest credentials; callbridge sends its own INVITE to the callee's
registered Contact; the callee answers 100, 180 and 200 with SDP, which
callbridge relays; ACK; BYE after a hold of one second (HOLD_MS), answered
by callbridge, which sends its own BYE to the callee. No RTP.

The comparison. The reference is the same callers straight to the same
callee: no 407 there (the 407 is optional in the caller's scenario and the
call goes straight to 100/180/200), so the reference does a little less work
than the callers do against callbridge. It shows what the SIPp pair sustains
at the offered rate on this machine at this moment; the ratio is of achieved
calls per second, callbridge / reference.

Lines. The API allows at most 50 concurrent incoming calls per line
(`max_incoming_calls`), and a one-second hold at 200 calls/s keeps about 200
calls up, so the load is spread over several callee lines (about 20 calls
up on each, leaving room for calls that a slow server keeps up longer):
one SIPp caller process per callee line, each at its share of the rate, all
signing in as line 101. (SIPp 3.6 signs one fixed digest URI
per process, `-auth_uri`, so one process cannot call several lines.) The
callee lines all register the one SIPp callee's address: each is registered
by a short SIPp run from that port before the callee starts on it. The
reference runs the same processes at the same rates.

Measured: attempted, successful and failed calls (SIPp's counts on the
callers' side: a call fails on an unexpected answer such as 486 or 500, or
when a request went unanswered through all its retransmissions),
retransmissions, achieved calls/s (successful calls over the run minus the
hold), the callee's own counts (`callee_open_at_end`: calls it answered and
never got a BYE for), callbridge's CPU per call (process CPU, all threads,
over the whole run, divided by successful calls) and RSS at the end, how
long it took to exit on SIGTERM, and the delay callbridge adds from INVITE in
to INVITE out as it reports at shutdown (a `b2bua.stats` log line: calls,
setup_delay_p50_ms, setup_delay_p99_ms, and calls_in_memory, the Call
objects still alive, which should be 0 once every call ended; "missing" when
there is none).

Overload mode (`--overload`, issue 13). `--rate` is the clean rate, the
one the plain mode completes without loss on this machine (find it first);
the callers offer twice that, over the lines the clean rate needs, with
bench/scenarios/call_uac_shed.xml, where a 503 to either INVITE is an
expected answer: ACKed, never retried, and counted as refused, with the
time from that INVITE to its 503 (SIPp's `-trace_rtt`, rtd 1). Reported:
completed calls (the callee's count of calls it answered and got a BYE
for) and goodput (completed per second of offered load) against the clean
rate, the share refused, the refusals' latency (p50, p99, max, and how many
took more than 50 ms), accepted calls that failed (SIPp's failed calls:
with 503 expected, a failure is an accepted call that went wrong),
retransmissions, callbridge's CPU per completed and per offered call, and
the `sip.stats` line it logs at shutdown (the shedder's counters and the
collector's passes). The reference is the same callers at the same rate
straight to the SIPp callee. Goal: goodput at least 90% of the clean
rate, every refusal within 50 ms, no accepted call failing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from options_load import (
    compare,
    create_lines,
    free_port,
    measure,
    sipp_client,
    start_callbridge,
    stop_callbridge,
)

HERE = Path(__file__).resolve().parent
CALLER = str(HERE / "scenarios" / "call_uac.xml")
SHED_CALLER = str(HERE / "scenarios" / "call_uac_shed.xml")
CALLEE = str(HERE / "scenarios" / "call_uas.xml")
REGISTER = str(HERE / "scenarios" / "register_callee.xml")

HOLD_MS = 1000
# Concurrent calls planned per callee line. The API allows 50; calls that a
# slow server keeps up longer must not hit that limit (486) first.
CALLS_PER_LINE = 20
ADMIN_PASSWORD = "bench-admin-password"
LINE_PASSWORD = "bench-line-password"
CALLER_NUMBER, CALLER_USER = "101", "caller101"
SETTINGS = {
    "CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "CALLBRIDGE_SIP_DIGEST_ALGORITHMS": "MD5",  # SIPp 3.6 knows no other
    "CALLBRIDGE_RTP_PORTS": "20000-29999",
    # The phones are on loopback, which media may reach only when allowed.
    "CALLBRIDGE_MEDIA_ALLOWED_NETWORKS": "public,127.0.0.0/8",
    "CALLBRIDGE_LOG_LEVEL": "info",
}


def split_rate(rate: int, hold_ms: int = HOLD_MS) -> list[int]:
    """Integer rates, one per caller process and callee line, summing to
    `rate`, each keeping at most about CALLS_PER_LINE calls up."""
    up = rate * (hold_ms / 1000 + 0.2)  # the hold, plus set-up and tear-down
    lines = max(1, math.ceil(up / CALLS_PER_LINE))
    return [rate // lines + (1 if n < rate % lines else 0) for n in range(lines)]


def media_ports(count: int, first: int = 13000) -> list[int]:
    """`count` ports for SIPp's `-mp`, each with the three above it free too
    (SIPp binds p and p+2, and an instance whose port is taken dies quietly).
    Below the kernel's ephemeral range, where `free_port()` never lands."""
    ports: list[int] = []
    port = first
    while len(ports) < count:
        if all(_udp_port_free(p) for p in range(port, port + 4)):
            ports.append(port)
        port += 4
    return ports


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def callee_number(n: int) -> str:
    return str(201 + n)


def start_callee(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    callee = subprocess.Popen(
        [
            "sipp",
            "-sf",
            CALLEE,
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(media_ports(1, first=12000)[0]),
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(workdir / f"callee-{port}.csv"),
            "-fd",
            "3600",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return callee


def stop_callee(callee: subprocess.Popen[bytes], port: int, workdir: Path) -> dict[str, int]:
    """Stop the callee; its counts: calls answered to the end, failed, still open."""
    callee.send_signal(signal.SIGINT)
    try:
        callee.wait(timeout=10)
    except subprocess.TimeoutExpired:
        callee.kill()
        callee.wait()
    stat_file = workdir / f"callee-{port}.csv"
    if not stat_file.exists():
        return {}
    rows = [line.rstrip(";").split(";") for line in stat_file.read_text().splitlines() if line]
    stats = dict(zip(rows[0], rows[-1], strict=False))
    return {
        "callee_successful": int(stats["SuccessfulCall(C)"]),
        "callee_failed": int(stats["FailedCall(C)"]),
        "callee_open_at_end": int(stats["CurrentCall"]),
    }


def run_callers(
    sip_port: int,
    rates: list[int],
    seconds: int,
    workdir: Path,
    callees: list[str],
    *,
    scenario: str = CALLER,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The caller processes at once, one per rate and callee; summed results."""
    mps = media_ports(len(rates))

    def one(n: int) -> dict[str, float]:
        callee = callees[n]
        return sipp_client(
            sip_port,
            rates[n],
            seconds,
            workdir,
            scenario=scenario,
            extra=(
                *extra,
                "-s",
                CALLER_NUMBER,
                "-au",
                CALLER_USER,
                "-ap",
                LINE_PASSWORD,
                "-auth_uri",
                f"{callee}@127.0.0.1:{sip_port}",
                "-key",
                "callee",
                callee,
                "-d",
                str(HOLD_MS),
                "-mp",  # the last -mp is the one SIPp uses
                str(mps[n]),
            ),
        )

    started = time.monotonic()
    with ThreadPoolExecutor(len(rates)) as pool:
        parts = list(pool.map(one, range(len(rates))))
    elapsed = time.monotonic() - started
    attempted = sum(int(p["requests"]) for p in parts)
    ok = sum(int(p["answered"]) for p in parts)
    failed = sum(int(p["failed"]) for p in parts)
    # Calls SIPp neither completed nor failed: a caller that could not start,
    # or calls still up when it gave up (-timeout). Counted as failed.
    unfinished = attempted - ok - failed
    return {
        "offered_per_s": sum(rates),
        "caller_processes": len(rates),
        "hold_ms": HOLD_MS,
        "attempted": attempted,
        "successful": ok,
        "failed": failed,
        "unfinished": unfinished,
        "failed_percent": round(100 * (failed + unfinished) / max(attempted, 1), 3),
        "retransmissions": sum(int(p["retransmissions"]) for p in parts),
        # Each caller places its last call at `seconds` and ends it HOLD_MS later.
        "calls_per_s": round(ok / max(elapsed - HOLD_MS / 1000, 1e-3), 1),
    }


def reference(rate: int, seconds: int, workdir: Path) -> dict[str, Any]:
    rates = split_rate(rate)
    port = free_port()
    callee = start_callee(port, workdir)
    callee_stats: dict[str, int] = {}
    try:
        numbers = [callee_number(n) for n in range(len(rates))]
        result = run_callers(port, rates, seconds, workdir, numbers)
    finally:
        callee_stats = stop_callee(callee, port, workdir)
    return {**result, **callee_stats}


def register_callee(sip_port: int, callee_port: int, number: str, workdir: Path) -> None:
    """Register line `number` with Contact sip:number@127.0.0.1:callee_port."""
    done = subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            REGISTER,
            "-i",
            "127.0.0.1",
            "-p",
            str(callee_port),
            "-mp",
            str(media_ports(1, first=12000)[0]),
            "-s",
            number,
            "-au",
            f"callee{number}",
            "-ap",
            LINE_PASSWORD,
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "10s",
        ],
        cwd=workdir,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"line {number} did not register: {done.stdout[-2000:]!r}")


def stop_server(server: subprocess.Popen[bytes], result: dict[str, Any]) -> None:
    """SIGTERM, noting in `result` how long callbridge took to exit (killed
    after 120 s)."""
    started = time.monotonic()
    try:
        stop_callbridge(server)
    except subprocess.TimeoutExpired:
        try:
            server.wait(timeout=110)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            result["server_killed"] = True
    result["server_shutdown_seconds"] = round(time.monotonic() - started, 1)


def logged_stats(log: Path, event: str = "b2bua.stats") -> dict[str, float] | None:
    """The numeric fields of the last `event` line in callbridge's log (the
    counters it logs at shutdown: `b2bua.stats`, `sip.stats`), or None."""
    for line in reversed(log.read_text().splitlines()):
        if f" {event} " in f" {line} " or f'"{event}"' in line:
            fields = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
            values = {key: value.strip('"') for key, value in fields.items()}
            return {key: float(value) for key, value in values.items() if _is_number(value)}
    return None


def bench_lines(callees: list[str]) -> list[dict[str, Any]]:
    """The caller's line 101 and the callee lines, as the API creates them."""
    lines: list[dict[str, Any]] = [
        {"number": CALLER_NUMBER, "username": CALLER_USER, "password": LINE_PASSWORD}
    ]
    lines += [
        {
            "number": number,
            "username": f"callee{number}",
            "password": LINE_PASSWORD,
            "max_incoming_calls": 50,
        }
        for number in callees
    ]
    return lines


def callbridge(rate: int, seconds: int, workdir: Path) -> dict[str, Any]:
    rates = split_rate(rate)
    numbers = [callee_number(n) for n in range(len(rates))]
    server, sip_port, http_port = start_callbridge(workdir, **SETTINGS)
    callee: subprocess.Popen[bytes] | None = None
    callee_port = free_port()
    result: dict[str, Any] = {}
    try:
        create_lines(http_port, ADMIN_PASSWORD, bench_lines(numbers))
        for number in numbers:
            register_callee(sip_port, callee_port, number, workdir)
        callee = start_callee(callee_port, workdir)
        result = measure(server, lambda: run_callers(sip_port, rates, seconds, workdir, numbers))
        result["server_cpu_ms_per_call"] = round(
            1000 * result["server_cpu_seconds"] / max(result["successful"], 1), 3
        )
    finally:
        if callee is not None:
            result.update(stop_callee(callee, callee_port, workdir))
        stop_server(server, result)
    stats = logged_stats(workdir / "callbridge.log")
    if stats is None:
        result["b2bua_stats"] = "missing: no b2bua.stats line in callbridge's log"
    else:
        result["b2bua_calls"] = int(stats.get("calls", 0))
        result["setup_delay_p50_ms"] = stats.get("setup_delay_p50_ms")
        result["setup_delay_p99_ms"] = stats.get("setup_delay_p99_ms")
        # Call objects alive at shutdown: an ended call must not be held.
        result["calls_in_memory_at_end"] = stats.get("calls_in_memory")
    return result


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def refusal_latencies(workdir: Path) -> list[float]:
    """INVITE-to-503 times (ms) every shed caller wrote (`-trace_rtt`, rtd 1)."""
    times: list[float] = []
    for path in workdir.glob("call_uac_shed_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            fields = line.rstrip(";").split(";")
            if len(fields) >= 3 and fields[2].strip() == "1":
                times.append(float(fields[1]))
    return sorted(times)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(share * len(values)))], 1)


def shed_callers(
    sip_port: int, rates: list[int], seconds: int, workdir: Path, callees: list[str]
) -> dict[str, Any]:
    """The callers of the overload run: 503 is an answer, each one timed."""
    for old in workdir.glob("call_uac_shed_*_rtt.csv"):
        old.unlink()
    result = run_callers(
        sip_port,
        rates,
        seconds,
        workdir,
        callees,
        scenario=SHED_CALLER,
        extra=("-trace_rtt", "-rtt_freq", "1"),
    )
    latencies = refusal_latencies(workdir)
    result["refused"] = len(latencies)
    result["refused_percent"] = round(100 * len(latencies) / max(result["attempted"], 1), 2)
    result["refusal_ms_p50"] = percentile(latencies, 0.5)
    result["refusal_ms_p99"] = percentile(latencies, 0.99)
    result["refusal_ms_max"] = latencies[-1] if latencies else None
    result["refusals_over_50_ms"] = sum(1 for ms in latencies if ms > 50)
    return result


def overload_reference(clean_rate: int, seconds: int, workdir: Path) -> dict[str, Any]:
    """The shed callers at twice the clean rate straight to the SIPp callee."""
    rates = [2 * rate for rate in split_rate(clean_rate)]
    port = free_port()
    callee = start_callee(port, workdir)
    try:
        numbers = [callee_number(n) for n in range(len(rates))]
        result = shed_callers(port, rates, seconds, workdir, numbers)
    finally:
        result.update(stop_callee(callee, port, workdir))
    return result


def overload_callbridge(clean_rate: int, seconds: int, workdir: Path) -> dict[str, Any]:
    """Twice the clean rate offered to callbridge, as many lines as the clean
    rate needs: what it completes, what it sheds and how fast."""
    rates = [2 * rate for rate in split_rate(clean_rate)]
    numbers = [callee_number(n) for n in range(len(rates))]
    server, sip_port, http_port = start_callbridge(workdir, **SETTINGS)
    callee: subprocess.Popen[bytes] | None = None
    callee_port = free_port()
    result: dict[str, Any] = {}
    try:
        create_lines(http_port, ADMIN_PASSWORD, bench_lines(numbers))
        for number in numbers:
            register_callee(sip_port, callee_port, number, workdir)
        callee = start_callee(callee_port, workdir)
        result = measure(server, lambda: shed_callers(sip_port, rates, seconds, workdir, numbers))
    finally:
        if callee is not None:
            result.update(stop_callee(callee, callee_port, workdir))
        stop_server(server, result)
    return result


def completed(result: dict[str, Any]) -> int:
    """Calls that went through end to end: the callee answered and got a BYE."""
    return int(result.get("callee_successful", 0))


def overload_main(clean_rate: int, seconds: int, keep: Path | None = None) -> None:
    """`--overload`: offered twice `clean_rate` (the rate the plain run
    completes without loss on this machine) for `seconds`; with `keep`,
    the logs (callbridge's, SIPp's) are left in that directory."""
    if shutil.which("sipp") is None:
        sys.exit("sipp is missing: `make test-deps` installs Debian's sip-tester")
    with contextlib.ExitStack() as stack:
        if keep is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            workdir = keep
            workdir.mkdir(parents=True, exist_ok=True)
        ref = overload_reference(clean_rate, seconds, workdir)
        ours = overload_callbridge(clean_rate, seconds, workdir)
        stats = logged_stats(workdir / "callbridge.log", "sip.stats") or {}
    for result in (ref, ours):
        done = completed(result)
        result["clean_rate"] = clean_rate
        result["completed"] = done
        result["goodput_per_s"] = round(done / max(seconds, 1e-3), 1)
    ours["accepted_failed"] = ours["failed"] + ours["unfinished"]
    ours["server_cpu_ms_per_completed_call"] = round(
        1000 * ours["server_cpu_seconds"] / max(ours["completed"], 1), 3
    )
    ours["server_cpu_ms_per_offered_call"] = round(
        1000 * ours["server_cpu_seconds"] / max(ours["attempted"], 1), 3
    )
    ours.update(stats)  # the shedder's counters and the collector's passes
    print(json.dumps({"target": "sipp caller -> sipp callee, twice the rate (reference)", **ref}))
    print(json.dumps({"target": "callbridge, twice its clean rate", **ours}))
    print(
        json.dumps(
            {
                "goodput_vs_clean_rate": round(ours["goodput_per_s"] / clean_rate, 3),
                "goodput_vs_reference": round(
                    ours["goodput_per_s"] / max(ref["goodput_per_s"], 1e-3), 3
                ),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument(
        "--overload",
        action="store_true",
        help="offer twice --rate (the clean rate) and report goodput and refusals",
    )
    parser.add_argument(
        "--keep", type=Path, help="with --overload: leave the logs in this directory"
    )
    args = parser.parse_args()
    if args.overload:
        overload_main(args.rate, args.seconds, args.keep)
        return
    compare(
        __doc__,
        rate=200,
        seconds=20,
        reference_name="sipp caller -> sipp callee (reference)",
        reference=reference,
        callbridge=callbridge,
        ratio_of="calls_per_s",
    )


if __name__ == "__main__":
    main()
