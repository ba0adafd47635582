"""The flood guard: the first thing a PBX on the internet meets is a scanner
(SIPVicious svwar/svcrack, sipsak floods). It counts failed authentications
per source address, blocks a source that fails too often in a window, and
recognises scanners by their User-Agent. Blocked sources are dropped
without an answer. No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """More than `max_failures` failed authentications within `window`
    seconds block the source for `block_for` seconds."""

    max_failures: int = 10
    window: float = 60.0
    block_for: float = 3600.0
    max_tracked_sources: int = 100_000


@dataclass(frozen=True, slots=True)
class Block:
    source: str
    until: float
    reason: str


class FloodGuard:
    """Failure counts and blocks per source host (an IP address as text)."""

    def __init__(self, policy: GuardPolicy | None = None) -> None:
        self.policy = policy or GuardPolicy()
        self._failures: dict[str, deque[float]] = {}
        self._blocks: dict[str, Block] = {}

    def is_blocked(self, source: str, now: float) -> bool:
        block = self._blocks.get(source)
        if block is None:
            return False
        if block.until <= now:
            del self._blocks[source]
            return False
        return True

    def is_scanner(self, user_agent: str | None) -> bool:
        if not user_agent:
            return False
        agent = user_agent.lower()
        return any(name in agent for name in SCANNER_AGENTS)

    def failed(self, source: str, now: float) -> Block | None:
        """Count one failed authentication; returns the block it caused."""
        if self.is_blocked(source, now):
            return self._blocks[source]
        times = self._failures.get(source)
        if times is None:
            if len(self._failures) >= self.policy.max_tracked_sources:
                self._forget_quiet_sources(now)
            times = self._failures[source] = deque()
        times.append(now)
        while times and times[0] <= now - self.policy.window:
            times.popleft()
        if len(times) <= self.policy.max_failures:
            return None
        del self._failures[source]
        return self.block(source, now, f"{len(times)} failed authentications")

    def succeeded(self, source: str) -> None:
        """A source that authenticates starts counting afresh."""
        self._failures.pop(source, None)

    def block(self, source: str, now: float, reason: str) -> Block:
        block = self._blocks[source] = Block(source, now + self.policy.block_for, reason)
        return block

    def unblock(self, source: str) -> bool:
        self._failures.pop(source, None)
        return self._blocks.pop(source, None) is not None

    def blocks(self, now: float) -> list[Block]:
        """The blocks in force, soonest to end first."""
        for source in [s for s, b in self._blocks.items() if b.until <= now]:
            del self._blocks[source]
        return sorted(self._blocks.values(), key=lambda b: b.until)

    def _forget_quiet_sources(self, now: float) -> None:
        # A flood of spoofed sources must not grow memory: drop the counts
        # whose window has passed, and if that is not enough, the oldest.
        horizon = now - self.policy.window
        for source in [s for s, t in self._failures.items() if not t or t[-1] <= horizon]:
            del self._failures[source]
        while len(self._failures) >= self.policy.max_tracked_sources:
            del self._failures[next(iter(self._failures))]
