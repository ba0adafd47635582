"""The TCP endpoint: a listener and every connection, accepted or opened,
each framed with `sip.framing.StreamFramer` (RFC 3261 §18.3), kept by peer
address for reuse, closed when idle, capped in number (in all and per remote
address) and buffer size; a source the caller refuses is closed at accept,
and a connection the caller still needs (a phone registered over it) is
not closed for idleness."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from ..logs import log_event
from ..sip import DEFAULT_LIMITS, Limits, ParseError, parse
from ..sip.framing import PONG, Frame, FramingError, KeepAlive, StreamFramer
from .base import Address, Flow, Receiver, Transport, TransportError

logger = logging.getLogger("callbridge.transport")

# Longer than the 120 s CRLF keep-alive interval RFC 5626 §4.4.1 suggests, so
# a flow kept alive by its client is never cut.
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_PER_ADDRESS = 32
DEFAULT_MAX_WRITE_BUFFER = 1 << 20
DEFAULT_CONNECT_TIMEOUT = 10.0


class TcpTransport(Transport):
    """A TCP listener and its connections; create it with `open`."""

    name = "tcp"
    reliable = True

    def __init__(
        self,
        receiver: Receiver,
        limits: Limits,
        *,
        idle_timeout: float,
        max_connections: int,
        max_write_buffer: int,
        connect_timeout: float,
        max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        admits: Callable[[str], bool] | None = None,
        keep_idle: Callable[[Address], bool] | None = None,
    ) -> None:
        self.receiver = receiver
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_write_buffer = max_write_buffer
        self.connect_timeout = connect_timeout
        self.max_per_address = max_per_address
        # Whether a remote host may connect at all (the flood guard's blocks).
        self.admits = admits
        # Whether an idle connection with a remote address is still needed.
        self.keep_idle = keep_idle
        self._per_host: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._local = Address(self.name, "", 0)
        # Keyed by the peer's address: the one a request came from, or the one
        # we connected to (and the peer's real address when it differs).
        self._by_peer: dict[Address, _Connection] = {}
        self._connections: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closing = False

    @classmethod
    async def open(
        cls,
        receiver: Receiver,
        host: str,
        port: int,
        *,
        limits: Limits = DEFAULT_LIMITS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        admits: Callable[[str], bool] | None = None,
        keep_idle: Callable[[Address], bool] | None = None,
    ) -> TcpTransport:
        self = cls(
            receiver,
            limits,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            max_write_buffer=max_write_buffer,
            connect_timeout=connect_timeout,
            max_per_address=max_per_address,
            admits=admits,
            keep_idle=keep_idle,
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, None), host, port)
        bound = self._server.sockets[0].getsockname()
        self._local = Address(self.name, bound[0], bound[1])
        return self

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def flow(self, remote: Address) -> Flow | None:
        connection = self._by_peer.get(remote)
        return connection if connection is not None and connection.is_open else None

    def send(self, data: bytes, dest: Address) -> None:
        if self._closing:
            self.receiver.on_error(TransportError(dest, "transport closed"), data, dest, self)
            return
        connection = self._by_peer.get(dest)
        if connection is None or connection.closing:
            connection = self._connect(dest, data)
            if connection is None:
                return
        connection.write(data)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._connecting:
            task.cancel()
        await asyncio.gather(*self._connecting, return_exceptions=True)
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        await asyncio.gather(*(c.lost for c in connections))
        if self._server is not None:
            await self._server.wait_closed()

    def _connect(self, dest: Address, data: bytes) -> _Connection | None:
        if len(self._connections) >= self.max_connections:
            self._report(TransportError(dest, "connection limit reached"), data, dest)
            return None
        connection = _Connection(self, dest)
        self._add(connection, dest)
        task = asyncio.get_running_loop().create_task(self._open_connection(connection, dest))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return connection

    async def _open_connection(self, connection: _Connection, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: connection, dest.host, dest.port)
        except (OSError, TimeoutError) as exc:
            reason = "connect timed out" if isinstance(exc, TimeoutError) else str(exc)
            self._forget(connection)
            unsent = connection.take_pending()
            self._report(TransportError(dest, reason), unsent, dest)
        except asyncio.CancelledError:
            self._forget(connection)
            raise

    def _admit(self, connection: _Connection) -> bool:
        """Take an accepted connection in, unless its source is refused or a
        cap (in all, or for its address) is reached."""
        refusal = self._refusal(connection.remote.host)
        if refusal is not None:
            self._report(TransportError(connection.remote, refusal), b"", connection.remote)
            return False
        self._add(connection, connection.remote)
        return True

    def _refusal(self, host: str) -> str | None:
        if self._closing or len(self._connections) >= self.max_connections:
            return "connection limit reached"
        if self._per_host[host] >= self.max_per_address:
            return "connection limit of this address reached"
        if self.admits is not None and not self.admits(host):
            return "source refused"
        return None

    def _add(self, connection: _Connection, key: Address) -> None:
        self._connections.add(connection)
        self._per_host[key.host] += 1
        connection.host = key.host
        self._alias(connection, key)

    def _alias(self, connection: _Connection, key: Address) -> None:
        # The latest connection to a peer wins: the older one still delivers
        # what it receives and closes when idle.
        self._by_peer[key] = connection
        connection.keys.append(key)

    def _forget(self, connection: _Connection) -> bool:
        """Let go of `connection`; whether it was one of ours (a refused one was not)."""
        known = connection in self._connections
        if known:
            self._connections.remove(connection)
            self._per_host[connection.host] -= 1
            if self._per_host[connection.host] <= 0:
                del self._per_host[connection.host]
        for key in connection.keys:
            if self._by_peer.get(key) is connection:
                del self._by_peer[key]
        return known

    def _closed(self, connection: _Connection) -> None:
        if self._forget(connection):
            try:
                self.receiver.on_closed(connection.remote, self)
            except Exception:
                logger.exception("tcp.report_failed")

    def _keeps(self, remote: Address) -> bool:
        if self.keep_idle is None:
            return False
        try:
            return self.keep_idle(remote)
        except Exception:
            logger.exception("tcp.keep_idle_failed")
            return False

    def _report(self, error: Exception, data: bytes, address: Address) -> None:
        try:
            self.receiver.on_error(error, data, address, self)
        except Exception:
            logger.exception("tcp.report_failed")


class _Connection(asyncio.Protocol):
    """One TCP connection, accepted (`remote` None until made) or opened by us."""

    def __init__(self, owner: TcpTransport, remote: Address | None) -> None:
        self._owner = owner
        self._receiver = owner.receiver
        self._limits = owner.limits
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer(owner.limits)
        self._remote = remote if remote is not None else Address("tcp", "", 0)
        self._local = owner.local_address
        self._inbound = remote is None
        self._pending: list[bytes] = []  # written before the connection is made
        self._pending_size = 0
        self._closing = False
        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self.keys: list[Address] = []
        self.host = ""  # the address it is counted under
        self.lost: asyncio.Future[None] = self._loop.create_future()

    @property
    def local(self) -> Address:
        return self._local

    @property
    def remote(self) -> Address:
        return self._remote

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def closing(self) -> bool:
        """Closed or on its way there (a connecting one is not)."""
        return self._closing or (self._transport is not None and self._transport.is_closing())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer: Any = transport.get_extra_info("peername")
        local: Any = transport.get_extra_info("sockname")
        peer_address = Address("tcp", peer[0], peer[1])
        self._local = Address("tcp", local[0], local[1])
        if self._inbound:
            self._remote = peer_address
            if not self._owner._admit(self):
                self._transport.abort()
                return
        elif peer_address != self._remote:
            self._remote = peer_address
            self._owner._alias(self, peer_address)
        log_event(
            logger,
            logging.DEBUG,
            "tcp.accepted" if self._inbound else "tcp.connected",
            local=self._local,
            remote=self._remote,
        )
        self._last_activity = self._loop.time()
        self._idle_timer = self._loop.call_later(self._owner.idle_timeout, self._check_idle)
        pending, self._pending = self._pending, []
        for data in pending:
            self.write(data)
        if self._closing:
            self.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._last_activity = self._loop.time()
            try:
                frames = self._framer.feed(data)
            except FramingError as error:
                self._deliver(error.frames)
                log_event(
                    logger, logging.DEBUG, "tcp.framing_error", remote=self._remote, error=error
                )
                self._receiver.on_error(error, error.head, self._remote, self._owner)
                self.close()  # the stream cannot be resynchronised
                return
            self._deliver(frames)
        except Exception:
            logger.exception("tcp.receive_failed")

    def _deliver(self, frames: list[Frame]) -> None:
        for frame in frames:
            if isinstance(frame, KeepAlive):
                self.write(PONG)
                continue
            try:
                message = parse(frame, self._limits, stream=True)
            except ParseError as error:
                self._receiver.on_error(error, frame, self._remote, self._owner)
                continue
            except Exception as exc:  # a parser bug costs one message, not the connection
                log_event(
                    logger, logging.DEBUG, "sip.parser_failed", src=self._remote, error=repr(exc)
                )
                self._receiver.on_error(
                    ParseError(400, "Bad Request"), frame, self._remote, self._owner
                )
                continue
            self._receiver.on_message(message, self._remote, self._owner)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            self._queue(data)
        elif transport.is_closing():
            self._owner._report(
                TransportError(self._remote, "connection closed"), data, self._remote
            )
        else:
            transport.write(data)
            self._last_activity = self._loop.time()
            if transport.get_write_buffer_size() > self._owner.max_write_buffer:
                # A peer that does not read would have us buffer without end.
                self.abort()
                self._owner._report(
                    TransportError(self._remote, "peer not reading"), b"", self._remote
                )

    def _queue(self, data: bytes) -> None:
        if self._pending_size + len(data) > self._owner.max_write_buffer:
            self._owner._report(
                TransportError(self._remote, "connect backlog full"), data, self._remote
            )
            return
        self._pending.append(data)
        self._pending_size += len(data)

    def take_pending(self) -> bytes:
        pending, self._pending, self._pending_size = self._pending, [], 0
        return b"".join(pending)

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()
        elif not self.lost.done():
            # Never connected, so connection_lost will not come to do this.
            self._owner._forget(self)
            self.lost.set_result(None)

    def _check_idle(self) -> None:
        timeout = self._owner.idle_timeout
        idle = self._loop.time() - self._last_activity
        if idle < timeout:
            self._idle_timer = self._loop.call_later(timeout - idle, self._check_idle)
        elif self._owner._keeps(self._remote):
            # A phone's only way in (RFC 5626's flow): kept, asked again later.
            self._idle_timer = self._loop.call_later(timeout, self._check_idle)
        else:
            log_event(logger, logging.DEBUG, "tcp.idle_timeout", remote=self._remote)
            self.close()

    def eof_received(self) -> bool | None:
        return None  # a half-closed SIP connection is closed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        log_event(logger, logging.DEBUG, "tcp.closed", remote=self._remote, error=exc)
        self._owner._closed(self)
        if not self.lost.done():
            self.lost.set_result(None)
