"""The flood guard: counting failures per source, blocking, scanners."""

from __future__ import annotations

import ipaddress
import logging
import time
from datetime import datetime

import pytest

from callbridge.pbx.guard import Attempt, Block, FloodGuard, GuardPolicy

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
    assert guard.tracked <= 1000


PROVIDER = "127.0.0.2"


def _trusting_provider(policy: GuardPolicy | None = None) -> FloodGuard:
    guard = FloodGuard(policy)
    guard.trust([ipaddress.ip_network(PROVIDER), ipaddress.ip_network("127.0.9.0/24")])
    return guard


@pytest.mark.parametrize("source", [PROVIDER, "127.0.9.1", "127.0.9.254"])
def test_a_provider_address_is_never_blocked(source: str) -> None:
    guard = _trusting_provider(GuardPolicy(max_failures=0))
    assert guard.scanner(source, 0.0) is None
    assert guard.block(source, 0.0, "by hand") is None
    assert guard.failed(source, 1.0) is None
    assert isinstance(guard.reserve(source, "alice", 2.0), Attempt)
    assert not guard.is_blocked(source, 3.0)
    assert guard.blocks(3.0) == []


def test_trusting_a_provider_lifts_the_block_it_already_had() -> None:
    guard = FloodGuard()
    guard.scanner(PROVIDER, 0.0)
    guard.scanner(STRANGER, 0.0)
    guard.trust([ipaddress.ip_network(PROVIDER)])
    assert not guard.is_blocked(PROVIDER, 1.0)
    assert guard.is_blocked(STRANGER, 1.0)


def test_a_scanner_packet_blocks_for_less_than_failed_authentications() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=0, block_for=3600, scanner_block_for=300))
    scanned = guard.scanner(STRANGER, 0.0)
    assert scanned is not None and scanned.until == 300.0
    assert guard.is_blocked(STRANGER, 299.0)
    assert not guard.is_blocked(STRANGER, 300.0)


def test_a_scanner_packet_never_shortens_a_longer_block() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=0, block_for=3600, scanner_block_for=300))
    guard.failed(STRANGER, 0.0)
    guard.scanner(STRANGER, 10.0)
    assert guard.is_blocked(STRANGER, 3000.0)


def test_the_block_table_is_bounded_and_its_eviction_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = FloodGuard(GuardPolicy(max_blocks=100))
    with caplog.at_level(logging.WARNING, "callbridge.pbx"):
        for n in range(2000):
            guard.scanner(f"127.1.{n >> 8}.{n & 255}", now=float(n) / 1000)
    assert len(guard.blocks(now=2.0)) == 100
    assert guard.evicted == 1900
    assert "guard.block_evicted" in caplog.text
    # The newest stay: the table holds the most recent sources.
    assert guard.is_blocked("127.1.7.207", 2.0)


def _fail(guard: FloodGuard, source: str, account: str | None, now: float) -> Block | None:
    """One wrong attempt, verified at once: reserved, then rejected."""
    attempt = guard.reserve(source, account, now)
    return attempt if isinstance(attempt, Block) else guard.rejected(attempt, now)


def test_parallel_attempts_are_refused_once_reservations_reach_the_limit() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=10, account_max_failures=100))
    # Thirty reserved before any is verified, as parallel logins would be.
    outcomes = [guard.reserve(STRANGER, f"user{n}", 0.0) for n in range(30)]
    assert all(isinstance(o, Attempt) for o in outcomes[:11])
    assert all(isinstance(o, Block) and not o.account for o in outcomes[11:])
    assert guard.is_blocked(STRANGER, 1.0)


def test_a_success_hands_back_only_its_own_reservation() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=3, account_max_failures=100))
    for n in range(3):
        assert _fail(guard, STRANGER, f"victim{n}", float(n)) is None
    own = guard.reserve(STRANGER, "mallory", 3.0)
    assert isinstance(own, Attempt)
    guard.succeeded(own)  # a valid login between guesses...
    # ... does not clear the three: the next wrong one blocks.
    assert _fail(guard, STRANGER, "victim3", 4.0) is not None
    assert guard.is_blocked(STRANGER, 5.0)


