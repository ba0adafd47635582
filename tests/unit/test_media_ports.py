"""The RTP port allocator: even RTP ports, RTCP on +1, exhaustion and refill."""

from __future__ import annotations

import itertools
import random
import socket
from pathlib import Path

import pytest

from callbridge.media import PortRange, PortRangeError, PortsExhausted, RtpPortAllocator


def free_port_range(pairs: int) -> PortRange:
    """A range of `pairs` RTP/RTCP pairs on 127.0.0.1 that is free right now,
    above the kernel's ephemeral ports: no socket bound to port 0 lands in
    it (a test's own phone, or another process's), nor does a fixed range of
    the integration tests (tests/integration/conftest.py)."""
    low = _ephemeral_ports_end() + 1
    low += low % 2  # RTP on the even ports
    if low + 2 * pairs > 65536:
        raise RuntimeError(f"no room for {pairs} port pairs above the ephemeral ports")
    for _ in range(100):
        first = random.randrange(low, 65536 - 2 * pairs + 1, 2)
        probes = []
        try:
            for port in range(first, first + 2 * pairs):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return PortRange(first, first + 2 * pairs - 1)
    raise RuntimeError("no free UDP port range on 127.0.0.1")


def _ephemeral_ports_end() -> int:
    """The last of the ports the kernel picks for a socket bound to port 0."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 60999  # Linux's default


@pytest.mark.parametrize(
    ("text", "ports"),
    [
        ("10000-20000", range(10000, 20000, 2)),
        ("10001-10006", range(10002, 10006, 2)),
        (" 30000-30001 ", range(30000, 30001, 2)),
    ],
)
def test_port_range_parses_even_rtp_ports_with_room_for_rtcp(text: str, ports: range) -> None:
    assert PortRange.parse(text).rtp_ports() == ports


@pytest.mark.parametrize("text", ["", "abc", "10000-", "20000-10000", "0-10", "70000-70010", "7-7"])
def test_port_range_refuses_unusable_text(text: str) -> None:
    with pytest.raises(PortRangeError) as caught:
        PortRange.parse(text)
    assert caught.value.problem


def test_allocate_binds_an_even_rtp_port_and_the_next_for_rtcp() -> None:
    allocator = RtpPortAllocator(free_port_range(2), host="127.0.0.1")
    pair = allocator.allocate()
    try:
        assert pair.port % 2 == 0
        assert pair.rtp.getsockname() == ("127.0.0.1", pair.port)
        assert pair.rtcp.getsockname() == ("127.0.0.1", pair.port + 1)
        assert (allocator.in_use, allocator.available) == (1, 1)
    finally:
        allocator.release(pair)
    assert pair.rtp.fileno() == -1 and pair.rtcp.fileno() == -1
    assert (allocator.in_use, allocator.available) == (0, 2)


def test_exhausted_range_raises_a_clear_error_and_release_refills_it() -> None:
    ports = free_port_range(3)
    allocator = RtpPortAllocator(ports, host="127.0.0.1")
    pairs = [allocator.allocate() for _ in range(3)]
    assert sorted(p.port for p in pairs) == list(ports.rtp_ports())
    with pytest.raises(PortsExhausted, match=rf"{ports}.*3 of 3 pairs in use"):
        allocator.allocate()
    allocator.release(pairs[1])
    allocator.release(pairs[1])  # idempotent
    again = allocator.allocate()
    assert again.port == pairs[1].port
    for pair in (pairs[0], pairs[2], again):
        allocator.release(pair)
    assert allocator.available == 3


def test_a_port_held_by_another_process_is_skipped() -> None:
    ports = free_port_range(2)
    allocator = RtpPortAllocator(ports, host="127.0.0.1")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", ports.first + 1))  # the first pair's RTCP port
    try:
        pair = allocator.allocate()
        assert pair.port == ports.first + 2
        with pytest.raises(PortsExhausted, match="1 held by other processes"):
            allocator.allocate()
        allocator.release(pair)
    finally:
        squatter.close()


def test_allocations_are_not_sequential_and_the_whole_range_is_still_usable() -> None:
    """Issue 11: ports handed out in order let a stranger spray the next call's."""
    ports = free_port_range(64)
    allocator = RtpPortAllocator(ports, host="127.0.0.1")
    pairs = [allocator.allocate() for _ in range(64)]
    try:
        taken = [pair.port for pair in pairs]
        assert sorted(taken) == list(ports.rtp_ports())  # every pair, once
        steps = [b - a for a, b in itertools.pairwise(taken)]
        # In order, every step would be +2; at random, 63 steps of +2 in a
        # row happen with probability about 64!^-1.
        assert steps.count(2) < 32
        with pytest.raises(PortsExhausted):
            allocator.allocate()
    finally:
        for pair in pairs:
            allocator.release(pair)
    assert allocator.available == 64


def test_a_released_pair_can_be_picked_again_and_picks_spread_over_the_range() -> None:
    allocator = RtpPortAllocator(free_port_range(8), host="127.0.0.1")
    seen: set[int] = set()
    for _ in range(200):
        pair = allocator.allocate()
        seen.add(pair.port)
        allocator.release(pair)
    assert len(seen) == 8  # each of 8 pairs missed 200 times: (7/8)^200, never
