"""The flood guard: counting failures per source, blocking, scanners."""

from __future__ import annotations

import pytest

from callbridge.pbx.guard import FloodGuard, GuardPolicy

STRANGER = "127.0.0.66"


def test_more_failures_than_allowed_in_the_window_block_the_source() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=10, window=60, block_for=3600))
    for second in range(10):
        assert guard.failed(STRANGER, now=float(second)) is None
    block = guard.failed(STRANGER, now=10.0)
    assert block is not None and block.until == 3610.0
    assert guard.is_blocked(STRANGER, now=3609.9)
    assert not guard.is_blocked(STRANGER, now=3610.0)


def test_failures_spread_wider_than_the_window_never_block() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=3, window=60))
    for minute in range(20):
        assert guard.failed(STRANGER, now=minute * 30.0) is None


def test_success_resets_the_count() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=2, window=60))
    guard.failed(STRANGER, 0.0)
    guard.failed(STRANGER, 1.0)
    guard.succeeded(STRANGER)
    assert guard.failed(STRANGER, 2.0) is None
    assert guard.failed(STRANGER, 3.0) is None


def test_blocks_are_listed_and_an_admin_can_lift_them() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=0, block_for=100))
    guard.failed("127.0.0.7", 0.0)
    guard.failed("127.0.0.8", 5.0)
    assert [b.source for b in guard.blocks(now=10.0)] == ["127.0.0.7", "127.0.0.8"]
    assert guard.unblock("127.0.0.7")
    assert not guard.unblock("127.0.0.7")
    assert [b.source for b in guard.blocks(now=10.0)] == ["127.0.0.8"]
    assert guard.blocks(now=105.0) == []


def test_one_source_does_not_block_another() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=1))
    guard.failed("127.0.0.7", 0.0)
    guard.failed("127.0.0.7", 0.1)
    assert guard.is_blocked("127.0.0.7", 1.0)
    assert not guard.is_blocked("127.0.0.8", 1.0)


@pytest.mark.parametrize(
    ("agent", "scanner"),
    [
        ("friendly-scanner", True),
        ("sipvicious 0.3.4", True),
        ("SIPVicious", True),
        ("sipcli/v1.8", True),
        ("Yealink SIP-T46U 108.86.0.45", False),
        ("baresip v1.0.0", False),
        (None, False),
    ],
)
def test_scanners_are_known_by_user_agent(agent: str | None, scanner: bool) -> None:
    assert FloodGuard().is_scanner(agent) is scanner


def test_a_flood_of_sources_keeps_memory_bounded() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=5, max_tracked_sources=1000))
    for n in range(50_000):
        guard.failed(f"127.{n >> 16}.{(n >> 8) & 255}.{n & 255}", now=float(n) / 1000)
    assert len(guard._failures) <= 1000
