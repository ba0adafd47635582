"""Concurrent calls with RTP both ways through callbridge's B2BUA, against a
reference run in the same command: the same phones and the same media load
through the bare uvloop relay of bench/rtp_relay_bench.py.

    .venv/bin/python bench/rtp_calls.py [--calls 300] [--seconds 10] [--rate 100]
    .venv/bin/python bench/rtp_calls.py --recording --calls 200 --seconds 60

(`make bench` runs the defaults; the full run is `--seconds 30`.)

`--recording` runs callbridge twice in one command instead of against the
reference: the same calls with recording off, then on, and checks every
recording of the second run: its file is a WAV of the length its record
says, as long as the call was answered (within 0.1 s), and each channel
holds the tone its phone sent for the whole talk (a lost or misplaced packet
would be a hole). Goal (issue 13): 200 recorded calls, < 0.1% loss.

Goal: 300 concurrent calls, G.711 PCMU at 20 ms (50 packets/s each way per
call: 30,000 packets/s into the relay and as many out), with < 0.1% of the
packets lost.

How. This script is both phones of every call, in one uvloop process:

- signalling: a small SIP user agent per side, written here so that each
  call's media ports are known exactly (SIPp announces one media port for
  all its calls, and its RTP echo and pcap play at 300 calls load SIPp
  itself more than the relay being measured). The caller's UA sends INVITE
  as line 101 with an SDP naming its phone's socket, answers the 407 with an
  MD5 digest, ACKs the 200 and reads callbridge's port for the call from its
  SDP; the callee's UA registers the callee lines (several: the API allows
  at most 50 concurrent incoming calls per line, CALLS_PER_LINE are put on
  each), answers callbridge's INVITE with 180 and 200 naming another phone's
  socket, and answers BYE. Calls are set up at `--rate` per second, all of
  them before any media flows, and hung up (BYE) after the talk;
- media: for `--seconds`, every phone of an established call sends one
  172-byte RTP packet (PT 0, 160 bytes of payload) every 20 ms, paced on the
  loop's clock like rtp_relay_bench's `calls` mode, from the port its SDP
  announced, so callbridge's symmetric latching sees the address it expects.
  A packet is lost when it was sent and never arrived at the other phone
  within 0.5 s after the last send. Loss is counted on both phones of every
  call; `lost_at_start` are the packets of each stream before the first that
  arrived (a relay that is not yet latched drops those), the rest is
  `lost_steady`.

Callbridge's cost: CPU over the talk as percent of one core and per call,
CPU per call set up and torn down, and RSS with the calls up minus RSS idle
(after the lines registered, before the first INVITE), per call. Its own
`b2bua.stats` line gives the INVITE-in to INVITE-out delay at shutdown.

The reference is the bare relay (`_BareRelay`: one socket per leg, each
datagram forwarded to a fixed address): the same phones, packets and pacing,
and a relay process of the same kind (Python, uvloop) doing the least a relay
can. SIPp → SIPp directly would measure SIPp's RTP, not a relay. The
reference has no signalling, so its RSS is that of the relay alone.

Prints one JSON line per target and the callbridge / reference ratios of
packets delivered and of relay CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import uvloop

from call_load import ADMIN_PASSWORD, LINE_PASSWORD, bench_lines, logged_stats, stop_server
from callbridge.media import RtpPacket
from callbridge.media.g711 import pcmu_encode
from options_load import (
    _cpu_seconds,
    _rss_kib,
    create_lines,
    start_callbridge,
)
from rtp_relay_bench import PACKET_INTERVAL, Phone, packet

HERE = Path(__file__).resolve().parent
CALLS_PER_LINE = 40  # the API allows max_incoming_calls <= 50
CALLER_NUMBER, CALLER_USER = "101", "caller101"
SETTINGS = {
    "CALLBRIDGE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "CALLBRIDGE_SIP_DIGEST_ALGORITHMS": "MD5",
    "CALLBRIDGE_RTP_PORTS": "20000-29999",
    # The phones are on loopback, which media may reach only when allowed.
    "CALLBRIDGE_MEDIA_ALLOWED_NETWORKS": "public,127.0.0.0/8",
    "CALLBRIDGE_RTP_TIMEOUT": "60",
    "CALLBRIDGE_LOG_LEVEL": "info",
}
T1 = 0.5
STRAGGLERS = 0.5

# --- the phones ---------------------------------------------------------------


class TalkPhone(Phone):
    """rtp_relay_bench's phone, also noting the first sequence number that
    arrived: packets of the stream before it were lost at the start."""

    def __init__(self, ssrc: int) -> None:
        super().__init__(ssrc, echo=False)
        self.first_seq = -1
        self.talking = False

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        if self.first_seq < 0:
            self.first_seq = int.from_bytes(data[2:4], "big")


async def open_phones(count: int) -> list[TalkPhone]:
    loop = asyncio.get_running_loop()
    phones = []
    for n in range(count):
        _, phone = await loop.create_datagram_endpoint(
            lambda n=n: TalkPhone(n), local_addr=("127.0.0.1", 0)
        )
        phones.append(phone)
    return phones


def port_of(endpoint: asyncio.DatagramProtocol) -> int:
    transport = cast(Any, endpoint).transport
    return int(transport.get_extra_info("sockname")[1])


# A 1 kHz tone at half scale, 20 ms: what the phones of a recorded run send,
# so that every recorded frame of the talk is audibly there or missing.
TONE = pcmu_encode((16383 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16))


def tone_packet(seq: int, ssrc: int) -> bytes:
    return RtpPacket(0, seq & 0xFFFF, seq * 160, ssrc, payload=TONE).to_bytes()


async def talk(
    phones: list[TalkPhone], seconds: float, relay_pid: int, make: Any = packet
) -> dict[str, Any]:
    """Every talking phone sends 50 packets/s (`make(seq, ssrc)`) for
    `seconds`; the relay's CPU and the loss."""
    talking = [phone for phone in phones if phone.talking]
    for phone in phones:
        phone.sent = phone.received = 0
        phone.first_seq = -1
    cpu_before, started = _cpu_seconds(relay_pid), time.monotonic()
    tick = 0
    while (now := time.monotonic()) < started + seconds:
        for phone in talking:
            phone.send(make(tick, phone.ssrc))
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * PACKET_INTERVAL - now - 0.0005))
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(relay_pid) - cpu_before
    await asyncio.sleep(STRAGGLERS)
    sent = sum(phone.sent for phone in talking)
    received = sum(phone.received for phone in talking)
    # A phone that got nothing lost the whole stream sent to it.
    at_start = sum(phone.first_seq if phone.first_seq >= 0 else tick for phone in talking)
    calls = len(talking) / 2
    return {
        "talk_seconds": round(elapsed, 1),
        "packets_sent": sent,
        "packets_received": received,
        "relayed_per_s": round(received / elapsed),
        "lost_percent": round(100 * (sent - received) / max(sent, 1), 4),
        "lost_at_start": at_start,
        "lost_steady": sent - received - at_start,
        "relay_cpu_percent": round(100 * cpu / elapsed, 1),
        "relay_cpu_percent_per_call": round(100 * cpu / elapsed / max(calls, 1), 4),
        "relay_cpu_us_per_packet": round(cpu / max(received, 1) * 1e6, 2),
    }


