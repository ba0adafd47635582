"""The in-process media engine with real UDP sockets on loopback: two phones
(plain datagram endpoints) talk through a session; only the clock is fake."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest

from callbridge.media import (
    LocalMediaEngine,
    MediaError,
    MediaSession,
    PortsExhausted,
    RtpPacket,
    RtpPortAllocator,
    TelephoneEvent,
)
from callbridge.media.engine import Leg, LocalLeg, LocalMediaSession
from tests.unit.test_media_ports import free_port_range

TIMEOUT = 2.0
PAIRS = 4


def rtp(seq: int, payload_type: int = 0, payload: bytes = b"\xff" * 160, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type, seq, seq * 160, ssrc, payload=payload).to_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Phone(asyncio.DatagramProtocol):
    """A peer that sends datagrams and queues what it receives."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.put_nowait((data, (addr[0], addr[1])))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, data: bytes, leg: Leg, *, rtcp: bool = False) -> None:
        assert self.transport is not None
        host, port = leg.local_address
        self.transport.sendto(data, ("127.0.0.1" if host == "0.0.0.0" else host, port + rtcp))

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.inbox.get(), TIMEOUT)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clock: FakeClock) -> AsyncIterator[LocalMediaEngine]:
    ports = RtpPortAllocator(free_port_range(PAIRS), host="127.0.0.1")
    engine = LocalMediaEngine(ports, clock=clock, rtp_timeout=30.0)
    yield engine
    await engine.close()
    assert ports.in_use == 0


@pytest.fixture
async def make_phone() -> AsyncIterator[Callable[[], Awaitable[Phone]]]:
    phones: list[Phone] = []

    async def make() -> Phone:
        loop = asyncio.get_running_loop()
        _, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
        phones.append(phone)
        return phone

    yield make
    for phone in phones:
        if phone.transport is not None:
            phone.transport.close()


Call = tuple[LocalMediaSession, LocalLeg, LocalLeg, Phone, Phone]


@pytest.fixture
async def call(engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]) -> Call:
    """Caller and callee phones anchored through one session, legs connected."""
    session = engine.create_session("call-1")
    caller, callee = await make_phone(), await make_phone()
    leg_a, leg_b = await session.add_leg("caller"), await session.add_leg("callee")
    session.set_remote(leg_a, *caller.address, {0: "PCMU", 8: "PCMA", 101: "telephone-event"})
    session.set_remote(leg_b, *callee.address, {0: "PCMU", 8: "PCMA", 101: "telephone-event"})
    session.connect(leg_a, leg_b)
    return session, leg_a, leg_b, caller, callee


def unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_relays_rtp_both_ways_unchanged(call: Call) -> None:
    _, leg_a, leg_b, caller, callee = call
    for seq in range(3):
        caller.send(rtp(seq, ssrc=1), leg_a)
        assert await callee.receive() == (rtp(seq, ssrc=1), leg_b.local_address)
        callee.send(rtp(100 + seq, payload_type=8, ssrc=2), leg_b)
        assert await caller.receive() == (
            rtp(100 + seq, payload_type=8, ssrc=2),
            leg_a.local_address,
        )
    a, b = leg_a.stats().rtp, leg_b.stats().rtp
    assert (a.packets_in, a.packets_out, b.packets_in, b.packets_out) == (3, 3, 3, 3)
    assert a.bytes_in == b.bytes_out == 3 * 172
    assert a.dropped == b.dropped == 0


async def test_the_engine_satisfies_the_media_engine_interface(engine: LocalMediaEngine) -> None:
    from callbridge.media import MediaEngine

    generic: MediaEngine = engine
    session: MediaSession = generic.create_session("typed")
    leg = await session.add_leg()
    assert leg.name == "leg1" and leg.local_address[1] % 2 == 0
    await session.close()


