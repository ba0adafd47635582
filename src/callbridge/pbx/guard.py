"""The flood guard: the first thing a PBX on the internet meets is a scanner
(SIPVicious svwar/svcrack, sipsak floods). It counts failed authentications
per source address and per account tried, blocks what fails too often in a
window, and recognises scanners by their User-Agent. Blocked sources are
dropped without an answer. Provider addresses are never blocked: a spoofed
packet must not cut a trunk off. No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..logs import log_event

logger = logging.getLogger("callbridge.pbx")

# User-Agent values of well-known SIP scanners and attack tools, matched as
# case-insensitive substrings.
SCANNER_AGENTS = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipsak",
    "sundayddr",
    "iwar",
    "smap",
    "vaxsipuseragent",
    "pplsip",
    "voipbuster",
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A username tried is the attacker's text: longer ones are kept as a digest,
# so 100,000 tracked accounts cannot cost 100,000 SIP messages' worth of memory.
_MAX_ACCOUNT_KEY = 64
# Seconds between two scans of a full table for what has ended: each scan
# reads the whole table, and a flood of new sources must not pay it per packet.
_SCAN_EVERY = 1.0
# Blocks logged at most per second (of each kind); the rest are counted.
_BLOCKS_LOGGED_PER_SECOND = 10


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """More than `max_failures` failed authentications from one source within
    `window` seconds block it for `block_for` seconds; one packet with a
    scanner's User-Agent blocks it for `scanner_block_for` (a UDP source
    address is easily forged, so a single packet earns less). More than
    `account_max_failures` against one account within `window`, from any
    sources, refuse that account for `account_block_for` seconds: short, so
    an attacker can delay its owner but not lock them out for long. A source
    that authenticated as an account within `known_for` seconds is a known
    place of it: the account's block does not refuse it, and its failures
    do not count towards that block (at most `max_known_places` are kept)."""

    max_failures: int = 10
    window: float = 60.0
    block_for: float = 3600.0
    scanner_block_for: float = 300.0
    account_max_failures: int = 10
    account_block_for: float = 300.0
    known_for: float = 86_400.0
    max_known_places: int = 100_000
    max_tracked_sources: int = 100_000
    max_blocks: int = 10_000


@dataclass(frozen=True, slots=True)
class Block:
    """`source` is an address, or an account's name when `account` is set."""

    source: str
    until: float
    reason: str
    account: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """An authentication counted as failed before it is verified; a success
    hands it back with `FloodGuard.succeeded`."""

    source: str
    account: str | None  # the account counted against, None if none is
    at: float
    tried: str | None = None  # the account named, counted or not