def settled_rss_kib(pid: int, timeout: float = 5.0) -> int:
    """RSS once it stops moving (a process still importing grows)."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        rss = _rss_kib(pid)
        if rss == last:
            return rss
        last = rss
        time.sleep(0.2)
    return last


# --- the reference: the bare relay -------------------------------------------


async def reference(calls: int, seconds: float) -> dict[str, Any]:
    phones = await open_phones(2 * calls)
    relay = subprocess.Popen(
        [sys.executable, str(HERE / "rtp_relay_bench.py"), "--serve", "bare"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert relay.stdin is not None and relay.stdout is not None
    loop = asyncio.get_running_loop()
    try:
        rss_idle = await loop.run_in_executor(None, settled_rss_kib, relay.pid)
        pairs = list(zip(phones[::2], phones[1::2], strict=True))
        relay.stdin.write(json.dumps([[port_of(a), port_of(b)] for a, b in pairs]) + "\n")
        relay.stdin.flush()
        line = await loop.run_in_executor(None, relay.stdout.readline)
        for (a, b), (port_a, port_b) in zip(pairs, json.loads(line), strict=True):
            a.relay, b.relay = ("127.0.0.1", port_a), ("127.0.0.1", port_b)
            a.talking = b.talking = True
        result = await talk(phones, seconds, relay.pid)
        rss_up = _rss_kib(relay.pid)
        relay.stdin.close()
        await loop.run_in_executor(None, relay.stdout.readline)
        relay.wait(timeout=10)
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
        for phone in phones:
            phone.transport.close()  # type: ignore[union-attr]
    return {
        "target": "bare uvloop relay (reference)",
        "calls": calls,
        **result,
        "relay_rss_idle_mib": round(rss_idle / 1024, 1),
        "relay_rss_mib": round(rss_up / 1024, 1),
        "relay_rss_kib_per_call": round((rss_up - rss_idle) / calls, 1),
    }


# --- a small SIP user agent ---------------------------------------------------

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
}


class SipError(Exception):
    pass


@dataclass
class Message:
    start: str
    headers: list[tuple[str, str]]
    body: str

    @classmethod
    def parse(cls, data: bytes) -> Message:
        head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers.append((_COMPACT.get(name, name), value.strip()))
        return cls(lines[0], headers, body)

    @property
    def status(self) -> int:
        """The status code, or 0 for a request."""
        if self.start.startswith("SIP/2.0 "):
            return int(self.start.split()[1])
        return 0

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    def get(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def branch(self) -> str:
        match = re.search(r";\s*branch=([^;,\s]+)", self.get("via"))
        return match.group(1) if match else ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.get("cseq").partition(" ")
        return int(number), method.strip()


def sdp_offer(port: int) -> str:
    return (
        "v=0\r\n"
        f"o=- {port} 1 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def sdp_address(body: str) -> tuple[str, int]:
    host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
    port = re.search(r"^m=audio (\d+)", body, re.M)
    if not host or not port:
        raise SipError(f"no audio address in SDP: {body!r}")
    return host.group(1), int(port.group(1))


def digest_credentials(
    challenge: str, *, method: str, uri: str, username: str, password: str
) -> str:
    """An MD5 (RFC 2617) answer to a Digest challenge."""
    params = {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', challenge)}
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{username}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        "algorithm=MD5",
    ]
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f'cnonce="{cnonce}"', f"nc={nc}", "qop=auth"]
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    to: str  # the remote party's To/From with its tag
    target: str  # its Contact URI
    cseq: int
    phone: TalkPhone


@dataclass
class _Pending:
    future: asyncio.Future[Message]
    data: bytes
    invite: bool
    provisional: bool = False


@dataclass
class _Incoming:
    """A call the callee side answered: the last response, for retransmissions."""

    response: bytes
    acked: bool = False
    ended: bool = False
    phone: TalkPhone | None = None


@dataclass
class SipStats:
    retransmissions: int = 0
    unexpected: list[str] = field(default_factory=list)
    byes_received: int = 0


class SipAgent(asyncio.DatagramProtocol):
    """Just enough SIP over one UDP socket for both sides of the benchmark's
    calls: as the caller it INVITEs (answering a 407), ACKs and BYEs; as the
    callee it REGISTERs, answers INVITEs with 180 and 200, and BYEs with 200."""

    def __init__(self, server: tuple[str, int], phones: list[TalkPhone] | None = None) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[str, _Pending] = {}
        self.answered: dict[str, _Incoming] = {}
        self.dialogs: dict[str, Dialog] = {}
        self.free_phones = list(reversed(phones or []))
        self.stats = SipStats()

    # transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int:
        return port_of(self)

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data.strip():
            return  # keep-alive
        message = Message.parse(data)
        if message.status:
            self._on_response(message)
        else:
            self._on_request(message)

    # client transactions

    def _new_branch(self) -> str:
        return "z9hG4bK" + secrets.token_hex(8)

    async def transact(self, data: bytes, branch: str, *, invite: bool) -> Message:
        """Send a request and retransmit it (T1 doubling, capped at 4 s, and
        not after a provisional response to an INVITE) until its final
        response, which is returned; SipError after 32 s."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        pending = self.pending[branch] = _Pending(future, data, invite)
        self.send(data)
        interval, waited = T1, 0.0
        try:
            while waited < 64 * T1:
                try:
                    return await asyncio.wait_for(asyncio.shield(future), interval)
                except TimeoutError:
                    waited += interval
                    if not (invite and pending.provisional):
                        self.send(data)
                        self.stats.retransmissions += 1
                    interval = min(2 * interval, 4.0)
            raise SipError("no final response in 32 s")
        finally:
            del self.pending[branch]

    def _on_response(self, message: Message) -> None:
        pending = self.pending.get(message.branch)
        if pending is None:
            number, method = message.cseq
            dialog = self.dialogs.get(message.get("call-id"))
            if method == "INVITE" and 200 <= message.status < 300 and dialog is not None:
                self._ack(dialog, number)  # a retransmitted 200: ACK again
            return
        if message.status < 200:
            pending.provisional = True
        elif not pending.future.done():
            pending.future.set_result(message)

    def _request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_: str,
        to: str,
        cseq: int,
        branch: str,
        extra: tuple[str, ...] = (),
        body: str = "",
    ) -> bytes:
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host_port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {from_}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    # the callee's side: registration

    async def register(self, number: str, username: str, password: str) -> None:
        host = f"{self.server[0]}:{self.server[1]}"
        uri = f"sip:{host}"
        aor = f"<sip:{number}@{host}>"
        call_id, tag = secrets.token_hex(12), secrets.token_hex(6)
        extra: tuple[str, ...] = (
            f"Contact: <sip:{number}@{self.host_port};transport=udp>",
            "Expires: 3600",
        )
        for cseq in (1, 2):
            branch = self._new_branch()
            data = self._request(
                "REGISTER",
                uri,
                call_id=call_id,
                from_=f"{aor};tag={tag}",
                to=aor,
                cseq=cseq,
                branch=branch,
                extra=extra,
            )
            answer = await self.transact(data, branch, invite=False)
            if answer.status == 200:
                return
            if answer.status != 401 or cseq == 2:
                raise SipError(f"REGISTER {number}: {answer.start}")
            credentials = digest_credentials(
                answer.get("www-authenticate"),
                method="REGISTER",
                uri=uri,
                username=username,
                password=password,
            )
            extra = (*extra, f"Authorization: {credentials}")

    # the caller's side

    async def call(
        self, callee: str, phone: TalkPhone, *, caller: str, username: str, password: str
    ) -> Dialog:
        """INVITE `callee` (answering a 407), ACK the 200; the phone is told
        where to send its RTP. SipError if the call was not answered."""
        host = f"{self.server[0]}:{self.server[1]}"
        uri = f"sip:{callee}@{host}"
        call_id, tag = secrets.token_hex(12), secrets.token_hex(6)
        from_, to = f"<sip:{caller}@{host}>;tag={tag}", f"<sip:{callee}@{host}>"
        extra: tuple[str, ...] = (f"Contact: <sip:{caller}@{self.host_port};transport=udp>",)
        offer = sdp_offer(port_of(phone))
        for cseq in (1, 2):
            branch = self._new_branch()
            data = self._request(
                "INVITE",
                uri,
                call_id=call_id,
                from_=from_,
                to=to,
                cseq=cseq,
                branch=branch,
                extra=extra,
                body=offer,
            )
            answer = await self.transact(data, branch, invite=True)
            if answer.status == 407 and cseq == 1:
                # The ACK of a non-2xx response: same branch, the response's To.
                self.send(
                    self._request(
                        "ACK",
                        uri,
                        call_id=call_id,
                        from_=from_,
                        to=answer.get("to"),
                        cseq=cseq,
                        branch=branch,
                    )
                )
                credentials = digest_credentials(
                    answer.get("proxy-authenticate"),
                    method="INVITE",
                    uri=uri,
                    username=username,
                    password=password,
                )
                extra = (*extra, f"Proxy-Authorization: {credentials}")
                continue
            if answer.status != 200:
                raise SipError(f"INVITE {callee}: {answer.start}")
            contact = re.search(r"<([^>]+)>", answer.get("contact"))
            phone.relay = sdp_address(answer.body)
            target = contact.group(1) if contact else uri
            dialog = Dialog(call_id, tag, answer.get("to"), target, cseq, phone)
            self.dialogs[call_id] = dialog
            self._ack(dialog, cseq)
            return dialog
        raise SipError(f"INVITE {callee}: challenged twice")

    def _ack(self, dialog: Dialog, cseq: int) -> None:
        host = f"{self.server[0]}:{self.server[1]}"
        self.send(
            self._request(
                "ACK",
                dialog.target,
                call_id=dialog.call_id,
                from_=f"<sip:{CALLER_NUMBER}@{host}>;tag={dialog.local_tag}",
                to=dialog.to,
                cseq=cseq,
                branch=self._new_branch(),
            )
        )

    async def hangup(self, dialog: Dialog) -> None:
        host = f"{self.server[0]}:{self.server[1]}"
        dialog.cseq += 1
        branch = self._new_branch()
        data = self._request(
            "BYE",
            dialog.target,
            call_id=dialog.call_id,
            from_=f"<sip:{CALLER_NUMBER}@{host}>;tag={dialog.local_tag}",
            to=dialog.to,
            cseq=dialog.cseq,
            branch=branch,
        )
        answer = await self.transact(data, branch, invite=False)
        if answer.status != 200:
            raise SipError(f"BYE: {answer.start}")

    # requests to us: the callee's side, and anything callbridge sends the caller

    def _response(
        self, request: Message, status: int, reason: str, *, tag: str = "", body: str = ""
    ) -> bytes:
        to = request.get("to")
        if tag and ";tag=" not in to:
            to += f";tag={tag}"
        lines = [
            f"SIP/2.0 {status} {reason}",
            *(f"Via: {via}" for via in request.all("via")),
            f"From: {request.get('from')}",
            f"To: {to}",
            f"Call-ID: {request.get('call-id')}",
            f"CSeq: {request.get('cseq')}",
        ]
        if status == 200 and request.method == "INVITE":
            lines.append(f"Contact: <sip:{self.host_port};transport=udp>")
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _on_request(self, request: Message) -> None:
        method, call_id = request.method, request.get("call-id")
        if method == "INVITE":
            known = self.answered.get(call_id)
            if known is not None:
                self.send(known.response)  # a retransmission
                return
            if not self.free_phones:
                self.send(self._response(request, 486, "Busy Here", tag="busy"))
                return
            phone = self.free_phones.pop()
            try:
                phone.relay = sdp_address(request.body)
            except SipError:
                self.send(self._response(request, 488, "Not Acceptable Here", tag="x"))
                return
            tag = secrets.token_hex(6)
            self.send(self._response(request, 180, "Ringing", tag=tag))
            ok = self._response(request, 200, "OK", tag=tag, body=sdp_offer(port_of(phone)))
            incoming = self.answered[call_id] = _Incoming(ok, phone=phone)
            self.send(ok)
            asyncio.get_running_loop().create_task(self._retransmit_until_acked(incoming))
        elif method == "ACK":
            incoming = self.answered.get(call_id)
            if incoming is not None:
                incoming.acked = True
        elif method == "BYE":
            incoming = self.answered.get(call_id)
            if incoming is not None:
                incoming.ended = True
            else:
                self.stats.byes_received += 1  # callbridge hung up on the caller
            self.send(self._response(request, 200, "OK"))
        elif method in ("OPTIONS", "INFO", "UPDATE", "NOTIFY", "CANCEL"):
            self.send(self._response(request, 200, "OK"))
        else:
            self.stats.unexpected.append(request.start)

    async def _retransmit_until_acked(self, incoming: _Incoming) -> None:
        interval, waited = T1, 0.0
        while waited < 64 * T1:
            await asyncio.sleep(interval)
            if incoming.acked or incoming.ended:
                return
            waited += interval
            self.send(incoming.response)
            self.stats.retransmissions += 1
            interval = min(2 * interval, 4.0)


