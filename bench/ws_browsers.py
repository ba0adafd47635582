"""Browsers on SIP over WebSocket (`/ws/sip`): how fast many register, what
each costs the server held open, and an OPTIONS round trip over a WebSocket
against the same over UDP in the same run.

    .venv/bin/python bench/ws_browsers.py [--browsers 500] [--pings 2000]

Each browser is its own line (a line takes at most 20 devices) registered
with the line's own credentials over its own socket: REGISTER, 401, REGISTER
with MD5 credentials, 200, as JsSIP does (a browser's derived credential is
checked the same way, plus one HMAC). Prints one JSON line per result.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import secrets
import socket
import statistics
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from options_load import _cpu_seconds, _rss_kib, create_lines, start_callbridge, stop_callbridge

ADMIN_PASSWORD = "bench-admin-password"
LINE_PASSWORD = "bench-line-password"
IN_FLIGHT = 50
_AUTH_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


def _register(number: str, host: str, cseq: int, authorization: str | None) -> str:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/WSS {host};branch=z9hG4bK{secrets.token_hex(8)}",
        "Max-Forwards: 69",
        f"To: <sip:{number}@127.0.0.1>",
        f"From: <sip:{number}@127.0.0.1>;tag={host[:8]}",
        f"Call-ID: {host}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{host[:8]}@{host};transport=ws>;expires=600",
        "User-Agent: bench",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return "\r\n".join([*lines, "Content-Length: 0", "", ""])


def _digest(challenge: str, username: str) -> str:
    params = {m[1]: m[2] or m[3] for m in _AUTH_PARAM.finditer(challenge)}
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{realm}:{LINE_PASSWORD}")
    response = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{md5('REGISTER:sip:127.0.0.1')}")
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", '
        f'uri="sip:127.0.0.1", response="{response}", algorithm=MD5, qop=auth, '
        'cnonce="c0ffee", nc=00000001'
    )


async def _final(ws: ClientConnection) -> str:
    while True:
        frame = await ws.recv()
        text = frame if isinstance(frame, str) else frame.decode()
        if not text.startswith("SIP/2.0 100 "):
            return text


async def _browser(url: str, index: int, limit: asyncio.Semaphore) -> ClientConnection:
    """A browser's socket, registered its first time."""
    async with limit:
        ws = await connect(url, subprotocols=["sip"])  # type: ignore[list-item]
        await _registered(ws, index, 1)
        return ws


async def _registered(ws: ClientConnection, index: int, cseq: int) -> None:
    """REGISTER, 401, REGISTER with credentials, 200 over `ws`."""
    number, host = f"{2000 + index}", f"browser{index}.invalid"
    await ws.send(_register(number, host, cseq, None))
    challenge = await _final(ws)
    header = next(
        line.split(":", 1)[1] for line in challenge.split("\r\n") if line.startswith("WWW-")
    )
    await ws.send(_register(number, host, cseq + 1, _digest(header, f"b{index}")))
    answer = await _final(ws)
    if not answer.startswith("SIP/2.0 200 "):
        raise RuntimeError(answer.split("\r\n", 1)[0])


async def _refresh(ws: ClientConnection, index: int, limit: asyncio.Semaphore) -> None:
    async with limit:
        await _registered(ws, index, 3)


def _options(transport: str, port: int, call_id: str) -> bytes:
    return (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _ws_pings(url: str, count: int) -> list[float]:
    times = []
    async with connect(url, subprotocols=["sip"]) as ws:  # type: ignore[list-item]
        for n in range(count):
            started = time.perf_counter()
            await ws.send(_options("WSS", 0, f"ws{n}").decode())
            await ws.recv()
            times.append(time.perf_counter() - started)
    return times


def _udp_pings(sip_port: int, count: int) -> list[float]:
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        port = sock.getsockname()[1]
        for n in range(count):
            started = time.perf_counter()
            sock.sendto(_options("UDP", port, f"udp{n}"), ("127.0.0.1", sip_port))
            sock.recv(65_535)
            times.append(time.perf_counter() - started)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def run(browsers: int, pings: int, workdir: Path) -> None:
    server, sip_port, http_port = start_callbridge(
        workdir,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_SIP_DIGEST_ALGORITHMS="MD5",
        CALLBRIDGE_SIP_WS_MAX_CONNECTIONS=str(browsers + 10),
        CALLBRIDGE_SIP_WS_MAX_CONNECTIONS_PER_ADDRESS=str(browsers + 10),
    )
    url = f"ws://127.0.0.1:{http_port}/ws/sip"
    try:
        lines = [
            {"number": f"{2000 + n}", "username": f"b{n}", "password": LINE_PASSWORD}
            for n in range(browsers)
        ]
        create_lines(http_port, ADMIN_PASSWORD, lines)
        await asyncio.sleep(1)
        rss_before, cpu_before = _rss_kib(server.pid), _cpu_seconds(server.pid)
        started = time.perf_counter()
        limit = asyncio.Semaphore(IN_FLIGHT)
        sockets = await asyncio.gather(*(_browser(url, n, limit) for n in range(browsers)))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(server.pid) - cpu_before
        await asyncio.sleep(1)
        rss_after = _rss_kib(server.pid)
        print(
            json.dumps(
                {
                    "bench": "ws_register",
                    "browsers": browsers,
                    "seconds": round(elapsed, 2),
                    "registered_per_s": round(browsers / elapsed, 1),
                    "server_cpu_us_per_registration": round(cpu / browsers * 1e6),
                    "rss_kib_per_open_browser": round((rss_after - rss_before) / browsers, 1),
                    "rss_mib": round(rss_after / 1024, 1),
                }
            ),
            flush=True,
        )
        # Refreshes over the sockets already open: the SIP side's cost alone.
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        await asyncio.gather(*(_refresh(ws, n, limit) for n, ws in enumerate(sockets)))
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(server.pid) - cpu_before
        print(
            json.dumps(
                {
                    "bench": "ws_refresh",
                    "browsers": browsers,
                    "refreshed_per_s": round(browsers / elapsed, 1),
                    "server_cpu_us_per_refresh": round(cpu / browsers * 1e6),
                }
            ),
            flush=True,
        )
        ws_times = await _ws_pings(url, pings)
        udp_times = await asyncio.to_thread(_udp_pings, sip_port, pings)
        print(json.dumps({"bench": "options_rtt", "transport": "udp", **_summary(udp_times)}))
        print(json.dumps({"bench": "options_rtt", "transport": "ws", **_summary(ws_times)}))
        await asyncio.gather(*(ws.close() for ws in sockets))
    finally:
        stop_callbridge(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--browsers", type=int, default=500)
    parser.add_argument("--pings", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(args.browsers, args.pings, Path(workdir)))


if __name__ == "__main__":
    main()