class _Tally:
    """Failures in a sliding window per key and the blocks they earn, both
    tables bounded: a flood of forged sources must not grow memory."""

    def __init__(self, *, window: float, max_tracked: int, max_blocks: int, kind: str) -> None:
        self.window = window
        self.max_tracked = max_tracked
        self.max_blocks = max_blocks
        self.kind = kind
        self.times: dict[str, deque[float]] = {}
        self.blocks: dict[str, Block] = {}
        self.evicted = 0
        self._blocks_scanned = self._times_scanned = float("-inf")
        # Blocks not logged, as too many came at once: in all, and since the last line.
        self.unlogged = self._unlogged_since = 0
        self._log_second, self._logged = float("-inf"), 0

    def blocked(self, key: str, now: float) -> Block | None:
        block = self.blocks.get(key)
        if block is not None and block.until <= now:
            del self.blocks[key]
            return None
        return block

    def count(self, key: str, now: float) -> int:
        """Count one failure of `key`; returns the failures in the window."""
        if key not in self.times:
            if len(self.times) >= self.max_tracked:
                self._forget_quiet(now)
            self.times[key] = deque()
        self.times[key].append(now)
        return self.failures(key, now)

    def failures(self, key: str, now: float) -> int:
        """The failures of `key` in the window."""
        times = self.times.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        return len(times)

    def refund(self, key: str, at: float) -> None:
        times = self.times.get(key)
        if times is not None and at in times:
            times.remove(at)

    def clear(self, key: str) -> None:
        self.times.pop(key, None)

    def block(self, key: str, until: float, reason: str, now: float) -> Block:
        self.times.pop(key, None)
        if key not in self.blocks and len(self.blocks) >= self.max_blocks:
            self._make_room(now)
        block = self.blocks[key] = Block(key, until, reason, account=self.kind == "account")
        self._log_block(block, now)
        return block

    def _log_block(self, block: Block, now: float) -> None:
        # Once per block: what is blocked, why, and until when on the wall
        # clock (the guard counts in monotonic time, which nobody can read).
        # A flood of forged sources must not become a flood of log lines: a
        # few a second, and the next line says how many went unlogged.
        if now - self._log_second >= 1.0:
            self._log_second, self._logged = now, 0
        if self._logged >= _BLOCKS_LOGGED_PER_SECOND:
            self.unlogged += 1
            self._unlogged_since += 1
            return
        self._logged += 1
        seconds = block.until - now
        until = datetime.fromtimestamp(time.time() + seconds, UTC)
        unlogged, self._unlogged_since = self._unlogged_since, 0
        log_event(
            logger,
            logging.WARNING,
            "guard.blocked",
            kind=self.kind,
            **{self.kind: block.source[:_MAX_ACCOUNT_KEY]},
            reason=block.reason,
            seconds=round(seconds),
            until=until.isoformat(timespec="seconds").replace("+00:00", "Z"),
            **({"unlogged_before": unlogged} if unlogged else {}),
        )

    def unblock(self, key: str) -> bool:
        self.times.pop(key, None)
        return self.blocks.pop(key, None) is not None

    def in_force(self, now: float) -> list[Block]:
        for key in [k for k, b in self.blocks.items() if b.until <= now]:
            del self.blocks[key]
        return sorted(self.blocks.values(), key=lambda b: b.until)

    def _make_room(self, now: float) -> None:
        if now - self._blocks_scanned >= _SCAN_EVERY:
            self._blocks_scanned = now
            for key in [k for k, b in self.blocks.items() if b.until <= now]:
                del self.blocks[key]
            if len(self.blocks) < self.max_blocks:
                return
        # The oldest block goes: it has served the longest.
        key = next(iter(self.blocks))
        evicted = self.blocks.pop(key)
        self.evicted += 1
        # Once, then every thousandth: a flood must not become a log flood.
        if self.evicted == 1 or self.evicted % 1000 == 0:
            log_event(
                logger,
                logging.WARNING,
                "guard.block_evicted",
                kind=self.kind,
                source=evicted.source,
                reason=evicted.reason,
                evicted=self.evicted,
                max_blocks=self.max_blocks,
            )

    def _forget_quiet(self, now: float) -> None:
        # Drop the counts whose window has passed, and if that is not
        # enough, the oldest.
        if now - self._times_scanned >= _SCAN_EVERY:
            self._times_scanned = now
            horizon = now - self.window
            for key in [k for k, t in self.times.items() if not t or t[-1] <= horizon]:
                del self.times[key]
        while len(self.times) >= self.max_tracked:
            del self.times[next(iter(self.times))]