# --- callbridge -----------------------------------------------------------------


async def paced(rate: float, jobs: list[Any]) -> list[Any]:
    """Start the coroutines `rate` per second; their results or exceptions."""
    tasks = []
    started = time.monotonic()
    for n, job in enumerate(jobs):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(job))
    return await asyncio.gather(*tasks, return_exceptions=True)


async def through_callbridge(
    calls: int, seconds: float, rate: float, workdir: Path, *, recording: bool = False
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    settings = {**SETTINGS, "CALLBRIDGE_RECORDING": "true" if recording else "false"}
    server, sip_port, http_port = start_callbridge(workdir, **settings)
    callees = [str(201 + n) for n in range(math.ceil(calls / CALLS_PER_LINE))]
    agents: list[SipAgent] = []
    phones: list[TalkPhone] = []
    target = "callbridge, recording" if recording else "callbridge"
    result: dict[str, Any] = {"target": target, "calls": calls}
    try:
        lines = bench_lines(callees)
        await loop.run_in_executor(None, create_lines, http_port, ADMIN_PASSWORD, lines)
        phones = await open_phones(2 * calls)
        caller_phones, callee_phones = phones[::2], phones[1::2]
        address = ("127.0.0.1", sip_port)
        _, caller = await loop.create_datagram_endpoint(
            lambda: SipAgent(address), local_addr=("127.0.0.1", 0)
        )
        _, callee = await loop.create_datagram_endpoint(
            lambda: SipAgent(address, callee_phones), local_addr=("127.0.0.1", 0)
        )
        agents = [caller, callee]
        for number in callees:
            await callee.register(number, f"callee{number}", LINE_PASSWORD)
        await asyncio.sleep(1.0)
        rss_idle = _rss_kib(server.pid)

        cpu_before, started = _cpu_seconds(server.pid), time.monotonic()
        outcomes = await paced(
            rate,
            [
                caller.call(
                    callees[n % len(callees)],
                    caller_phones[n],
                    caller=CALLER_NUMBER,
                    username=CALLER_USER,
                    password=LINE_PASSWORD,
                )
                for n in range(calls)
            ],
        )
        setup_seconds = time.monotonic() - started
        await asyncio.sleep(0.5)  # the last ACKs reach the callee
        setup_cpu = _cpu_seconds(server.pid) - cpu_before
        dialogs = [o for o in outcomes if isinstance(o, Dialog)]
        failures = [repr(o) for o in outcomes if not isinstance(o, Dialog)]
        for dialog in dialogs:
            dialog.phone.talking = True
        for incoming in callee.answered.values():
            if incoming.acked and incoming.phone is not None:
                incoming.phone.talking = True
        # Each phone must send to callbridge, not straight to the other phone.
        own = {("127.0.0.1", port_of(phone)) for phone in phones}
        talking = [phone for phone in phones if phone.talking]
        direct = sum(tuple(phone.relay) in own for phone in talking)
        result.update(
            {
                "established": len(dialogs),
                "failed_setups": len(failures),
                "first_failures": failures[:3],
                "setup_seconds": round(setup_seconds, 2),
                "callee_acked": sum(i.acked for i in callee.answered.values()),
                "phones_sending_past_callbridge": direct,
            }
        )

        result.update(await talk(phones, seconds, server.pid, tone_packet if recording else packet))
        rss_up = _rss_kib(server.pid)

        cpu_before = _cpu_seconds(server.pid)
        byes = await paced(rate, [caller.hangup(dialog) for dialog in dialogs])
        await asyncio.sleep(0.5)
        teardown_cpu = _cpu_seconds(server.pid) - cpu_before
        result.update(
            {
                "hung_up": sum(b is None for b in byes),
                "failed_hangups": sum(b is not None for b in byes),
                "callee_byes": sum(i.ended for i in callee.answered.values()),
                "calls_ended_by_callbridge": caller.stats.byes_received,
                "sip_retransmissions": caller.stats.retransmissions + callee.stats.retransmissions,
                "server_cpu_ms_per_call_setup_and_teardown": round(
                    1000 * (setup_cpu + teardown_cpu) / max(len(dialogs), 1), 3
                ),
                "server_rss_idle_mib": round(rss_idle / 1024, 1),
                "server_rss_mib": round(rss_up / 1024, 1),
                "server_rss_kib_per_call": round((rss_up - rss_idle) / max(len(dialogs), 1), 1),
            }
        )
    finally:
        for endpoint in [*agents, *phones]:
            if endpoint.transport is not None:
                endpoint.transport.close()
        stop_server(server, result)
    stats = logged_stats(workdir / "callbridge.log")
    if stats is None:
        result["b2bua_stats"] = "missing: no b2bua.stats line in callbridge's log"
    else:
        result["setup_delay_p50_ms"] = stats.get("setup_delay_p50_ms")
        result["setup_delay_p99_ms"] = stats.get("setup_delay_p99_ms")
    if recording:
        # What each phone sent: the talk as the recordings should hold it.
        sent = result.get("packets_sent", 0) / max(2 * result.get("established", 1), 1)
        result.update(check_recordings(workdir, sent * PACKET_INTERVAL))
    return result


def check_recordings(workdir: Path, talk_seconds: float) -> dict[str, Any]:
    """Every answered call's recording: complete (a WAV of the length its
    record says), as long as the call (answer to end, within 0.1 s), and
    the tone on both channels for the whole talk (`talk_seconds`: the
    packets each phone sent, within 0.1 s)."""
    database = sqlite3.connect(workdir / "callbridge.db")
    rows = database.execute(
        "SELECT recording, recording_size, recording_ms, answered_at, ended_at FROM calls"
        " WHERE answered_at IS NOT NULL"
    ).fetchall()
    database.close()
    complete = right_length = whole_talk = 0
    lengths, sounded = [], []
    for relative, size, ms, answered, ended in rows:
        if relative is None or size is None:
            continue
        path = workdir / "recordings" / relative
        with wave.open(str(path)) as read:
            frames = read.getnframes()
            audio = np.frombuffer(read.readframes(frames), "<i2").reshape(-1, 2)
        complete += path.stat().st_size == size == 44 + 4 * frames and frames * 1000 // 8000 == ms
        call = datetime.fromisoformat(ended) - datetime.fromisoformat(answered)
        lengths.append(ms / 1000 - call.total_seconds())
        right_length += abs(lengths[-1]) <= 0.1
        # 20 ms blocks with the tone in them, per channel.
        blocks = audio[: len(audio) // 160 * 160].reshape(-1, 160, 2)
        loud = (np.abs(blocks.astype(np.int32)).max(axis=1) > 8000).sum(axis=0) * 0.02
        sounded.extend(loud.tolist())
        whole_talk += bool(all(abs(seconds - talk_seconds) <= 0.1 for seconds in loud))
    return {
        "talk_seconds_sent": round(talk_seconds, 2),
        "answered_calls": len(rows),
        "recordings_complete": complete,
        "recordings_of_the_calls_length": right_length,
        "recordings_with_the_whole_talk": whole_talk,
        "recording_minus_call_seconds_min_max": [
            round(min(lengths, default=0), 3),
            round(max(lengths, default=0), 3),
        ],
        "recorded_tone_seconds_min_max": [
            round(min(sounded, default=0), 2),
            round(max(sounded, default=0), 2),
        ],
    }


async def bench(calls: int, seconds: float, rate: float) -> None:
    ref = await reference(calls, seconds)
    print(json.dumps(ref), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ours = await through_callbridge(calls, seconds, rate, Path(tmp))
    print(json.dumps(ours), flush=True)

    def delivered_share(result: dict[str, Any]) -> float:
        return float(result["packets_received"]) / max(result["packets_sent"], 1)

    delivered = delivered_share(ours) / max(delivered_share(ref), 1e-9)
    cpu = ours["relay_cpu_percent"] / max(ref["relay_cpu_percent"], 0.1)
    print(
        json.dumps(
            {
                "callbridge_vs_reference_delivered": round(delivered, 4),
                "callbridge_vs_reference_relay_cpu": round(cpu, 2),
            }
        )
    )


async def bench_recording(calls: int, seconds: float, rate: float) -> None:
    """The same calls unrecorded, then recorded: the recorder's cost."""
    runs = []
    for recording in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(
                await through_callbridge(calls, seconds, rate, Path(tmp), recording=recording)
            )
        print(json.dumps(runs[-1]), flush=True)
    plain, recorded = runs
    per_call = "relay_cpu_percent_per_call"
    print(
        json.dumps(
            {
                "recorded_vs_unrecorded_relay_cpu": round(
                    recorded["relay_cpu_percent"] / max(plain["relay_cpu_percent"], 0.1), 2
                ),
                "cpu_percent_per_call_unrecorded": plain[per_call],
                "cpu_percent_per_call_recorded": recorded[per_call],
                "recording_cpu_ms_per_call_second": round(
                    10 * (recorded[per_call] - plain[per_call]), 3
                ),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=100, help="call setups per second")
    parser.add_argument(
        "--recording", action="store_true", help="callbridge unrecorded vs recorded"
    )
    args = parser.parse_args()
    if args.recording:
        uvloop.run(bench_recording(args.calls, args.seconds, args.rate))
    else:
        uvloop.run(bench(args.calls, args.seconds, args.rate))


if __name__ == "__main__":
    main()