def test_an_account_guessed_from_many_sources_is_refused_for_a_short_while() -> None:
    guard = FloodGuard(GuardPolicy(account_max_failures=5, account_block_for=300, window=60))
    for n in range(5):
        assert _fail(guard, f"127.0.3.{n}", "alice", float(n)) is None
    refused = _fail(guard, "127.0.3.5", "alice", 5.0)
    assert refused is not None and refused.account and refused.until == 305.0
    again = guard.reserve("127.0.3.99", "alice", 6.0)
    assert isinstance(again, Block) and again.account
    assert isinstance(guard.reserve("127.0.3.99", "bob", 6.0), Attempt)
    assert not guard.is_blocked("127.0.3.99", 6.0)  # the sources are not blocked for it
    assert [b.source for b in guard.account_blocks(100.0)] == ["alice"]
    assert isinstance(guard.reserve("127.0.3.1", "alice", 305.0), Attempt)


def test_where_an_account_signed_in_before_its_block_does_not_reach() -> None:
    # Eleven forged guesses every five minutes would otherwise keep any
    # extension's own phone unregistered for good.
    guard = FloodGuard(GuardPolicy(account_max_failures=2, known_for=10, max_failures=100))
    home = guard.reserve("127.0.3.100", "alice", 0.0)
    assert isinstance(home, Attempt)
    guard.succeeded(home)
    for n in range(3):
        _fail(guard, f"127.0.3.{n}", "alice", 1.0 + n)
    assert isinstance(guard.reserve("127.0.3.99", "alice", 5.0), Block)
    at_home = guard.reserve("127.0.3.100", "alice", 5.0)
    assert isinstance(at_home, Attempt) and at_home.account is None  # not counted
    guard.succeeded(at_home)
    # A known place is forgotten `known_for` after its last success.
    assert isinstance(guard.reserve("127.0.3.100", "alice", 16.0), Block)


def test_known_places_are_bounded() -> None:
    guard = FloodGuard(GuardPolicy(max_known_places=10))
    for n in range(50):
        attempt = guard.reserve(f"127.0.4.{n}", f"user{n}", 0.0)
        assert isinstance(attempt, Attempt)
        guard.succeeded(attempt)
    assert len(guard._known) == 10


def test_a_refused_account_costs_its_source_nothing() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=2, account_max_failures=0))
    _fail(guard, "127.0.3.1", "alice", 0.0)
    for n in range(10):
        assert isinstance(guard.reserve("127.0.3.2", "alice", 1.0 + n), Block)
    assert not guard.is_blocked("127.0.3.2", 20.0)


def test_a_success_clears_its_own_accounts_count_only() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=100, account_max_failures=2))
    for account in ("alice", "bob"):
        _fail(guard, "127.0.3.1", account, 0.0)
        _fail(guard, "127.0.3.2", account, 0.0)
    attempt = guard.reserve("127.0.3.3", "alice", 1.0)
    assert isinstance(attempt, Attempt)
    guard.succeeded(attempt)
    assert _fail(guard, "127.0.3.4", "alice", 2.0) is None
    blocked = _fail(guard, "127.0.3.4", "bob", 2.0)
    assert blocked is not None and blocked.account


def test_long_usernames_tried_cost_little_memory_and_still_count() -> None:
    guard = FloodGuard(GuardPolicy(account_max_failures=1, max_failures=100))
    name = "x" * 60_000
    attempt = guard.reserve(STRANGER, name, 0.0)
    assert isinstance(attempt, Attempt) and attempt.account is not None
    assert len(attempt.account) <= 64
    guard.rejected(attempt, 0.0)
    assert _fail(guard, STRANGER, name, 1.0) is not None
    assert isinstance(guard.reserve(STRANGER, name, 2.0), Block)
    assert isinstance(guard.reserve(STRANGER, name[:-1] + "y", 2.0), Attempt)


