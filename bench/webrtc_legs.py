"""WebRTC legs carried at once with audio flowing, and what a WebRTC leg costs
against a plain RTP leg, in one command.

    .venv/bin/python bench/webrtc_legs.py [--legs 25,50] [--seconds 10] [--opus]

The relay is `media.LocalMediaEngine` in a process of its own (uvloop), the
thing measured; this process plays every peer (uvloop too): aiortc
RTCPeerConnections as the browsers (no ICE servers, loopback candidates
only, PCMU, a 1 kHz tone each) and plain RTP phones (PCMU at 20 ms). The
relay process is driven over a pipe, not SIP: the SDP each side gets is
what callbridge's call would send (pbx/webrtc_sdp.py), and the signalling's
cost is not what this measures.

For each N in `--legs`, two runs of N calls, G.711 both ways (50 packets/s
per direction, per call):

- `plain`: two plain RTP legs a call, a phone on each side (the reference);
- `webrtc`: a WebRTC leg (ICE-lite, DTLS-SRTP, RTCP muxed) and a plain leg a
  call, a browser on one side and a phone on the other;
- with `--opus`, `opus`: the same with browsers restricted to Opus, so the
  WebRTC leg transcodes (media/transcode.py) between Opus and the phone's
  PCMU.

Every run reports `transcoded_legs`: legs whose transcoder decoded or encoded
anything (0 in `plain` and `webrtc`: G.711 is relayed, never decoded).

Measured over `--seconds` of steady audio (after every browser connected):
the relay's CPU (percent of one core) and per call; the cost of a WebRTC
leg = a WebRTC call's CPU minus half a plain call's (one plain leg); loss
each way from the senders' and receivers' counters over the same window
(`browser_to_phone` from aiortc's packetsSent and the phones' counts,
`phone_to_browser` from the phones' counts and aiortc's packetsReceived).

Prints one JSON line per run and a summary line per N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import uvloop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.webrtc_peer import Browser  # noqa: E402

from callbridge.media import LocalMediaEngine, RtpPacket, RtpPortAllocator  # noqa: E402
from callbridge.media.g711 import pcmu_encode  # noqa: E402
from callbridge.pbx.anchor import audio_of  # noqa: E402
from callbridge.pbx.webrtc_sdp import (  # noqa: E402
    answer_setup,
    offered_mid,
    plain_of,
    plain_side,
    webrtc_of,
    webrtc_remote_of,
)
from callbridge.sip.sdp import parse_sdp  # noqa: E402
from options_load import _cpu_seconds, _rss_kib  # noqa: E402

RTP_PORTS = "20000-29999"  # below the kernel's ephemeral ports, where the peers bind
INTERVAL = 0.020
SOCKET_BUFFER = 1024 * 1024
CONNECT_TIMEOUT = 60.0

# --- the relay process --------------------------------------------------------------


class Relay:
    """The measured process: one media session per call, made on request."""

    def __init__(self) -> None:
        ports = RtpPortAllocator(RTP_PORTS, host="127.0.0.1")
        self.engine = LocalMediaEngine(ports)
        self.calls = 0

    async def plain(self, a: int, b: int) -> dict[str, Any]:
        session = self.engine.create_session(f"plain-{self.calls}")
        self.calls += 1
        legs = [await session.add_leg("a"), await session.add_leg("b")]
        for leg, port in zip(legs, (a, b), strict=True):
            session.set_remote(leg, "127.0.0.1", port, {0: "PCMU"})
            session.sdp_sent(leg)
        session.connect(*legs)
        return {"ports": [leg.local_address[1] for leg in legs]}

    async def webrtc(self, offer: str, phone: int) -> dict[str, Any]:
        session = self.engine.create_session(f"webrtc-{self.calls}")
        self.calls += 1
        web = await session.add_leg("browser", webrtc=True)
        plain = await session.add_leg("phone")
        browser = parse_sdp(offer)
        audio = audio_of(browser)
        remote = webrtc_remote_of(browser, audio.index)
        session.set_webrtc_remote(web, remote)
        session.set_remote(web, "127.0.0.1", 9, audio.payload_types)
        plain_offer = parse_sdp(plain_of(browser, audio, "127.0.0.1", plain.local_address[1]))
        # The phone answers PCMU: the plain offer's first voice format.
        session.set_remote(plain, "127.0.0.1", phone, {0: "PCMU"})
        if audio.opus is not None:  # an Opus-only browser: transcoded, as a call would
            session.set_transcoding(web, plain_side(audio.opus, audio_of(plain_offer)))
        session.sdp_sent(plain)
        session.connect(web, plain)
        mid, bundle = offered_mid(browser, audio.index)
        assert web.webrtc is not None
        answer = webrtc_of(
            plain_offer,
            audio_of(plain_offer),
            web.webrtc,
            "127.0.0.1",
            web.local_address[1],
            setup=answer_setup(remote),
            mid=mid,
            bundle=bundle,
            opus=audio.opus,
        )
        return {"answer": answer.decode(), "port": plain.local_address[1]}

    async def stats(self) -> dict[str, Any]:
        totals = {
            "packets_in": 0,
            "packets_out": 0,
            "dropped": 0,
            "srtp_failures": 0,
            "transcoded_legs": 0,
        }
        for session in self.engine.sessions.values():
            for leg in session.legs.values():
                stats = leg.stats()
                rtp = stats.rtp
                totals["transcoded_legs"] += stats.transcoded > 0
                totals["packets_in"] += rtp.packets_in
                totals["packets_out"] += rtp.packets_out
                totals["dropped"] += rtp.dropped
                if leg.carrier is not None:
                    totals["srtp_failures"] += leg.carrier.srtp_failures
        return totals


async def serve() -> None:
    relay = Relay()
    await answer_requests(relay)
    await relay.engine.close()


class Child:
    """This script run as another process (`--serve` or `--browsers`), asked
    one JSON line at a time over its stdin and answering on its stdout."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(HERE.parent / "src")},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ask(self, op: str, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
        self.process.stdin.flush()
        line = await asyncio.to_thread(self.process.stdout.readline)
        return cast(dict[str, Any], json.loads(line))

    def stop(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write('{"op": "quit"}\n')
            self.process.stdin.flush()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


class RelayProcess(Child):
    def __init__(self) -> None:
        super().__init__("--serve")


async def answer_requests(handler: Any) -> None:
    """Run `handler.<op>(**request)` for each JSON line on stdin until `quit`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        reply = await getattr(handler, op)(**request)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# --- the peers ---------------------------------------------------------------------


class Phone(asyncio.DatagramProtocol):
    """A plain RTP phone: PCMU every 20 ms (once started), counts what arrives."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.sent = self.received = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.relay: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1

    def send(self, payload: bytes) -> None:
        if self.transport is not None and self.relay is not None:
            seq = self.sent
            packet = RtpPacket(0, seq & 0xFFFF, seq * 160, self.ssrc, payload=payload)
            self.transport.sendto(packet.to_bytes(), self.relay)
            self.sent += 1

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


async def open_phone(ssrc: int) -> Phone:
    loop = asyncio.get_running_loop()
    _, phone = await loop.create_datagram_endpoint(lambda: Phone(ssrc), local_addr=("127.0.0.1", 0))
    return phone


async def pace(phones: list[Phone], stop: asyncio.Event) -> None:
    """Every phone sends a 440 Hz PCMU frame every 20 ms, on the loop's clock."""
    t = np.arange(160) / 8000
    payload = pcmu_encode((0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))
    start, tick = time.monotonic(), 0
    while not stop.is_set():
        for phone in phones:
            phone.send(payload)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * INTERVAL - time.monotonic()))


