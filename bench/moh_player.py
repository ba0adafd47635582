"""Music on hold to many held parties at once: one `media.player.Player`
sending the bundled melody into `--legs` media legs of `LocalMediaEngine`
(real UDP sockets on loopback), in a process of its own (uvloop), while this
process plays the held phones and checks what arrives.

    .venv/bin/python bench/moh_player.py [--legs 300] [--seconds 20]

Prints one JSON line: packets a second, loss (sequence numbers that never
arrived, from each stream's first to its last), the player process's CPU
(percent of one core) and µs per packet, and the pacing each phone saw:
the 99th percentile and the worst gap between two packets of one stream
(20 ms is perfect), and packets out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any, cast

import numpy as np
import uvloop

from callbridge.media import LocalMediaEngine, RtpPortAllocator
from callbridge.media.melody import default_music
from callbridge.media.player import Player
from options_load import _cpu_seconds, _rss_kib

# Below the ephemeral range the phones bind in (32768 and up, on Linux).
RTP_PORTS = "20000-29999"


async def serve() -> None:
    """The player's process: phone ports on stdin's first line; plays into
    a leg for each until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    phones: list[int] = json.loads(await reader.readline())
    engine = LocalMediaEngine(RtpPortAllocator(RTP_PORTS, host="127.0.0.1"), clock=loop.time)
    player = Player(default_music(), clock=loop.time)
    legs = []
    for n, port in enumerate(phones):
        session = engine.create_session(f"held-{n}")
        leg = await session.add_leg()
        session.set_remote(leg, "127.0.0.1", port, {0: "PCMU"})
        legs.append(leg)
    print(json.dumps("ready"), flush=True)
    await reader.readline()  # go
    for leg in legs:
        player.play(leg, 0, "PCMU")
    await reader.read()  # until the phones are done
    player.stop()
    await engine.close()


class HeldPhone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.sequences: list[int] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.arrivals.append(time.monotonic())
        self.sequences.append((data[2] << 8) | data[3])


async def run(legs: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    phones = []
    for _ in range(legs):
        _, phone = await loop.create_datagram_endpoint(HeldPhone, local_addr=("127.0.0.1", 0))
        phones.append(phone)
    ports = [p.transport.get_extra_info("sockname")[1] for p in phones]  # type: ignore[union-attr]
    player = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert player.stdin is not None and player.stdout is not None
    player.stdin.write(json.dumps(ports) + "\n")
    player.stdin.flush()
    await loop.run_in_executor(None, player.stdout.readline)  # ready
    cpu_before, started = _cpu_seconds(player.pid), time.monotonic()
    player.stdin.write("go\n")
    player.stdin.flush()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(player.pid) - cpu_before
    rss = _rss_kib(player.pid)
    player.stdin.close()
    player.wait(timeout=10)
    received = sum(len(p.arrivals) for p in phones)
    # Owed: every sequence number from each stream's first to its last.
    owed = sum((p.sequences[-1] - p.sequences[0]) % 65536 + 1 if p.sequences else 1 for p in phones)
    gaps = np.concatenate([np.diff(p.arrivals) for p in phones if len(p.arrivals) > 1])
    disorder = sum(
        int(np.count_nonzero((np.diff(np.array(p.sequences, dtype=np.int64)) % 65536) != 1))
        for p in phones
    )
    for phone in phones:
        phone.transport.close()  # type: ignore[union-attr]
    return {
        "bench": "music on hold",
        "legs": legs,
        "seconds": round(elapsed, 1),
        "packets_per_s": round(received / elapsed),
        "lost_percent": round(max(0, owed - received) * 100 / owed, 3),
        "player_cpu_percent": round(100 * cpu / elapsed, 1),
        "us_per_packet": round(cpu * 1e6 / max(1, received), 2),
        "gap_p99_ms": round(float(np.percentile(gaps, 99)) * 1000, 1),
        "gap_max_ms": round(float(gaps.max()) * 1000, 1),
        "out_of_order": disorder,
        "rss_mib": round(rss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve())
        return
    print(json.dumps(uvloop.run(run(args.legs, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
