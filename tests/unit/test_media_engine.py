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
from callbridge.media.engine import LATCH_PACKETS, Leg, LocalLeg, LocalMediaSession
from callbridge.media.policy import AllowedNetworks, MediaPolicy, OwnDestination
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


async def nat_call(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]], name: str = "nat"
) -> tuple[LocalMediaSession, LocalLeg, LocalLeg, Phone, Phone]:
    """A call whose caller's SDP names a port it does not send from (NAT)."""
    session = engine.create_session(name)
    behind_nat, callee = await make_phone(), await make_phone()
    leg_a, leg_b = await session.add_leg(), await session.add_leg()
    session.set_remote(leg_a, "127.0.0.1", unused_port())  # what its SDP claims
    session.set_remote(leg_b, *callee.address)
    session.connect(leg_a, leg_b)
    return session, leg_a, leg_b, behind_nat, callee


def run_of(first: int, ssrc: int = 7, count: int = LATCH_PACKETS) -> list[bytes]:
    return [rtp(first + i, ssrc=ssrc) for i in range(count)]


async def test_latches_onto_the_real_source_after_our_sdp_went_out_and_a_run_of_packets(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, leg_b, behind_nat, callee = await nat_call(engine, make_phone)
    session.sdp_sent(leg_a)  # our 200 went out to the caller
    assert not leg_a.latched

    for packet in run_of(1):
        behind_nat.send(packet, leg_a)
    # The run's last packet latches and is the first relayed.
    assert (await callee.receive())[0] == rtp(LATCH_PACKETS)
    assert leg_a.latched and leg_a.remote == behind_nat.address
    callee.send(rtp(9), leg_b)
    assert (await behind_nat.receive())[0] == rtp(9)


async def test_nobody_latches_while_our_sdp_has_not_reached_the_peer(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    """Ringing: the caller has not had our answer, so nothing but its SDP
    address can be its media (the spray of issue 11 came in here)."""
    _, leg_a, leg_b, sprayer, callee = await nat_call(engine, make_phone)
    for packet in run_of(1, count=10):
        sprayer.send(packet, leg_a)
    await _until(lambda: leg_a.stats().rtp.foreign == 10)
    assert not leg_a.latched
    callee.send(rtp(50), leg_b)
    await asyncio.sleep(0.05)
    assert sprayer.inbox.empty()


async def test_the_window_closes_latch_window_seconds_after_our_sdp_went_out(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]], clock: FakeClock
) -> None:
    session, leg_a, _, behind_nat, _ = await nat_call(engine, make_phone)
    session.sdp_sent(leg_a)
    clock.now += engine.latch_window + 0.1
    for packet in run_of(1):
        behind_nat.send(packet, leg_a)
    await _until(lambda: leg_a.stats().rtp.foreign == LATCH_PACKETS)
    assert not leg_a.latched


def foreign_is(leg: LocalLeg, count: int) -> Callable[[], bool]:
    return lambda: leg.stats().rtp.foreign == count


def broken_runs() -> list[list[bytes]]:
    return [
        [rtp(1, ssrc=1), rtp(2, ssrc=2), rtp(3, ssrc=3)],  # a new SSRC each packet
        [rtp(1), rtp(2, payload_type=8), rtp(3)],  # the payload type changes
        [rtp(1), rtp(3), rtp(5)],  # sequence numbers not consecutive
        [rtp(1), rtp(1), rtp(1)],  # the same packet again
    ]


@pytest.mark.parametrize("packets", broken_runs())
async def test_a_source_whose_stream_does_not_stay_the_same_never_latches(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]], packets: list[bytes]
) -> None:
    session, leg_a, _, sprayer, _ = await nat_call(engine, make_phone)
    session.sdp_sent(leg_a)
    for packet in packets:
        sprayer.send(packet, leg_a)
    await _until(lambda: leg_a.stats().rtp.foreign == len(packets))
    assert not leg_a.latched