def test_an_account_refused_for_guesses_elsewhere_still_serves_its_provider() -> None:
    # A provider's login is known to anyone who has seen its INVITEs: wrong
    # guesses at it from strangers must not cut off the provider's own calls
    # (issue 11: a provider's address is never blocked).
    guard = _trusting_provider(GuardPolicy(account_max_failures=2, max_failures=100))
    for n in range(3):
        _fail(guard, f"127.0.3.{n}", "provider-login", float(n))
    assert isinstance(guard.reserve(STRANGER, "provider-login", 4.0), Block)
    assert isinstance(guard.reserve(PROVIDER, "provider-login", 4.0), Attempt)
    # Nor does the provider's own failing count against the account.
    for n in range(5):
        assert _fail(guard, PROVIDER, "other-login", 5.0 + n) is None
    assert isinstance(guard.reserve(STRANGER, "other-login", 11.0), Attempt)


def test_a_flood_into_full_tables_costs_little_per_packet() -> None:
    # Once the block table is full of blocks still in force, each new forged
    # source used to rescan all of it (0.2 ms a packet at 10,000 blocks): a
    # few thousand packets a second then held the loop that carries the calls.
    guard = FloodGuard(GuardPolicy(max_blocks=10_000, max_tracked_sources=10_000))
    for n in range(10_000):
        guard.scanner(f"10.0.{n >> 8}.{n & 255}", now=0.0)
        guard.failed(f"10.1.{n >> 8}.{n & 255}", now=0.0)
    started = time.perf_counter()
    for n in range(10_000):
        guard.scanner(f"10.2.{n >> 8}.{n & 255}", now=1.0 + n / 10_000)
        guard.failed(f"10.3.{n >> 8}.{n & 255}", now=1.0 + n / 10_000)
    elapsed = time.perf_counter() - started
    assert len(guard.blocks(now=2.0)) == 10_000 and guard.tracked <= 10_000
    assert elapsed < 1.0, f"{elapsed:.2f} s for 20,000 packets into full tables"


# --- what a person reads: the block in the log, the drops in a counter ----------


def logged_blocks(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        getattr(record, "callbridge_fields")  # noqa: B009
        for record in caplog.records
        if record.getMessage() == "guard.blocked" and record.levelno == logging.WARNING
    ]


def test_a_block_is_logged_once_at_warning_with_why_and_for_how_long(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    guard = FloodGuard(GuardPolicy(max_failures=2, window=60, block_for=3600))
    for second in range(3):
        guard.failed(STRANGER, now=float(second))
    guard.failed(STRANGER, now=3.0)  # dropped already: no second line
    before = time.time()
    [block] = logged_blocks(caplog)
    until = datetime.fromisoformat(str(block.pop("until")))
    assert block == {
        "kind": "source",
        "source": STRANGER,
        "reason": "3 failed authentications in 60 s",
        "seconds": 3600,
    }
    assert abs(until.timestamp() - (before + 3600)) < 5


def test_an_accounts_block_names_the_account(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    guard = FloodGuard(GuardPolicy(max_failures=100, account_max_failures=1, window=60))
    for n in range(2):
        attempt = guard.reserve(f"127.0.9.{n}", "alice", now=float(n))
        assert isinstance(attempt, Attempt)
        guard.rejected(attempt, now=float(n))
    [block] = logged_blocks(caplog)
    assert (block["kind"], block["account"], block["seconds"]) == ("account", "alice", 300)


def test_a_flood_of_blocks_is_logged_a_few_lines_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    guard = FloodGuard()
    for n in range(100):
        guard.scanner(f"10.9.0.{n}", now=n / 100)
    guard.scanner("10.9.1.1", now=1.5)
    blocks = logged_blocks(caplog)
    assert len(blocks) == 11
    assert blocks[-1]["unlogged_before"] == 90
    assert guard.stats()["blocks_not_logged"] == 90


def test_requests_dropped_for_a_blocked_source_are_counted() -> None:
    guard = FloodGuard(GuardPolicy(max_failures=0, block_for=100))
    assert not guard.drops(STRANGER, now=0.0)
    guard.failed(STRANGER, now=0.0)
    assert guard.drops(STRANGER, now=1.0) and guard.drops(STRANGER, now=2.0)
    assert not guard.drops("127.0.0.8", now=2.0)
    assert not guard.drops(STRANGER, now=100.0)  # the block ended
    assert guard.stats()["dropped_blocked"] == 2
