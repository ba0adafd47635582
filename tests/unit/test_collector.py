"""The collector on a clock and its passes timed (collector.py), with a fake
loop, a fake clock and a fake `gc.collect`."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge import collector
from callbridge.collector import CollectorPauses, PacedPasses


class FakeLoop:
    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any) -> Any:
        self.scheduled.append((delay, callback))
        return self

    def cancel(self) -> None:
        pass


def test_passes_go_on_a_clock_young_mostly_older_generations_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generations: list[int] = []
    monkeypatch.setattr(collector.gc, "collect", generations.append)
    loop = FakeLoop()
    paced = PacedPasses(loop, interval=0.1, middle_every=5, full_every=20)  # type: ignore[arg-type]
    paced.start()
    for _ in range(40):
        delay, callback = loop.scheduled.pop(0)
        assert delay == 0.1
        callback()
    assert generations.count(2) == 2
    assert generations.count(1) == 6
    assert generations.count(0) == 32
    assert generations[19] == 2 and generations[4] == 1 and generations[0] == 0


def test_each_pass_is_timed_by_generation() -> None:
    now = [0.0]
    pauses = CollectorPauses(clock=lambda: now[0])
    for generation, took in ((0, 0.004), (0, 0.012), (1, 0.002), (2, 0.09)):
        pauses._on_pass("start", {"generation": generation})
        now[0] += took
        pauses._on_pass("stop", {"generation": generation})
    stats = pauses.stats()
    assert stats["gc0_passes"] == 2 and stats["gc0_longest_ms"] == 12.0
    assert stats["gc0_total_ms"] == 16.0
    assert stats["gc1_passes"] == 1 and stats["gc2_longest_ms"] == 90.0
