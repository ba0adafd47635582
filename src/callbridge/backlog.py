"""What the SIP side has read but not yet handled while it runs behind.

Handled as it is read, a message waits in the kernel's socket queue behind
everything read before it, and so does a new call that overload control
will refuse: its 503 takes as long as the whole queue. While behind, the
SIP service instead reads on, refuses at the door what it refuses (the
shedder's decision needs only the parsed INVITE), and queues the rest here
in arrival order; the queue is handled in slices of `budget` seconds, one
per turn of the loop, so the sockets are read (and the refusals sent)
between two slices rather than after the whole backlog. Order is kept:
whatever arrived is handled in the order it arrived, and a message read
while something waits here waits behind it.

A retransmitted INVITE whose first copy waits here has no transaction yet
to absorb it; `waiting(request)` tells the door so, and it queues the copy
behind the first (the transaction layer absorbs it then) rather than
refusing a call it is about to take on."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .sip import Message, Request
from .transport.base import Address, Transport

logger = logging.getLogger("callbridge.sip")

# How long one slice of the backlog may run before the loop reads again.
BUDGET = 0.005


@dataclass(slots=True)
class Queued:
    """A message read while behind: where from, and when it arrived (the
    kernel's stamp, on the loop's clock). `guarded`: the door has already
    counted it against its sender's flood limit."""

    message: Message
    source: Address
    transport: Transport
    arrived: float
    guarded: bool = False


def _invite_key(request: Request) -> tuple[str, str | None]:
    return request.call_id, request.top_via.branch


class Backlog:
    """Messages queued in arrival order and handed to `handle` in slices,
    each at most `budget` seconds of the loop's clock (one message at least)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handle: Callable[[Queued], None],
        *,
        budget: float = BUDGET,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._loop = loop
        self._handle = handle
        self.budget = budget
        self._clock = clock or loop.time
        self._queue: deque[Queued] = deque()
        self._invites: dict[tuple[str, str | None], int] = {}
        self._slice: asyncio.Handle | None = None
        self.most = 0  # the longest the queue has been

    def __len__(self) -> int:
        return len(self._queue)

    def behind(self, now: float) -> float:
        """How long the oldest message waiting has waited (0 when none)."""
        return max(0.0, now - self._queue[0].arrived) if self._queue else 0.0

    def waiting(self, request: Request) -> bool:
        """Whether a copy of the INVITE `request` waits here."""
        return _invite_key(request) in self._invites

    def add(self, item: Queued) -> None:
        self._queue.append(item)
        self.most = max(self.most, len(self._queue))
        message = item.message
        if isinstance(message, Request) and message.method == "INVITE":
            key = _invite_key(message)
            self._invites[key] = self._invites.get(key, 0) + 1
        if self._slice is None:
            self._slice = self._loop.call_soon(self._run)

    def close(self) -> None:
        """Drop what waits (shutting down)."""
        if self._slice is not None:
            self._slice.cancel()
            self._slice = None
        self._queue.clear()
        self._invites.clear()

    def _run(self) -> None:
        self._slice = None
        queue, clock = self._queue, self._clock
        ends = clock() + self.budget
        while queue:
            item = queue.popleft()
            self._forget(item.message)
            try:
                self._handle(item)
            except Exception:  # one message must not strand the rest
                logger.exception("sip.backlog_failed")
            if clock() >= ends:
                break
        if queue:
            self._slice = self._loop.call_soon(self._run)

    def _forget(self, message: Message) -> None:
        if isinstance(message, Request) and message.method == "INVITE":
            key = _invite_key(message)
            left = self._invites.get(key, 0) - 1
            if left > 0:
                self._invites[key] = left
            else:
                self._invites.pop(key, None)