class FloodGuard:
    """Failure counts and blocks per source host (an IP address as text) and
    per account (the username tried)."""

    def __init__(self, policy: GuardPolicy | None = None) -> None:
        self.policy = policy = policy or GuardPolicy()
        self._sources = _Tally(
            window=policy.window,
            max_tracked=policy.max_tracked_sources,
            max_blocks=policy.max_blocks,
            kind="source",
        )
        self._accounts = _Tally(
            window=policy.window,
            max_tracked=policy.max_tracked_sources,
            max_blocks=policy.max_blocks,
            kind="account",
        )
        self._trusted: tuple[IPNetwork, ...] = ()
        # (account, source) -> until when the source is a known place of it;
        # oldest first, so the first entry is the one to drop when full.
        self._known: dict[tuple[str, str], float] = {}
        # Requests dropped unanswered because their source was blocked.
        self.dropped_blocked = 0

    def stats(self) -> dict[str, int]:
        """Counters for the shutdown log and the blocks API."""
        return {
            "dropped_blocked": self.dropped_blocked,
            "blocks_evicted": self.evicted,
            "blocks_not_logged": self._sources.unlogged + self._accounts.unlogged,
            "tracked": self.tracked,
        }

    @property
    def evicted(self) -> int:
        """Blocks dropped early to keep the table within `max_blocks`."""
        return self._sources.evicted + self._accounts.evicted

    @property
    def tracked(self) -> int:
        """Sources and accounts whose failures are being counted."""
        return len(self._sources.times) + len(self._accounts.times)

    def trust(self, networks: Iterable[IPNetwork]) -> None:
        """Never block these networks (the providers' addresses); blocks they
        already have are lifted."""
        self._trusted = tuple(networks)
        for block in list(self._sources.blocks.values()):
            if self.is_trusted(block.source):
                self._sources.unblock(block.source)

    def is_trusted(self, source: str) -> bool:
        if not self._trusted:
            return False
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def is_blocked(self, source: str, now: float) -> bool:
        return self._sources.blocked(source, now) is not None

    def drops(self, source: str, now: float) -> bool:
        """Whether a request from `source` goes unanswered, as the source is
        blocked; each one dropped is counted in `dropped_blocked`."""
        if not self.is_blocked(source, now):
            return False
        self.dropped_blocked += 1
        return True

    def is_scanner(self, user_agent: str | None) -> bool:
        if not user_agent:
            return False
        agent = user_agent.lower()
        return any(name in agent for name in SCANNER_AGENTS)

    def scanner(self, source: str, now: float) -> Block | None:
        """A packet from `source` carried a scanner's User-Agent."""
        until = now + self.policy.scanner_block_for
        return self._block(source, now, until, "scanner User-Agent")

    def reserve(self, source: str, account: str | None, now: float) -> Attempt | Block:
        """Count an authentication as failed before it is verified, so that
        parallel attempts cannot all pass the check. Returns the block that
        refuses it instead when the source or the account is blocked, or
        when the attempts in flight already are one more than a block needs.
        A refused account costs its source nothing: its owner's phone,
        retrying, must not get its address blocked."""
        if account is not None and len(account) > _MAX_ACCOUNT_KEY:
            account = hashlib.sha256(account.encode(errors="replace")).hexdigest()
        if self.is_trusted(source):
            # A provider's address is never refused, not even by its account's
            # block: anyone may guess at its login and earn one.
            return Attempt(source, None, now)
        # The owner's phone, where it signed in before, is not held back by
        # strangers guessing at its account from elsewhere.
        counted = None if account is None or self._is_known(account, source, now) else account
        block = self._sources.blocked(source, now) or (
            self._accounts.blocked(counted, now) if counted is not None else None
        )
        if block is not None:
            return block
        if self._sources.count(source, now) > self.policy.max_failures + 1:
            return self._block_source(source, now)
        limit = self.policy.account_max_failures + 1
        if counted is not None and self._accounts.count(counted, now) > limit:
            return self._block_account(counted, now)
        return Attempt(source, counted, now, account)

    def rejected(self, attempt: Attempt, now: float) -> Block | None:
        """The attempt was wrong: its failure stays counted; returns the
        block it earned, of its source or its account."""
        source, account = attempt.source, attempt.account
        if self.is_trusted(source):
            return None
        if self._sources.failures(source, now) > self.policy.max_failures:
            return self._block_source(source, now)
        limit = self.policy.account_max_failures
        if account is not None and self._accounts.failures(account, now) > limit:
            return self._block_account(account, now)
        return None

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt was right: its own failure is handed back, and its
        account counts afresh. Other failures of its source stay counted, so
        one valid account does not let its holder guess the others'."""
        self._sources.refund(attempt.source, attempt.at)
        if attempt.account is not None:
            self._accounts.clear(attempt.account)
        if attempt.tried is not None:
            self._remember(attempt.tried, attempt.source, attempt.at)

    def failed(self, source: str, now: float) -> Block | None:
        """Count one failure of `source` that names no account (a stranger
        posing as a provider); returns the block it caused."""
        attempt = self.reserve(source, None, now)
        return attempt if isinstance(attempt, Block) else self.rejected(attempt, now)

    def block(self, source: str, now: float, reason: str) -> Block | None:
        """Block `source` for the policy's `block_for`, unless it is trusted."""
        return self._block(source, now, now + self.policy.block_for, reason)

    def unblock(self, source: str) -> bool:
        return self._sources.unblock(source)

    def unblock_account(self, account: str) -> bool:
        return self._accounts.unblock(account)

    def blocks(self, now: float) -> list[Block]:
        """The blocks of sources in force, soonest to end first."""
        return self._sources.in_force(now)

    def account_blocks(self, now: float) -> list[Block]:
        """The accounts refused for now, soonest to end first."""
        return self._accounts.in_force(now)

    def _is_known(self, account: str, source: str, now: float) -> bool:
        until = self._known.get((account, source))
        return until is not None and until > now

    def _remember(self, account: str, source: str, at: float) -> None:
        key = (account, source)
        self._known.pop(key, None)  # to the end: the newest is dropped last
        self._known[key] = at + self.policy.known_for
        if len(self._known) > self.policy.max_known_places:
            del self._known[next(iter(self._known))]

    def _block_source(self, source: str, now: float) -> Block:
        failures = self._sources.failures(source, now)
        until = now + self.policy.block_for
        return self._sources.block(source, until, self._failures_reason(failures), now)

    def _block_account(self, account: str, now: float) -> Block:
        failures = self._accounts.failures(account, now)
        until = now + self.policy.account_block_for
        return self._accounts.block(account, until, self._failures_reason(failures), now)

    def _failures_reason(self, failures: int) -> str:
        return f"{failures} failed authentications in {self.policy.window:g} s"

    def _block(self, source: str, now: float, until: float, reason: str) -> Block | None:
        if self.is_trusted(source):
            return None
        current = self._sources.blocked(source, now)
        if current is not None and current.until >= until:
            return current  # a short block never shortens a long one
        return self._sources.block(source, until, reason, now)
