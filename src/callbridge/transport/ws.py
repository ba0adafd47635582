"""SIP over WebSocket (RFC 7118): the browsers' connections as one more
transport of the layer. The HTTP server owns the sockets and their
handshakes; it hands each accepted connection to `WsTransport.accept` and
then its frames, one SIP message each, to the flow it got back, and sends
what the flow gives it. Nothing here knows the web framework.

A WebSocket is a flow (RFC 5626) that only the browser can open: requests
to a browser go over the connection it registered on, or nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from ..logs import log_event
from ..sip import DEFAULT_LIMITS, Limits, ParseError, parse
from .base import Address, Receiver, Transport, TransportError

logger = logging.getLogger("callbridge.transport")

DEFAULT_MAX_CONNECTIONS = 1024
# Browsers of one office often share one public address: more than a phone's.
DEFAULT_MAX_PER_ADDRESS = 128
DEFAULT_IDLE_TIMEOUT = 300.0
# Frames queued for a browser that does not read, before its flow is closed.
DEFAULT_MAX_WRITE_BUFFER = 1024 * 1024
# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013
CLOSE_POLICY = 1008
# RFC 5626 §3.5.1 keep-alives some clients send in a frame of their own.
_KEEP_ALIVES = (b"", b"\r\n", b"\r\n\r\n")


class WsTransport(Transport):
    """The WebSocket connections the HTTP server accepted, as one transport.

    `local` is the HTTP server's address (what our Via and Contact name).
    """

    name = "ws"
    reliable = True

    def __init__(
        self,
        receiver: Receiver,
        local: Address,
        *,
        limits: Limits = DEFAULT_LIMITS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
        admits: Callable[[str], bool] | None = None,
        keep_idle: Callable[[Address], bool] | None = None,
    ) -> None:
        self.receiver = receiver
        self.limits = limits
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.idle_timeout = idle_timeout
        self.max_write_buffer = max_write_buffer
        self.admits = admits
        self.keep_idle = keep_idle
        self._local = local
        self._by_peer: dict[Address, WsFlow] = {}
        self._per_host: Counter[str] = Counter()
        self._closing = False
        # Frames larger than the limit: each closed its connection.
        self.oversized = 0

    @property
    def local_address(self) -> Address:
        return self._local

    def serve_on(self, port: int) -> None:
        """The HTTP server's port once it listens (it may have picked one)."""
        self._local = Address(self.name, self._local.host, port)

    @property
    def connection_count(self) -> int:
        return len(self._by_peer)

    def accept(self, host: str, port: int) -> WsFlow | str:
        """A flow for the connection the HTTP server accepted from `host`:`port`,
        or why it is refused (a cap reached, a blocked source)."""
        refusal = self._refusal(host)
        if refusal is not None:
            # At debug, as TCP's: a blocked source's flood must not flood the log.
            log_event(logger, logging.DEBUG, "ws.refused", src=host, reason=refusal)
            return refusal
        remote = Address(self.name, host, port)
        flow = WsFlow(self, remote)
        self._by_peer[remote] = flow
        self._per_host[host] += 1
        log_event(logger, logging.DEBUG, "ws.accepted", remote=remote)
        return flow

    def flow(self, remote: Address) -> WsFlow | None:
        flow = self._by_peer.get(remote)
        return flow if flow is not None and flow.is_open else None

    def send(self, data: bytes, dest: Address) -> None:
        flow = self.flow(dest)
        if flow is None:
            # A browser cannot be called back: its own connection or nothing.
            reason = "transport closed" if self._closing else "no connection from this browser"
            self.receiver.on_error(TransportError(dest, reason), data, dest, self)
            return
        flow.write(data)

    async def close(self) -> None:
        self._closing = True
        for flow in list(self._by_peer.values()):
            flow.close(CLOSE_TRY_LATER)

    def _refusal(self, host: str) -> str | None:
        if self._closing or len(self._by_peer) >= self.max_connections:
            return "connection limit reached"
        if self._per_host[host] >= self.max_per_address:
            return "connection limit of this address reached"
        if self.admits is not None and not self.admits(host):
            return "source refused"
        return None

    def _forget(self, flow: WsFlow) -> None:
        if self._by_peer.get(flow.remote) is not flow:
            return
        del self._by_peer[flow.remote]
        log_event(logger, logging.DEBUG, "ws.closed", remote=flow.remote)
        host = flow.remote.host
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]
        try:
            self.receiver.on_closed(flow.remote, self)
        except Exception:
            logger.exception("ws.report_failed")

    def _keeps(self, remote: Address) -> bool:
        if self.keep_idle is None:
            return False
        try:
            return self.keep_idle(remote)
        except Exception:
            logger.exception("ws.keep_idle_failed")
            return False

    def _report(self, error: Exception, data: bytes, address: Address) -> None:
        try:
            self.receiver.on_error(error, data, address, self)
        except Exception:
            logger.exception("ws.report_failed")


