"""The call event bus: numbering in order, each subscriber's audience, replay
of the backlog after a reconnect (or a reset when it cannot), and a
subscriber too slow to keep up dropped without holding back the publisher."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callbridge.events import RESET, Event, EventBus, Subscription

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def publish(bus: EventBus, type: str = "ringing", *, to: tuple[int, ...] = (1,)) -> Event:
    return bus.publish(type, f"call-{bus.seq + 1}", employees=to, at=T0, line="101")


def _sync(subscription: Subscription) -> list[Event]:
    """What the subscription holds now, read without waiting for more."""
    taken = []
    while subscription.pending:
        taken.append(subscription.next_ready())
    return taken


def test_events_are_numbered_from_one_in_publishing_order() -> None:
    bus = EventBus()
    events = [publish(bus, kind) for kind in ("ringing", "answered", "ended")]
    assert [e.seq for e in events] == [1, 2, 3]
    assert {e.epoch for e in events} == {bus.epoch}
    assert EventBus().epoch != bus.epoch


def test_the_message_carries_number_epoch_type_call_time_and_details() -> None:
    bus = EventBus()
    event = bus.publish("ended", "abc", employees=[7], at=T0, status="answered", talk_seconds=12)
    assert event.as_message() == {
        "seq": 1,
        "epoch": bus.epoch,
        "type": "ended",
        "call_id": "abc",
        "at": "2026-11-27T09:00:00+00:00",
        "status": "answered",
        "talk_seconds": 12,
    }


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        EventBus().publish("ringing", "abc", employees=[1], at=datetime(2026, 11, 27))


async def test_a_subscriber_gets_live_events_in_order() -> None:
    bus = EventBus()
    with bus.subscribe(None) as subscription:
        publish(bus, "ringing")
        publish(bus, "answered")
        first = await asyncio.wait_for(anext(subscription), 1)
        second = await asyncio.wait_for(anext(subscription), 1)
    assert [first.type, second.type] == ["ringing", "answered"]
    assert bus.subscribers == 0


async def test_a_waiting_subscriber_wakes_when_an_event_is_published() -> None:
    bus = EventBus()
    with bus.subscribe(1) as subscription:
        waiting = asyncio.create_task(anext(subscription))
        await asyncio.sleep(0)
        assert not waiting.done()
        publish(bus)
        assert (await asyncio.wait_for(waiting, 1)).seq == 1


def test_an_employee_sees_only_the_events_of_their_calls_and_all_sees_every_one() -> None:
    bus = EventBus()
    alice, bob, everyone = bus.subscribe(1), bus.subscribe(2), bus.subscribe(None)
    publish(bus, to=(1,))
    publish(bus, to=(2,))
    publish(bus, to=(1, 2))  # an internal call between them
    publish(bus, to=())  # a call no employee's line took part in
    assert [e.seq for e in _sync(alice)] == [1, 3]
    assert [e.seq for e in _sync(bob)] == [2, 3]
    assert [e.seq for e in _sync(everyone)] == [1, 2, 3, 4]


def test_no_since_means_live_events_only() -> None:
    bus = EventBus()
    publish(bus)
    subscription = bus.subscribe(1)
    assert _sync(subscription) == []


def test_since_replays_the_audiences_events_after_it_then_live_ones() -> None:
    bus = EventBus()
    for to in [(1,), (2,), (1,), (1,)]:
        publish(bus, to=to)
    subscription = bus.subscribe(1, since=1)
    publish(bus, to=(1,))
    assert [e.seq for e in _sync(subscription)] == [3, 4, 5]


def test_since_zero_replays_everything_and_the_last_number_nothing() -> None:
    bus = EventBus()
    publish(bus)
    publish(bus)
    assert [e.seq for e in _sync(bus.subscribe(None, since=0))] == [1, 2]
    assert _sync(bus.subscribe(None, since=2)) == []


def test_a_since_older_than_the_backlog_starts_with_a_reset() -> None:
    bus = EventBus(backlog=3)
    for _ in range(5):
        publish(bus)
    # Events 3..5 are kept; 2 is the last one a reconnecting client may have seen.
    assert [e.seq for e in _sync(bus.subscribe(None, since=2))] == [3, 4, 5]
    [reset] = _sync(bus.subscribe(None, since=1))
    assert (reset.type, reset.seq, reset.epoch, reset.call_id) == (RESET, 5, bus.epoch, None)


def test_a_since_from_another_run_starts_with_a_reset() -> None:
    bus = EventBus()
    publish(bus)
    [reset] = _sync(bus.subscribe(None, since=40))
    assert reset.type == RESET and reset.seq == 1


async def test_a_subscriber_that_falls_behind_is_closed_without_blocking_the_publisher() -> None:
    bus = EventBus(subscriber_limit=3)
    slow, fast = bus.subscribe(None), bus.subscribe(None)
    for _ in range(3):
        publish(bus)
    _sync(fast)
    publish(bus)  # the fourth event the slow one has not read
    assert slow.overflowed and slow.closed and not fast.closed
    assert bus.subscribers == 1
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    # It comes back with the last number it saw and gets the rest from the backlog.
    assert [e.seq for e in _sync(bus.subscribe(None, since=0))] == [1, 2, 3, 4]


def test_the_replay_does_not_count_against_the_limit() -> None:
    bus = EventBus(subscriber_limit=2)
    for _ in range(5):
        publish(bus)
    subscription = bus.subscribe(None, since=0)
    publish(bus)
    assert not subscription.closed
    assert [e.seq for e in _sync(subscription)] == [1, 2, 3, 4, 5, 6]


async def test_closing_ends_the_iteration() -> None:
    bus = EventBus()
    subscription = bus.subscribe(None)
    waiting = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    subscription.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    publish(bus)
    assert bus.subscribers == 0
