"""The garbage collector's passes, timed: each stops the event loop, so how
many there are and how long the longest took is logged at shutdown
(`sip.stats`) beside the overload counters."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

GENERATIONS = 3


class CollectorPauses:
    """Counts and times every pass of the collector, by generation, through
    `gc.callbacks` (`start` to `stop`)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._began = 0.0
        self.passes = [0] * GENERATIONS
        self.longest = [0.0] * GENERATIONS
        self.total = [0.0] * GENERATIONS

    def start(self) -> None:
        if self._on_pass not in gc.callbacks:
            gc.callbacks.append(self._on_pass)

    def stop(self) -> None:
        if self._on_pass in gc.callbacks:
            gc.callbacks.remove(self._on_pass)

    def _on_pass(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = self._clock()
            return
        generation = min(int(info.get("generation", 0)), GENERATIONS - 1)
        took = self._clock() - self._began
        self.passes[generation] += 1
        self.total[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def stats(self) -> dict[str, float | int]:
        stats: dict[str, float | int] = {}
        for generation in range(GENERATIONS):
            stats[f"gc{generation}_passes"] = self.passes[generation]
            stats[f"gc{generation}_longest_ms"] = round(self.longest[generation] * 1000, 1)
            stats[f"gc{generation}_total_ms"] = round(self.total[generation] * 1000, 1)
        return stats


class PacedPasses:
    """Runs the collector on a clock: every `interval` seconds (100 ms) a
    pass over the young and middle generations (`middle_every` 1), a full
    pass every `full_every` (ten minutes).

    The collector starts a pass when allocations minus deallocations pass
    its threshold. Under load, old objects dying (calls ended 32 s ago, say)
    cancel new ones out, so the young generation grew to 50,000 live
    objects and more between passes, and each pass stopped the loop for 20
    to 100 ms. Collected on a clock, a pass finds only what the last
    `interval` left alive. Taking the middle generation every time costs
    no more than every third time: an object is scanned once young and
    once middle-aged either way, before it reaches the old generation, and
    the longest pause is shorter (`bench/call_load.py` at 200 calls/s for
    30 s: 15 ms instead of 25-28, and 1.0 s of passes instead of 1.6). Explicit passes reset the
    counts the automatic ones wait for, so the old generation gets its
    passes here too: a full pass scans everything (about 100 ms under 200
    calls/s) and runs once every ten minutes by default, for the cycles
    older objects may leave."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.1,
        middle_every: int = 1,
        full_every: int = 6000,
    ) -> None:
        self._loop = loop
        self.interval = interval
        self.middle_every = middle_every
        self.full_every = full_every
        self._passes = 0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_later(self.interval, self._pass)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _pass(self) -> None:
        self._passes += 1
        if self._passes % self.full_every == 0:
            gc.collect(2)
        elif self._passes % self.middle_every == 0:
            gc.collect(1)
        else:
            gc.collect(0)
        self._handle = self._loop.call_later(self.interval, self._pass)
