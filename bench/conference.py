"""Conference rooms mixed at once: `--rooms` rooms of `--size` participants,
each a media leg of `LocalMediaEngine` (real UDP sockets on loopback) in a
room of one `media.mixer.Mixer`, in a process of its own (uvloop), while this process
plays every participant's phone: 20 ms of PCMU a packet, 50 a second each,
and counts what the mixer sends back.

    .venv/bin/python bench/conference.py [--rooms 1] [--size 10] [--seconds 20]

Prints one JSON line: the mixer process's CPU (percent of one core, and
per room), frames mixed and the share that went out late (more than 20 ms
after they fell due, the mixer's own count), frames skipped, and what the
phones saw: packets a second received, loss, the 99th percentile and worst
gap between two packets of one stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import time
from typing import Any

import numpy as np
import uvloop

from callbridge.media import LocalMediaEngine, RtpPortAllocator, g711
from callbridge.media.mixer import Mixer
from moh_player import HeldPhone
from options_load import _cpu_seconds, _rss_kib

# Below the ephemeral range the phones bind in (32768 and up, on Linux).
RTP_PORTS = "20000-29999"
FRAME = 0.02


async def serve() -> None:
    """The mixer's process: rooms of phone ports on stdin's first line;
    mixes until stdin closes, then prints its stats."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    rooms: list[list[int]] = json.loads(await reader.readline())
    engine = LocalMediaEngine(RtpPortAllocator(RTP_PORTS, host="127.0.0.1"), clock=loop.time)
    mixer = Mixer(clock=loop.time)
    rooms_made, legs = [], []
    for r, phones in enumerate(rooms):
        session = engine.create_session(f"room-{r}")
        room = []
        for port in phones:
            leg = await session.add_leg()
            session.set_remote(leg, "127.0.0.1", port, {0: "PCMU"})
            room.append(leg)
        legs.append(room)
        rooms_made.append(mixer.room())
    print(json.dumps([[leg.local_address[1] for leg in room] for room in legs]), flush=True)
    await reader.readline()  # go
    for made, room in zip(rooms_made, legs, strict=True):
        for leg in room:
            made.join(leg, 0, "PCMU")
    await reader.read()  # until the phones are done
    stats = [made.stats for made in rooms_made]
    for made in rooms_made:
        made.close()
    await engine.close()
    print(
        json.dumps(
            {
                "frames": sum(s.frames for s in stats),
                "late": sum(s.late for s in stats),
                "skipped": sum(s.skipped for s in stats),
            }
        ),
        flush=True,
    )


async def talk(phones: list[HeldPhone], targets: list[int], seconds: float) -> None:
    """Every phone sends a 440 Hz tone, 20 ms a packet, on one shared clock."""
    tone = (np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 8000).astype(np.int16)
    frames = [g711.pcmu_encode(tone[i : i + 160]) for i in range(0, 8000, 160)]
    header = struct.Struct("!BBHII")
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) / FRAME) + 1
        for n in range(sent, due):
            payload = frames[n % len(frames)]
            for i, (phone, port) in enumerate(zip(phones, targets, strict=True)):
                packet = header.pack(0x80, 0, n & 0xFFFF, n * 160 & 0xFFFFFFFF, i + 1)
                phone.transport.sendto(packet + payload, ("127.0.0.1", port))  # type: ignore[union-attr]
        sent = due
        await asyncio.sleep(max(0.0, start + sent * FRAME - time.monotonic()))


async def run(rooms: int, size: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    phones = []
    for _ in range(rooms * size):
        _, phone = await loop.create_datagram_endpoint(HeldPhone, local_addr=("127.0.0.1", 0))
        phones.append(phone)
    ports = [p.transport.get_extra_info("sockname")[1] for p in phones]  # type: ignore[union-attr]
    layout = [ports[r * size : (r + 1) * size] for r in range(rooms)]
    mixer = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert mixer.stdin is not None and mixer.stdout is not None
    mixer.stdin.write(json.dumps(layout) + "\n")
    mixer.stdin.flush()
    legs = json.loads(await loop.run_in_executor(None, mixer.stdout.readline))
    targets = [port for room in legs for port in room]
    cpu_before, started = _cpu_seconds(mixer.pid), time.monotonic()
    mixer.stdin.write("go\n")
    mixer.stdin.flush()
    await talk(phones, targets, seconds)
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(mixer.pid) - cpu_before
    rss = _rss_kib(mixer.pid)
    mixer.stdin.close()
    stats = json.loads(await loop.run_in_executor(None, mixer.stdout.readline))
    mixer.wait(timeout=10)
    received = sum(len(p.arrivals) for p in phones)
    owed = sum((p.sequences[-1] - p.sequences[0]) % 65536 + 1 if p.sequences else 1 for p in phones)
    gaps = np.concatenate([np.diff(p.arrivals) for p in phones if len(p.arrivals) > 1])
    for phone in phones:
        phone.transport.close()  # type: ignore[union-attr]
    return {
        "bench": "conference",
        "rooms": rooms,
        "size": size,
        "seconds": round(elapsed, 1),
        "mixer_cpu_percent": round(100 * cpu / elapsed, 1),
        "cpu_percent_per_room": round(100 * cpu / elapsed / rooms, 2),
        "frames": stats["frames"],
        "late_percent": round(100 * stats["late"] / max(1, stats["frames"]), 3),
        "skipped": stats["skipped"],
        "packets_per_s": round(received / elapsed),
        "lost_percent": round(max(0, owed - received) * 100 / owed, 3),
        "gap_p99_ms": round(float(np.percentile(gaps, 99)) * 1000, 1),
        "gap_max_ms": round(float(gaps.max()) * 1000, 1),
        "rss_mib": round(rss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve())
        return
    print(json.dumps(uvloop.run(run(args.rooms, args.size, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
