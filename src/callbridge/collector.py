"""The garbage collector's passes, timed: each stops the event loop, so how
many there are and how long the longest took is logged at shutdown
(`sip.stats`) beside the overload counters."""

from __future__ import annotations

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