class WsFlow:
    """One browser's WebSocket. The HTTP side calls `receive` with each frame
    and `lost` when the socket is gone, and sends what `outgoing` yields
    until it yields None, then closes with `close_code`."""

    def __init__(self, owner: WsTransport, remote: Address) -> None:
        self._owner = owner
        self._remote = remote
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._open = True
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = self._loop.call_later(
            owner.idle_timeout, self._check_idle
        )
        self.close_code = CLOSE_NORMAL

    @property
    def local(self) -> Address:
        return self._owner.local_address

    @property
    def remote(self) -> Address:
        return self._remote

    @property
    def is_open(self) -> bool:
        return self._open

    def receive(self, frame: bytes) -> None:
        """One frame from the browser: one SIP message (RFC 7118 §5.2)."""
        if not self._open:
            return
        try:
            self._last_activity = self._loop.time()
            if len(frame) > self._owner.limits.max_message_size:
                # Before anything is read of it: the limit bounds our work too.
                self._owner.oversized += 1
                self._owner._report(
                    TransportError(self._remote, "frame too large"), b"", self._remote
                )
                self.close(CLOSE_TOO_BIG)
                return
            if frame in _KEEP_ALIVES:
                return
            self._parse(frame)
        except Exception:
            logger.exception("ws.receive_failed")

    def _parse(self, frame: bytes) -> None:
        owner = self._owner
        try:
            message = parse(frame, owner.limits)
        except ParseError as error:
            owner._report(error, frame, self._remote)
            return
        except Exception as exc:  # a parser bug costs one message, not the connection
            log_event(logger, logging.DEBUG, "sip.parser_failed", src=self._remote, error=repr(exc))
            owner._report(ParseError(400, "Bad Request"), frame, self._remote)
            return
        owner.receiver.on_message(message, self._remote, owner)

    def write(self, data: bytes) -> None:
        """Queue one message for the browser, never waiting: a browser that
        reads nothing while a megabyte piles up is cut off."""
        if not self._open:
            self._owner._report(
                TransportError(self._remote, "connection closed"), data, self._remote
            )
            return
        if self._queued + len(data) > self._owner.max_write_buffer:
            self._owner._report(TransportError(self._remote, "peer not reading"), b"", self._remote)
            self.close(CLOSE_TRY_LATER)
            return
        self._queued += len(data)
        self._last_activity = self._loop.time()
        self._queue.put_nowait(data)

    async def outgoing(self) -> bytes | None:
        """The next message to send, or None once the flow is closed."""
        data = await self._queue.get()
        if data is not None:
            self._queued -= len(data)
        return data

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Close the connection (the HTTP side sends the close frame)."""
        if not self._open:
            return
        self._open = False
        self.close_code = code
        self._queue.put_nowait(None)
        self._stop_timer()
        self._owner._forget(self)

    def lost(self) -> None:
        """The socket is gone, whoever closed it."""
        if self._open:
            self._open = False
            self._queue.put_nowait(None)
        self._stop_timer()
        self._owner._forget(self)

    def _stop_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _check_idle(self) -> None:
        timeout = self._owner.idle_timeout
        idle = self._loop.time() - self._last_activity
        if idle < timeout:
            self._idle_timer = self._loop.call_later(timeout - idle, self._check_idle)
        elif self._owner._keeps(self._remote):
            # A registered browser's only way in: kept, asked again later.
            self._idle_timer = self._loop.call_later(timeout, self._check_idle)
        else:
            log_event(logger, logging.DEBUG, "ws.idle_timeout", remote=self._remote)
            self._idle_timer = None
            self.close(CLOSE_NORMAL)