async def test_latches_onto_the_real_source_when_the_sdp_port_differs(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session = engine.create_session("nat")
    behind_nat, callee = await make_phone(), await make_phone()
    leg_a, leg_b = await session.add_leg(), await session.add_leg()
    session.set_remote(leg_a, "127.0.0.1", unused_port())  # what its SDP claims
    session.set_remote(leg_b, *callee.address)
    session.connect(leg_a, leg_b)
    assert not leg_a.latched

    behind_nat.send(rtp(1), leg_a)
    await callee.receive()
    assert leg_a.latched and leg_a.remote == behind_nat.address
    callee.send(rtp(2), leg_b)
    assert (await behind_nat.receive())[0] == rtp(2)


async def test_a_stranger_sending_after_latching_is_ignored(
    call: Call, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    _, leg_a, leg_b, caller, callee = call
    caller.send(rtp(1), leg_a)
    await callee.receive()
    stranger = await make_phone()
    stranger.send(rtp(666, ssrc=666), leg_a)
    caller.send(rtp(2), leg_a)
    assert (await callee.receive())[0] == rtp(2)  # the stranger's packet never arrived
    assert leg_a.stats().rtp.foreign == 1
    callee.send(rtp(3), leg_b)
    assert (await caller.receive())[0] == rtp(3)  # media not diverted to the stranger
    assert stranger.inbox.empty()
    assert leg_a.remote == caller.address


async def test_after_the_latch_window_only_the_sdp_address_is_accepted(
    call: Call, clock: FakeClock, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, _, caller, callee = call
    clock.now += session.engine.latch_window + 0.1
    stranger = await make_phone()
    stranger.send(rtp(666), leg_a)
    caller.send(rtp(1), leg_a)  # from the SDP address: latches after the window too
    assert (await callee.receive())[0] == rtp(1)
    assert leg_a.stats().rtp.foreign == 1
    assert leg_a.remote == caller.address


async def test_a_new_remote_address_forgets_the_latch(
    call: Call, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, _, caller, callee = call
    caller.send(rtp(1), leg_a)
    await callee.receive()
    moved = await make_phone()
    session.set_remote(leg_a, "127.0.0.1", unused_port())  # a re-INVITE moved the media
    assert not leg_a.latched
    moved.send(rtp(2), leg_a)
    assert (await callee.receive())[0] == rtp(2)
    assert leg_a.remote == moved.address


async def test_the_same_remote_address_keeps_the_latch(call: Call) -> None:
    session, leg_a, _, caller, callee = call
    caller.send(rtp(1), leg_a)
    await callee.receive()
    session.set_remote(leg_a, *caller.address)  # re-INVITE for hold: same address
    assert leg_a.latched


async def test_telephone_event_packets_pass_through_intact(call: Call) -> None:
    _, leg_a, _, caller, callee = call
    events = [TelephoneEvent(5, end=end, volume=10, duration=d) for end, d in [(0, 160), (1, 800)]]
    for seq, event in enumerate(events):
        packet = RtpPacket(101, seq, 8000, 99, payload=event.to_bytes(), marker=seq == 0)
        caller.send(packet.to_bytes(), leg_a)
        data, _ = await callee.receive()
        assert data == packet.to_bytes()
        assert TelephoneEvent.parse(RtpPacket.parse(data).payload) == event


async def test_malformed_and_short_packets_are_dropped_and_counted(call: Call) -> None:
    _, leg_a, _, caller, callee = call
    caller.send(rtp(1), leg_a)
    await callee.receive()
    for junk in (b"\x00", b"\x80", rtp(2)[:11], b"\x40" + rtp(2)[1:], b"GET / HTTP/1.0\r\n\r\n"):
        caller.send(junk, leg_a)
    caller.send(rtp(3), leg_a)
    assert (await callee.receive())[0] == rtp(3)
    stats = leg_a.stats().rtp
    assert stats.malformed == 5 and stats.packets_in == 2


async def test_malformed_packets_cannot_latch(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session = engine.create_session("junk")
    phone, callee = await make_phone(), await make_phone()
    leg_a, leg_b = await session.add_leg(), await session.add_leg()
    session.set_remote(leg_a, "127.0.0.1", unused_port())
    session.set_remote(leg_b, *callee.address)
    session.connect(leg_a, leg_b)
    phone.send(b"\x00" * 20, leg_a)
    phone.send(rtp(1), leg_a)
    await callee.receive()
    assert leg_a.stats().rtp.malformed == 1 and leg_a.remote == phone.address


async def test_rtcp_is_relayed_between_the_rtcp_ports(call: Call) -> None:
    session, leg_a, leg_b, caller, callee = call
    session.set_remote(leg_b, *callee.address, rtcp_port=callee.address[1])  # one socket
    receiver_report = bytes.fromhex("80c9000100000001")
    caller.send(receiver_report, leg_a, rtcp=True)
    assert await callee.receive() == (receiver_report, ("127.0.0.1", leg_b.local_address[1] + 1))
    assert leg_a.stats().rtcp.packets_in == 1 and leg_b.stats().rtcp.packets_out == 1
    assert leg_a.stats().rtp.packets_in == 0


async def test_packets_on_an_unconnected_leg_are_counted_not_sent(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session = engine.create_session("alone")
    phone = await make_phone()
    leg = await session.add_leg()
    session.set_remote(leg, *phone.address)
    phone.send(rtp(1), leg)
    phone.send(rtp(2), leg)
    await _until(lambda: leg.stats().rtp.packets_in == 2)
    assert leg.stats().rtp.packets_out == 0


async def test_a_tap_sees_each_packet_and_a_broken_tap_does_not_stop_the_relay(
    call: Call,
) -> None:
    _, leg_a, _, caller, callee = call
    seen: list[tuple[str, bytes]] = []

    def record(leg: Leg, packet: bytes) -> None:
        seen.append((leg.name, packet))

    def broken(leg: Leg, packet: bytes) -> None:
        raise RuntimeError("tap bug")

    leg_a.add_tap(record)
    leg_a.add_tap(broken)
    for seq in range(3):
        caller.send(rtp(seq), leg_a)
        assert (await callee.receive())[0] == rtp(seq)
    assert seen == [("caller", rtp(seq)) for seq in range(3)]
    assert leg_a.stats().rtp.errors == 3
    leg_a.remove_tap(broken)
    caller.send(rtp(9), leg_a)
    await callee.receive()
    assert leg_a.stats().rtp.errors == 3 and len(seen) == 4


async def test_a_source_sends_into_a_leg(call: Call) -> None:
    _, leg_a, _, caller, _ = call
    leg_a.send(rtp(42))
    assert (await caller.receive())[0] == rtp(42)


async def test_idle_time_counts_from_the_last_packet_with_an_injected_clock(
    call: Call, clock: FakeClock
) -> None:
    session, leg_a, leg_b, caller, callee = call
    clock.now += 10
    assert session.idle_for(clock.now) == 10
    caller.send(rtp(1), leg_a)
    callee.send(rtp(1), leg_b)
    await caller.receive()
    await callee.receive()
    assert session.idle_for(clock.now) == 0
    clock.now += 5
    caller.send(rtp(2), leg_a)
    await callee.receive()
    assert leg_a.idle_for(clock.now) == 0
    assert leg_b.idle_for(clock.now) == 5
    assert session.idle_for(clock.now) == 5  # the most silent leg decides


async def test_on_timeout_runs_once_when_media_stops(
    engine: LocalMediaEngine, call: Call, clock: FakeClock
) -> None:
    session, _, leg_b, caller, callee = call
    timed_out: list[MediaSession] = []
    session.on_timeout = timed_out.append
    clock.now += 29
    assert engine.check_timeouts() == []
    callee.send(rtp(1), leg_b)  # the callee keeps talking; the caller's phone vanished
    await caller.receive()
    clock.now += 1
    assert engine.check_timeouts() == [session]
    assert timed_out == [session]
    clock.now += 5
    assert engine.check_timeouts() == []
    assert timed_out == [session]


async def test_a_leg_on_hold_does_not_time_out_and_counts_again_from_its_resume(
    engine: LocalMediaEngine, call: Call, clock: FakeClock
) -> None:
    session, leg_a, leg_b, caller, callee = call
    session.expect_media(leg_b, False)  # the callee was put on hold: recvonly
    clock.now += 100
    caller.send(rtp(1), leg_a)
    await callee.receive()
    assert engine.check_timeouts() == []
    session.expect_media(leg_b, True)  # resumed: its silence counts from now
    clock.now += 29
    caller.send(rtp(2), leg_a)
    await callee.receive()
    assert engine.check_timeouts() == []
    clock.now += 1
    assert engine.check_timeouts() == [session]


async def test_legs_not_yet_connected_do_not_time_out(
    engine: LocalMediaEngine, clock: FakeClock
) -> None:
    session = engine.create_session("ringing")
    await session.add_leg()
    clock.now += 1000
    assert session.idle_for(clock.now) == 0
    assert engine.check_timeouts() == []


async def test_the_single_periodic_check_drives_on_timeout(
    clock: FakeClock, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    ports = RtpPortAllocator(free_port_range(2), host="127.0.0.1")
    fired = asyncio.Event()
    engine = LocalMediaEngine(
        ports, clock=clock, rtp_timeout=30, check_interval=0.01, on_timeout=lambda s: fired.set()
    )
    try:
        session = engine.create_session("periodic")
        a, b = await session.add_leg(), await session.add_leg()
        session.connect(a, b)
        clock.now += 31
        await asyncio.wait_for(fired.wait(), TIMEOUT)
    finally:
        await engine.close()
    assert ports.in_use == 0


async def test_close_releases_the_ports_and_forgets_the_session(
    engine: LocalMediaEngine, call: Call
) -> None:
    session, leg_a, leg_b, _, _ = call
    assert engine.ports.in_use == 2
    await session.close()
    await session.close()  # idempotent
    assert engine.ports.in_use == 0 and "call-1" not in engine.sessions
    for leg in (leg_a, leg_b):
        for port in (leg.local_address[1], leg.local_address[1] + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))  # free again
    with pytest.raises(MediaError, match="closed"):
        await session.add_leg()


async def test_an_exhausted_range_refuses_a_leg_and_refills_when_a_call_ends(
    engine: LocalMediaEngine,
) -> None:
    first = engine.create_session("first")
    for _ in range(PAIRS):
        await first.add_leg()
    second = engine.create_session("second")
    with pytest.raises(PortsExhausted):
        await second.add_leg()
    await first.close()
    assert engine.ports.available == PAIRS
    await second.add_leg()


async def test_a_leg_of_another_session_is_refused(call: Call, engine: LocalMediaEngine) -> None:
    _, leg_a, _, _, _ = call
    other = engine.create_session("other")
    leg = await other.add_leg()
    with pytest.raises(MediaError, match="not a leg"):
        other.connect(leg, leg_a)
    with pytest.raises(MediaError, match="itself"):
        other.connect(leg, leg)


async def test_bad_remote_addresses_and_duplicates_are_refused(call: Call) -> None:
    session, leg_a, _, _, _ = call
    with pytest.raises(MediaError, match="not an IP"):
        session.set_remote(leg_a, "phone.example.com", 4000)
    with pytest.raises(MediaError, match="out of range"):
        session.set_remote(leg_a, "127.0.0.1", 65535)
    with pytest.raises(MediaError, match="already has a leg"):
        await session.add_leg("caller")
    with pytest.raises(MediaError, match="already has a media session"):
        session.engine.create_session("call-1")


async def test_connect_moves_an_edge(
    call: Call, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, leg_b, caller, _ = call
    third_phone = await make_phone()
    leg_c = await session.add_leg("transfer-target")
    session.set_remote(leg_c, *third_phone.address)
    session.connect(leg_a, leg_c)
    assert leg_b.peer is None and leg_a.peer is leg_c
    caller.send(rtp(1), leg_a)
    assert (await third_phone.receive())[0] == rtp(1)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.005)