async def browser_counts(browsers: list[Browser]) -> tuple[int, int]:
    """(RTP packets sent, RTP packets received) over every browser, from getStats."""
    sent = received = 0
    for browser in browsers:
        for stat in (await browser.pc.getStats()).values():
            if stat.type == "outbound-rtp":
                sent += stat.packetsSent
            elif stat.type == "inbound-rtp":
                received += stat.packetsReceived
    return sent, received


def loss(sent: int, received: int) -> float:
    return round(100 * max(0, sent - received) / max(sent, 1), 3)


async def measure(relay: RelayProcess, calls: int, seconds: float) -> dict[str, Any]:
    """The relay's CPU over `seconds` of steady audio (after a second's
    warm-up), and the packets it took in meanwhile: per call and second
    (100 when every peer keeps its 50 packets/s) and per packet."""
    await asyncio.sleep(1.0)
    packets_before = (await relay.ask("stats"))["packets_in"]
    cpu_before, started = _cpu_seconds(relay.pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = _cpu_seconds(relay.pid) - cpu_before
    elapsed = time.monotonic() - started
    packets = (await relay.ask("stats"))["packets_in"] - packets_before
    return {
        "relay_cpu_percent": round(100 * cpu / elapsed, 1),
        "relay_cpu_percent_per_call": round(100 * cpu / elapsed / calls, 3),
        "packets_per_call_second": round(packets / elapsed / calls, 1),
        "relay_cpu_us_per_packet": round(1e6 * cpu / max(packets, 1), 1),
        "relay_rss_mib": round(_rss_kib(relay.pid) / 1024, 1),
    }


# Loss is counted over the whole talk: every sender starts from zero and
# stops before the counts are read, DRAIN seconds after (nothing in flight).
DRAIN = 0.5


async def run_plain(calls: int, seconds: float) -> dict[str, Any]:
    relay = RelayProcess()
    stop = asyncio.Event()
    try:
        phones = [await open_phone(n) for n in range(2 * calls)]
        for n in range(calls):
            a, b = phones[2 * n], phones[2 * n + 1]
            ports = (await relay.ask("plain", a=a.port, b=b.port))["ports"]
            a.relay, b.relay = ("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])
        sender = asyncio.ensure_future(pace(phones, stop))
        result = await measure(relay, calls, seconds)
        stop.set()
        await sender
        await asyncio.sleep(DRAIN)
        sent, received = sum(p.sent for p in phones), sum(p.received for p in phones)
        for phone in phones:
            assert phone.transport is not None
            phone.transport.close()
        return {"mode": "plain", "calls": calls, **result, "loss_percent": loss(sent, received)}
    finally:
        relay.stop()


class BrowserWorker:
    """A process of browsers and the phones they talk to: aiortc decodes each
    peer's audio in a thread of its own, and with 50 such threads one loop
    gets the GIL too seldom to keep 50 peers' pace, so the peers are spread
    over processes of `--per-process` each."""

    def __init__(self) -> None:
        self.browsers: list[Browser] = []
        self.phones: list[Phone] = []
        self.stop = asyncio.Event()
        self.sender: asyncio.Future[None] | None = None

    async def offers(self, count: int, first: int, opus: bool = False) -> dict[str, Any]:
        self.phones = [await open_phone(first + n) for n in range(count)]
        codecs = ("audio/opus",) if opus else ("audio/PCMU", "audio/PCMA")
        self.browsers = [Browser(1000.0, codecs, keep=False) for _ in range(count)]
        offers = await asyncio.gather(*(browser.offer() for browser in self.browsers))
        return {"offers": [[o, p.port] for o, p in zip(offers, self.phones, strict=True)]}

    async def answers(self, answers: list[list[Any]]) -> dict[str, Any]:
        for phone, (_, port) in zip(self.phones, answers, strict=True):
            phone.relay = ("127.0.0.1", port)
        pairs = zip(self.browsers, answers, strict=True)
        await asyncio.gather(*(browser.accept(answer) for browser, (answer, _) in pairs))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while time.monotonic() < deadline:
            if all(b.state == "connected" for b in self.browsers):
                break
            await asyncio.sleep(0.1)
        return {"connected": sum(b.state == "connected" for b in self.browsers)}

    async def start(self) -> dict[str, Any]:
        self.sender = asyncio.ensure_future(pace(self.phones, self.stop))
        return {}

    async def finish(self) -> dict[str, Any]:
        """Stop every sender, wait for what is in flight, and count."""
        self.stop.set()
        for browser in self.browsers:
            browser.mute()
        if self.sender is not None:
            await self.sender
        await asyncio.sleep(DRAIN)
        browser_sent, browser_received = await browser_counts(self.browsers)
        counts = {
            "browser_sent": browser_sent,
            "browser_received": browser_received,
            "phone_sent": sum(p.sent for p in self.phones),
            "phone_received": sum(p.received for p in self.phones),
        }
        for browser in self.browsers:
            await browser.close()
        return counts


async def work() -> None:
    await answer_requests(BrowserWorker())


async def run_webrtc(
    calls: int, seconds: float, per_process: int, opus: bool = False
) -> dict[str, Any]:
    relay = RelayProcess()
    workers: list[Child] = []
    try:
        setup_started = time.monotonic()
        sizes = [min(per_process, calls - n) for n in range(0, calls, per_process)]
        workers = [Child("--browsers") for _ in sizes]
        connected = 0
        offered = await asyncio.gather(
            *(
                w.ask("offers", count=size, first=i * per_process, opus=opus)
                for i, (w, size) in enumerate(zip(workers, sizes, strict=True))
            )
        )
        answers = []
        for reply in offered:
            mine = []
            for offer, phone_port in reply["offers"]:
                made = await relay.ask("webrtc", offer=offer, phone=phone_port)
                mine.append([made["answer"], made["port"]])
            answers.append(mine)
        done = await asyncio.gather(
            *(w.ask("answers", answers=a) for w, a in zip(workers, answers, strict=True))
        )
        connected = sum(reply["connected"] for reply in done)
        setup_seconds = time.monotonic() - setup_started
        await asyncio.gather(*(w.ask("start") for w in workers))
        result = await measure(relay, calls, seconds)
        counts = await asyncio.gather(*(w.ask("finish") for w in workers))
        total = {key: sum(c[key] for c in counts) for key in counts[0]}
        relay_stats = await relay.ask("stats")
        return {
            "mode": "opus" if opus else "webrtc",
            "calls": calls,
            "browser_processes": len(workers),
            "connected": connected,
            "setup_seconds": round(setup_seconds, 1),
            **result,
            "loss_percent_browser_to_phone": loss(total["browser_sent"], total["phone_received"]),
            "loss_percent_phone_to_browser": loss(total["phone_sent"], total["browser_received"]),
            "srtp_failures": relay_stats["srtp_failures"],
            "relay_dropped": relay_stats["dropped"],
            "transcoded_legs": relay_stats["transcoded_legs"],
        }
    finally:
        for worker in workers:
            worker.stop()
        relay.stop()


async def main(legs: list[int], seconds: float, per_process: int, opus: bool) -> None:
    for calls in legs:
        plain = await run_plain(calls, seconds)
        print(json.dumps(plain), flush=True)
        webrtc = await run_webrtc(calls, seconds, per_process)
        print(json.dumps(webrtc), flush=True)
        # Per packet, so that a peer that fell behind its 50 packets/s does
        # not flatter a run: a WebRTC call's packets cost one plain leg's
        # work and one WebRTC leg's (each packet crosses both).
        plain_us = plain["relay_cpu_us_per_packet"]
        webrtc_us = webrtc["relay_cpu_us_per_packet"]
        # A call at full rate is 100 packets/s: µs per packet / 100 = % of a core.
        plain_leg = plain_us / 100 / 2
        webrtc_leg = webrtc_us / 100 - plain_leg
        summary = {
            "calls": calls,
            "relay_us_per_packet_plain_call": plain_us,
            "relay_us_per_packet_webrtc_call": webrtc_us,
            "cpu_percent_per_plain_leg": round(plain_leg, 3),
            "cpu_percent_per_webrtc_leg_at_full_rate": round(webrtc_leg, 3),
            "webrtc_vs_plain_leg": round(webrtc_leg / max(plain_leg, 1e-6), 1),
            "peers_kept_pace": webrtc["packets_per_call_second"] >= 98,
            "carried_without_loss": webrtc["connected"] == calls
            and webrtc["loss_percent_browser_to_phone"] < 0.1
            and webrtc["loss_percent_phone_to_browser"] < 0.1,
        }
        if opus:
            transcoded = await run_webrtc(calls, seconds, per_process, opus=True)
            print(json.dumps(transcoded), flush=True)
            opus_leg = transcoded["relay_cpu_us_per_packet"] / 100 - plain_leg
            summary["relay_us_per_packet_opus_call"] = transcoded["relay_cpu_us_per_packet"]
            summary["cpu_percent_per_opus_leg_at_full_rate"] = round(opus_leg, 3)
            summary["opus_vs_relayed_webrtc_leg"] = round(opus_leg / max(webrtc_leg, 1e-6), 1)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", default="25,50", help="comma-separated numbers of calls")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-process", type=int, default=10, help="browsers per process")
    parser.add_argument(
        "--opus", action="store_true", help="also a run of Opus-only browsers, transcoded"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--browsers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve())
    elif args.browsers:
        uvloop.run(work())
    else:
        legs = [int(n) for n in args.legs.split(",")]
        uvloop.run(main(legs, args.seconds, args.per_process, args.opus))
