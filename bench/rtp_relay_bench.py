"""RTP relayed per second through `media.LocalMediaEngine`, against a reference
run in the same command: a bare uvloop UDP relay (one socket per leg, each
forwarding every datagram to a fixed address: no latching, no counters).

    .venv/bin/python bench/rtp_relay_bench.py [--calls 300] [--seconds 20]

Each target runs in its own process (uvloop) while this one plays the phones:

- `flood`: one call, 256 packets circulating (each phone sends a packet back
  for every packet it receives), as fast as the relay and the phones go. The
  phones are one Python process too, so on a 2-core machine they may be the
  limit: `relay_cpu_us_per_packet` is the relay's own cost;
- `calls`: `--calls` calls, G.711 at 20 ms in both directions (50 pps per
  direction: 300 calls = 30,000 pps relayed), paced; loss is the share of sent
  packets that never arrived, with the relay's CPU (percent of one core) and
  memory.

Prints one JSON line per target and mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any, cast

import uvloop

from callbridge.media import LocalMediaEngine, RtpPacket, RtpPortAllocator
from options_load import _cpu_seconds, _rss_kib

PACKET_INTERVAL = 0.020
FLOOD_WINDOW = 256
RTP_PORTS = "30000-49999"
SOCKET_BUFFER = 1024 * 1024


def packet(seq: int, ssrc: int) -> bytes:
    return RtpPacket(0, seq & 0xFFFF, seq * 160, ssrc, payload=b"\xff" * 160).to_bytes()


# The relay process: `--serve engine|bare`, phone ports as JSON on stdin's first
# line; prints the ports the phones must send to, runs until stdin closes.


class _BareRelay(asyncio.DatagramProtocol):
    def __init__(self, dest: tuple[str, int]) -> None:
        self.dest = dest
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: _BareRelay | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.peer.transport.sendto(data, self.peer.dest)  # type: ignore[union-attr]


async def serve(kind: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    calls: list[list[int]] = json.loads(await reader.readline())
    ports: list[list[int]] = []
    engine = None
    if kind == "engine":
        engine = LocalMediaEngine(RtpPortAllocator(RTP_PORTS, host="127.0.0.1"), rtp_timeout=60)
        for n, (phone_a, phone_b) in enumerate(calls):
            session = engine.create_session(f"bench-{n}")
            leg_a, leg_b = await session.add_leg(), await session.add_leg()
            session.set_remote(leg_a, "127.0.0.1", phone_a)
            session.set_remote(leg_b, "127.0.0.1", phone_b)
            session.connect(leg_a, leg_b)
            ports.append([leg_a.local_address[1], leg_b.local_address[1]])
    else:
        for phone_a, phone_b in calls:
            pair = []
            for phone in (phone_a, phone_b):
                _, relay = await loop.create_datagram_endpoint(
                    lambda p=phone: _BareRelay(("127.0.0.1", p)), local_addr=("127.0.0.1", 0)
                )
                pair.append(relay)
            pair[0].peer, pair[1].peer = pair[1], pair[0]
            ports.append([r.transport.get_extra_info("sockname")[1] for r in pair])  # type: ignore[union-attr]
    print(json.dumps(ports), flush=True)
    await reader.read()  # until the phones are done
    if engine is not None:
        dropped = sum(
            leg.stats().rtp.dropped
            for session in engine.sessions.values()
            for leg in session.legs.values()
        )
        print(json.dumps({"dropped": dropped}), flush=True)
        await engine.close()
    else:
        print(json.dumps({"dropped": 0}), flush=True)


# The phones.


class Phone(asyncio.DatagramProtocol):
    def __init__(self, ssrc: int, echo: bool) -> None:
        self.ssrc = ssrc
        self.echo = echo
        self.received = 0
        self.sent = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.relay: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        if self.echo:
            self.transport.sendto(data, self.relay)  # type: ignore[union-attr]
            self.sent += 1

    def send(self, data: bytes) -> None:
        self.transport.sendto(data, self.relay)  # type: ignore[union-attr]
        self.sent += 1


async def open_phones(calls: int, echo: bool) -> list[tuple[Phone, Phone]]:
    loop = asyncio.get_running_loop()
    pairs = []
    for n in range(calls):
        pair = []
        for side in (0, 1):
            _, phone = await loop.create_datagram_endpoint(
                lambda s=2 * n + side: Phone(s, echo), local_addr=("127.0.0.1", 0)
            )
            pair.append(phone)
        pairs.append((pair[0], pair[1]))
    return pairs


def port_of(phone: Phone) -> int:
    return int(phone.transport.get_extra_info("sockname")[1])  # type: ignore[union-attr]


async def run(kind: str, mode: str, calls: int, seconds: float) -> dict[str, Any]:
    phones = await open_phones(calls, echo=mode == "flood")
    relay = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert relay.stdin is not None and relay.stdout is not None
    relay.stdin.write(json.dumps([[port_of(a), port_of(b)] for a, b in phones]) + "\n")
    relay.stdin.flush()
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, relay.stdout.readline)
    for (a, b), (port_a, port_b) in zip(phones, json.loads(line), strict=True):
        a.relay, b.relay = ("127.0.0.1", port_a), ("127.0.0.1", port_b)
    everyone = [phone for pair in phones for phone in pair]
    cpu_before, started = _cpu_seconds(relay.pid), time.monotonic()
    if mode == "flood":
        for phone in everyone:
            for seq in range(FLOOD_WINDOW // 2):
                phone.send(packet(seq, phone.ssrc))
        await asyncio.sleep(seconds)
    else:
        tick = 0
        while (now := time.monotonic()) < started + seconds:
            for phone in everyone:
                phone.send(packet(tick, phone.ssrc))
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * PACKET_INTERVAL - now - 0.0005))
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(relay.pid) - cpu_before
    rss = _rss_kib(relay.pid)
    if mode == "calls":
        await asyncio.sleep(0.5)  # stragglers
    received = sum(phone.received for phone in everyone)
    sent = sum(phone.sent for phone in everyone)
    relay.stdin.close()
    dropped = json.loads(await loop.run_in_executor(None, relay.stdout.readline))["dropped"]
    relay.wait(timeout=10)
    for phone in everyone:
        phone.transport.close()  # type: ignore[union-attr]
    result: dict[str, Any] = {
        "target": "callbridge media engine"
        if kind == "engine"
        else "bare uvloop relay (reference)",
        "mode": mode,
        "calls": calls,
        "seconds": round(elapsed, 1),
        "relayed_per_s": round(received / elapsed),
        "relay_cpu_percent": round(100 * cpu / elapsed, 1),
        "relay_rss_mib": round(rss / 1024, 1),
        "relay_dropped": dropped,
        "relay_cpu_us_per_packet": round(cpu / max(received, 1) * 1e6, 2),
    }
    if mode == "calls":
        result["offered_per_s"] = round(sent / elapsed)
        result["lost_percent"] = round(100 * (sent - received) / max(sent, 1), 3)
    return result


async def bench(calls: int, seconds: float, flood_seconds: float) -> None:
    results = []
    for mode, count, duration in (("flood", 1, flood_seconds), ("calls", calls, seconds)):
        for kind in ("bare", "engine"):
            result = await run(kind, mode, count, duration)
            print(json.dumps(result), flush=True)
            results.append(result)
    bare_flood, engine_flood = results[0], results[1]
    ratio = engine_flood["relayed_per_s"] / max(bare_flood["relayed_per_s"], 1)
    print(json.dumps({"engine_vs_reference_flood": round(ratio, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flood-seconds", type=float, default=5)
    parser.add_argument("--serve", choices=["engine", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve(args.serve))
    else:
        uvloop.run(bench(args.calls, args.seconds, args.flood_seconds))


if __name__ == "__main__":
    main()
