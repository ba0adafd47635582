"""Call events for the browser and CRM connectors: an in-process bus that
numbers every event, keeps the last ones for clients that reconnect, and
hands each subscriber the events of its audience.

The bus lives in one process today; a bus over Redis or PostgreSQL
LISTEN/NOTIFY can take its place with the same `publish` and `subscribe` and
the same sequence numbers. `epoch` names one run of the numbering: a client
that sees another epoch knows the numbers started again (a restart), not
that it missed some.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any

# What a subscriber first receives when it asked for events the backlog no
# longer holds (or numbers from another run): its state is stale, reload it.
RESET = "reset"
# The call events, in the order a call can produce them. `transferred`
# comes with call transfer (a later issue).
EVENT_TYPES = (
    "ringing",
    "identified",
    "answered",
    "held",
    "resumed",
    "dtmf",
    "missed",
    "ended",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its number in this run (`epoch`), what happened to which
    call record, when, who may see it (employee ids), and its details."""

    seq: int
    epoch: str
    type: str
    call_id: str | None
    at: datetime
    employees: frozenset[int] = frozenset()
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def as_message(self) -> dict[str, Any]:
        """The event as the WebSocket sends it (JSON-ready)."""
        return {
            "seq": self.seq,
            "epoch": self.epoch,
            "type": self.type,
            "call_id": self.call_id,
            "at": self.at.isoformat(),
            **self.data,
        }


class Subscription:
    """The events of one audience, in order: the replayed backlog first, then
    live ones as they are published. Iterate with `async for`; the iteration
    ends when the subscription is closed — by `close()`, or by the bus when
    the subscriber fell more than `limit` live events behind (`overflowed`),
    so that a slow client never holds back the publisher nor grows memory.
    """

    def __init__(
        self,
        bus: EventBus,
        employee_id: int | None,
        replay: Iterable[Event],
        limit: int,
    ) -> None:
        self.employee_id = employee_id
        self.overflowed = False
        self._bus = bus
        self._pending: deque[Event] = deque(replay)
        # The replayed events do not count against the limit: it bounds how
        # far a reader may fall behind the live stream.
        self._replay_left = len(self._pending)
        self._limit = limit
        self._wakeup = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """How many events can be read without waiting."""
        return len(self._pending)

    def next_ready(self) -> Event:
        """The next event when one is pending (IndexError when none is)."""
        event = self._pending.popleft()
        if self._replay_left:
            self._replay_left -= 1
        return event

    def wants(self, event: Event) -> bool:
        """Whether `event` is for this subscriber's audience."""
        return self.employee_id is None or self.employee_id in event.employees

    def close(self) -> None:
        """Stop receiving; a pending `async for` ends after what it holds."""
        if not self._closed:
            self._closed = True
            self._bus._unsubscribe(self)
            self._wakeup.set()

    def _offer(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._pending) - self._replay_left >= self._limit:
            # Too far behind: what it missed is in the backlog, and the client
            # asks for it again with the last number it saw.
            self.overflowed = True
            self._pending.clear()
            self._replay_left = 0
            self.close()
            return
        self._pending.append(event)
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.next_ready()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Publishes call events to subscribers; keeps the last `backlog` of them
    for replay. `publish` never waits: it runs on the call's signalling path.
    """

    def __init__(
        self,
        backlog: int = 10_000,
        *,
        subscriber_limit: int = 1_000,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if backlog < 1 or subscriber_limit < 1:
            raise ValueError("backlog and subscriber_limit must be at least 1")
        self.epoch = secrets.token_hex(8)
        self.seq = 0  # the number of the last event published
        self.subscriber_limit = subscriber_limit
        self.wallclock = wallclock
        self._backlog: deque[Event] = deque(maxlen=backlog)
        self._subscribers: set[Subscription] = set()

    def publish(
        self,
        type: str,
        call_id: str | None,
        *,
        employees: Iterable[int],
        at: datetime,
        **data: Any,
    ) -> Event:
        """Number the event, keep it in the backlog and offer it to every
        subscriber whose audience it is for; returns it."""
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"at {at.isoformat()!r} has no timezone; pass UTC")
        self.seq += 1
        event = Event(
            self.seq,
            self.epoch,
            type,
            call_id,
            at,
            frozenset(employees),
            MappingProxyType(data),
        )
        self._backlog.append(event)
        for subscriber in list(self._subscribers):
            if subscriber.wants(event):
                subscriber._offer(event)
        return event

    def subscribe(self, employee_id: int | None, since: int | None = None) -> Subscription:
        """The events for `employee_id` (None: every event, for admins and
        supervisors) from now on; with `since`, first those after number
        `since` the backlog still holds. When it cannot hold them all (the
        backlog moved past them, or `since` is a number of another run), the
        first event is a `reset` carrying the current number instead."""
        replay: list[Event] = []
        if since is not None:
            if self._lost_after(since):
                replay.append(self._reset())
            else:
                replay.extend(
                    event
                    for event in self._backlog
                    if event.seq > since and (employee_id is None or employee_id in event.employees)
                )
        subscription = Subscription(self, employee_id, replay, self.subscriber_limit)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _lost_after(self, since: int) -> bool:
        if since > self.seq or since < 0:
            return True  # numbers this run never gave: the client saw another run
        if since == self.seq:
            return False
        oldest = self._backlog[0].seq if self._backlog else self.seq + 1
        return oldest > since + 1

    def _reset(self) -> Event:
        return Event(self.seq, self.epoch, RESET, None, self.wallclock())

    def _unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