async def test_a_stranger_interleaving_packets_breaks_a_run_but_cannot_latch_itself(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, _, behind_nat, callee = await nat_call(engine, make_phone)
    stranger = await make_phone()
    session.sdp_sent(leg_a)
    for seq in range(1, 6):
        behind_nat.send(rtp(seq), leg_a)
        await _until(foreign_is(leg_a, 2 * seq - 1))
        stranger.send(rtp(100 + seq, ssrc=666), leg_a)
        await _until(foreign_is(leg_a, 2 * seq))
    assert not leg_a.latched
    for packet in run_of(6):
        behind_nat.send(packet, leg_a)
    assert (await callee.receive())[0] == rtp(5 + LATCH_PACKETS)
    assert leg_a.remote == behind_nat.address


async def test_a_latched_nat_leg_never_moves_to_another_source(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, leg_b, behind_nat, callee = await nat_call(engine, make_phone)
    session.sdp_sent(leg_a)
    for packet in run_of(1):
        behind_nat.send(packet, leg_a)
    await callee.receive()
    stranger = await make_phone()
    session.sdp_sent(leg_a)  # our SDP again (a 200 after a 183): the latch stays
    for packet in run_of(100, ssrc=666, count=10):
        stranger.send(packet, leg_a)
    await _until(lambda: leg_a.stats().rtp.foreign == LATCH_PACKETS - 1 + 10)
    assert leg_a.remote == behind_nat.address
    callee.send(rtp(9), leg_b)
    assert (await behind_nat.receive())[0] == rtp(9)
    assert stranger.inbox.empty()


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


async def test_a_new_remote_address_forgets_the_latch_and_waits_for_our_answer(
    call: Call, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, _, caller, callee = call
    caller.send(rtp(1), leg_a)
    await callee.receive()
    moved = await make_phone()
    session.set_remote(leg_a, "127.0.0.1", unused_port())  # a re-INVITE moved the media
    assert not leg_a.latched
    moved.send(rtp(2), leg_a)
    await _until(lambda: leg_a.stats().rtp.foreign == 1)
    session.sdp_sent(leg_a)  # our 200 to the re-INVITE went out
    for packet in run_of(3):
        moved.send(packet, leg_a)
    assert (await callee.receive())[0] == rtp(2 + LATCH_PACKETS)
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
    session.sdp_sent(leg_a)
    phone.send(rtp(1), leg_a)
    phone.send(b"\x00" * 20, leg_a)  # not part of the run, and does not break it
    for packet in run_of(2, count=LATCH_PACKETS - 1):
        phone.send(packet, leg_a)
    await callee.receive()
    assert leg_a.stats().rtp.malformed == 1 and leg_a.remote == phone.address


async def test_rtcp_is_relayed_between_the_rtcp_ports(call: Call) -> None:
    session, leg_a, leg_b, caller, callee = call
    session.set_remote(leg_b, *callee.address, rtcp_port=callee.address[1])  # one socket
    receiver_report = bytes.fromhex("80c9000100000001")
    caller.send(rtp(1), leg_a)  # RTCP follows the host RTP latched on
    await callee.receive()
    caller.send(receiver_report, leg_a, rtcp=True)
    assert await callee.receive() == (receiver_report, ("127.0.0.1", leg_b.local_address[1] + 1))
    assert leg_a.stats().rtcp.packets_in == 1 and leg_b.stats().rtcp.packets_out == 1


async def test_rtcp_latches_only_on_the_host_its_rtp_stream_latched_on(
    engine: LocalMediaEngine, make_phone: Callable[[], Awaitable[Phone]]
) -> None:
    session, leg_a, leg_b, behind_nat, callee = await nat_call(engine, make_phone)
    session.set_remote(leg_b, *callee.address, rtcp_port=callee.address[1])
    stranger = await make_phone()
    report = bytes.fromhex("80c9000100000001")
    session.sdp_sent(leg_a)
    stranger.send(report, leg_a, rtcp=True)  # before RTP has proved anything
    await _until(lambda: leg_a.stats().rtcp.foreign == 1)
    for packet in run_of(1):
        behind_nat.send(packet, leg_a)
    await callee.receive()
    behind_nat.send(report, leg_a, rtcp=True)  # the NAT's host: the RTP stream's
    assert (await callee.receive())[0] == report
    stranger.send(report, leg_a, rtcp=True)
    await _until(lambda: leg_a.stats().rtcp.foreign == 2)
    assert leg_a.stats().rtcp.packets_in == 1


async def test_an_sdp_naming_the_relays_own_ports_is_refused(call: Call) -> None:
    session, leg_a, leg_b, _, _ = call
    for host, port in [leg_b.local_address, (leg_a.local_address[0], leg_a.local_address[1] + 1)]:
        with pytest.raises(OwnDestination, match="own socket"):
            session.set_remote(leg_a, host, port)
    with pytest.raises(OwnDestination):
        session.set_remote(leg_a, "127.0.0.1", 4000, rtcp_port=leg_b.local_address[1])
    with pytest.raises(OwnDestination, match="unspecified"):
        session.engine.check_remote("::", 4000)


async def test_an_address_outside_the_allowed_networks_is_never_sent_to(
    make_phone: Callable[[], Awaitable[Phone]], clock: FakeClock
) -> None:
    """Only 127.0.0.2 allowed: a phone on 127.0.0.1 is neither sent to at its
    SDP address nor latched on, and a source in the allowed network latches."""
    policy = MediaPolicy(AllowedNetworks.parse("127.0.0.2/32"))
    engine = LocalMediaEngine(
        RtpPortAllocator(free_port_range(PAIRS), host="127.0.0.1"), clock=clock, policy=policy
    )
    try:
        session = engine.create_session("policy")
        refused = await make_phone()
        leg_a, leg_b = await session.add_leg(), await session.add_leg()
        session.set_remote(leg_a, *refused.address)
        session.set_remote(leg_b, "127.0.0.2", unused_port())
        session.connect(leg_a, leg_b)
        assert leg_a.remote is None
        session.sdp_sent(leg_a)
        for packet in run_of(1):
            refused.send(packet, leg_a)
        await _until(lambda: leg_a.stats().rtp.foreign == LATCH_PACKETS)
        assert not leg_a.latched and leg_b.stats().rtp.packets_out == 0
        leg_a.send(rtp(9))
        assert leg_a.stats().rtp.packets_out == 0

        loop = asyncio.get_running_loop()
        transport, allowed = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.2", 0))
        try:
            for packet in run_of(1):
                allowed.send(packet, leg_a)
            await _until(lambda: leg_a.latched)
            leg_a.send(rtp(9))
            assert (await allowed.receive())[0] == rtp(9)
        finally:
            transport.close()
    finally:
        await engine.close()


async def test_behind_nat_only_the_host_the_sip_came_from_may_latch(
    make_phone: Callable[[], Awaitable[Phone]], clock: FakeClock
) -> None:
    """The SDP names a private address (not allowed, never sent to); the
    phone's SIP came from 127.0.0.1. A stranger on 127.0.0.2 with a perfect
    stream, first in the window, is refused; the phone on 127.0.0.1 latches."""
    policy = MediaPolicy(AllowedNetworks.parse("127.0.0.0/8"))
    engine = LocalMediaEngine(
        RtpPortAllocator(free_port_range(PAIRS), host="127.0.0.1"), clock=clock, policy=policy
    )
    loop = asyncio.get_running_loop()
    transport, stranger = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.2", 0))
    try:
        session = engine.create_session("signalled")
        phone, callee = await make_phone(), await make_phone()
        leg_a, leg_b = await session.add_leg(), await session.add_leg()
        session.set_remote(leg_a, "10.0.0.5", 4000, signalling_host="127.0.0.1")
        session.set_remote(leg_b, *callee.address)
        session.connect(leg_a, leg_b)
        assert leg_a.remote is None  # a private address: not allowed
        session.sdp_sent(leg_a)
        for packet in run_of(1, ssrc=666, count=10):
            stranger.send(packet, leg_a)
        await _until(lambda: leg_a.stats().rtp.foreign == 10)
        assert not leg_a.latched
        for packet in run_of(1):
            phone.send(packet, leg_a)
        assert (await callee.receive())[0] == rtp(LATCH_PACKETS)
        assert leg_a.remote == phone.address
    finally:
        transport.close()
        await engine.close()


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


async def test_an_outbound_filter_rewrites_or_drops_what_a_leg_sends(call: Call) -> None:
    _, leg_a, leg_b, caller, callee = call

    def no_events(packet: bytes) -> bytes | None:
        return None if packet[1] & 0x7F == 101 else packet[:-1]

    leg_b.set_outbound(no_events)
    caller.send(rtp(1, payload_type=101, payload=b"\x05\x0a\x00\xa0"), leg_a)
    caller.send(rtp(2), leg_a)
    assert (await callee.receive())[0] == rtp(2)[:-1]
    assert leg_b.stats().rtp.packets_out == 1
    leg_b.send(rtp(3))  # a source's own packets are not filtered
    assert (await callee.receive())[0] == rtp(3)
    callee.send(rtp(4, payload_type=101), leg_b)  # the other direction is not filtered
    assert (await caller.receive())[0] == rtp(4, payload_type=101)
    leg_b.set_outbound(None)
    caller.send(rtp(5), leg_a)
    assert (await callee.receive())[0] == rtp(5)


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


async def test_a_leg_that_sends_only_rtcp_is_alive(
    engine: LocalMediaEngine, call: Call, clock: FakeClock
) -> None:
    """baresip holds with `sendonly` and then sends RTCP alone: the call lives
    while its reports come; when they stop too, it times out."""
    session, leg_a, leg_b, caller, _ = call
    session.set_remote(leg_a, *caller.address, rtcp_port=caller.address[1])
    session.expect_media(leg_b, False)  # the held callee answered recvonly
    report = bytes.fromhex("80c9000100000001")
    for _ in range(4):
        clock.now += 20
        caller.send(report, leg_a, rtcp=True)
        await _until(lambda: leg_a.stats().rtcp.packets_in > 0 and leg_a.idle_for(clock.now) == 0)
        assert engine.check_timeouts() == []
    clock.now += 29
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


async def test_behind_nat_a_phone_silent_at_first_still_latches_from_its_sip_host(
    make_phone: Callable[[], Awaitable[Phone]], clock: FakeClock
) -> None:
    """Narrowed to the SIP's host, the window does not close: a phone that
    says nothing for the first seconds (VAD, mute) is not left deaf."""
    policy = MediaPolicy(AllowedNetworks.parse("127.0.0.0/8"))
    engine = LocalMediaEngine(
        RtpPortAllocator(free_port_range(PAIRS), host="127.0.0.1"), clock=clock, policy=policy
    )
    try:
        session = engine.create_session("silent")
        phone, callee = await make_phone(), await make_phone()
        leg_a, leg_b = await session.add_leg(), await session.add_leg()
        session.set_remote(leg_a, "10.0.0.5", 4000, signalling_host="127.0.0.1")
        session.set_remote(leg_b, *callee.address)
        session.connect(leg_a, leg_b)
        session.sdp_sent(leg_a)
        clock.now += 10 * engine.latch_window
        for packet in run_of(1):
            phone.send(packet, leg_a)
        assert (await callee.receive())[0] == rtp(LATCH_PACKETS)
        assert leg_a.remote == phone.address
    finally:
        await engine.close()


async def test_a_leg_taken_out_of_the_relay_still_times_out(
    engine: LocalMediaEngine, call: Call, clock: FakeClock
) -> None:
    # Put on hold with music: both legs leave the relay, the held one hears
    # the player. A held phone that dies ends the call all the same.
    session, leg_a, leg_b, _, _ = call
    session.disconnect(leg_a)
    session.disconnect(leg_b)
    session.expect_media(leg_a, False)  # the holder: sendonly, then nothing expected
    timed_out: list[MediaSession] = []
    session.on_timeout = timed_out.append
    clock.now += 29
    assert engine.check_timeouts() == []
    clock.now += 1
    assert engine.check_timeouts() == [session]  # the held leg (b) sent nothing for 30 s
    assert timed_out == [session]
