"""The SIP transport layer (RFC 3261 §18): the listening endpoints, the Via
rules on what arrives, the routing of what leaves, error answers to malformed
requests, and the counters of all of it."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from ..logs import log_event
from ..sip import DEFAULT_LIMITS, Limits, Message, ParseError, Request, Response
from .base import Address, Transport, TransportError
from .salvage import salvage_error_response
from .tcp import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ADDRESS,
    TcpTransport,
)
from .udp import UdpTransport
from .via import response_destination, stamp_received
from .ws import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_WS_CONNECTIONS
from .ws import DEFAULT_MAX_PER_ADDRESS as DEFAULT_MAX_WS_PER_ADDRESS
from .ws import WsTransport

logger = logging.getLogger("callbridge.transport")

MessageHandler = Callable[[Message, Address, Transport, float], None]
TransportErrorHandler = Callable[[TransportError], None]
FlowClosedHandler = Callable[[Address], None]

# With port 0 the first endpoint picks a free port and the others must get
# the same one, which another process may hold for their protocol: retry.
_FREE_PORT_ATTEMPTS = 20


@dataclass(slots=True)
class TransportStats:
    """Counters since start.

    `received`/`sent` count messages; `parse_errors` input that did not parse
    (or frame); `answered_errors` the error responses sent to it; `dropped`
    whatever was discarded instead: unanswerable malformed input, refused
    connections, messages that could not be sent or routed.
    """

    received: int = 0
    sent: int = 0
    parse_errors: int = 0
    dropped: int = 0
    answered_errors: int = 0


class TransportLayer:
    """Owns the endpoints and hands every parsed message to `handler`.

    `handler(message, source, transport, waited)` gets requests already
    stamped with `received`/`rport`, and how many seconds the message waited
    in the socket's queue before it was read (UDP; 0 when unknown); it
    answers with `send_response(response, source, transport)`. It must not
    block; what it raises is logged, not propagated.
    `on_flow_closed(remote)` hears of every connection that closed;
    `keep_idle(remote)` says whether an idle one is still needed (not closed).
    """

    def __init__(
        self,
        handler: MessageHandler,
        *,
        limits: Limits = DEFAULT_LIMITS,
        log_messages: bool = False,
        on_transport_error: TransportErrorHandler | None = None,
        on_flow_closed: FlowClosedHandler | None = None,
        tcp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_tcp_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_tcp_per_address: int = DEFAULT_MAX_PER_ADDRESS,
        admits: Callable[[str], bool] | None = None,
        keep_idle: Callable[[Address], bool] | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.log_messages = log_messages
        self.on_transport_error = on_transport_error
        self.on_flow_closed = on_flow_closed
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.max_tcp_per_address = max_tcp_per_address
        # Whether a host may open a connection (blocked sources may not).
        self.admits = admits
        self.keep_idle = keep_idle
        self.stats = TransportStats()
        self.transports: list[Transport] = []

    async def listen(
        self, host: str, port: int = 5060, transports: Sequence[str] = ("udp", "tcp")
    ) -> int:
        """Listen on `host`:`port` with each of `transports`; returns the port.

        Port 0 picks one free port shared by all of them.
        """
        for attempt in range(1, _FREE_PORT_ATTEMPTS + 1):
            try:
                opened = await self._open_all(host, port, transports)
                break
            except OSError as exc:
                shared_port_taken = port == 0 and exc.errno == errno.EADDRINUSE
                if not shared_port_taken or attempt == _FREE_PORT_ATTEMPTS:
                    raise
        self.transports.extend(opened)
        for endpoint in opened:
            local = endpoint.local_address
            log_event(
                logger,
                logging.INFO,
                "sip.listening",
                transport=local.transport,
                host=local.host,
                port=local.port,
            )
        return opened[0].local_address.port

    async def _open_all(self, host: str, port: int, names: Sequence[str]) -> list[Transport]:
        """One endpoint per name, all on the port the first one gets, or none."""
        opened: list[Transport] = []
        try:
            for name in names:
                endpoint = await self._open(
                    name, host, opened[0].local_address.port if opened else port
                )
                opened.append(endpoint)
        except BaseException:
            for endpoint in opened:
                await endpoint.close()
            raise
        if not opened:
            raise ValueError("no transport to listen with")
        return opened

    async def _open(self, name: str, host: str, port: int) -> Transport:
        if name == "udp":
            return await UdpTransport.open(self, host, port, limits=self.limits)
        if name == "tcp":
            return await TcpTransport.open(
                self,
                host,
                port,
                limits=self.limits,
                idle_timeout=self.tcp_idle_timeout,
                max_connections=self.max_tcp_connections,
                max_per_address=self.max_tcp_per_address,
                admits=self.admits,
                keep_idle=self.keep_idle,
            )
        raise ValueError(f"unknown transport {name!r}")

    def open_websocket(
        self,
        host: str,
        port: int,
        *,
        max_connections: int = DEFAULT_MAX_WS_CONNECTIONS,
        max_per_address: int = DEFAULT_MAX_WS_PER_ADDRESS,
    ) -> WsTransport:
        """The transport of the SIP WebSockets an HTTP server on `host`:`port`
        accepts (RFC 7118): its connections are handed to it one by one."""
        endpoint = WsTransport(
            self,
            Address("ws", host, port),
            limits=self.limits,
            max_connections=max_connections,
            max_per_address=max_per_address,
            idle_timeout=self.tcp_idle_timeout,
            admits=self.admits,
            keep_idle=self.keep_idle,
        )
        self.transports.append(endpoint)
        return endpoint

    def transport_for(self, name: str) -> Transport:
        """The first endpoint of transport `name` ("udp", "tcp")."""
        for transport in self.transports:
            if transport.name == name:
                return transport
        raise TransportError(Address(name, "", 0), f"not listening on {name}")

    def send_request(self, request: Request, dest: Address) -> None:
        """Send `request` to `dest` (already resolved) from our endpoint of
        `dest.transport`; TCP reuses an open connection to `dest`.

        Raises `TransportError` when there is no endpoint of that transport;
        failures on the network go to `on_transport_error`.
        """
        self._send(self.transport_for(dest.transport), request, dest)

    def send_response(self, response: Response, source: Address, transport: Transport) -> None:
        """Send `response` to a request that came from `source` on `transport`
        (RFC 3261 §18.2.2, RFC 3581 §4)."""
        if transport.reliable and transport.flow(source) is not None:
            self._send(transport, response, source)
            return
        try:
            dest = response_destination(response.top_via, source)
        except ParseError as error:
            self.stats.dropped += 1
            log_event(logger, logging.DEBUG, "sip.dropped", dest=source, error=error)
            return
        self._send(transport, response, dest)

    async def close(self) -> None:
        transports, self.transports = self.transports, []
        for transport in transports:
            await transport.close()

    async def __aenter__(self) -> TransportLayer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _send(self, transport: Transport, message: Message, dest: Address) -> None:
        data = message.to_bytes()
        self.stats.sent += 1
        if logger.isEnabledFor(logging.DEBUG):
            self._log_message("sip.send", message, data, dest=dest)
        transport.send(data, dest)

    # The Receiver interface the endpoints call.

    def on_message(
        self, message: Message, source: Address, transport: Transport, waited: float = 0.0
    ) -> None:
        self.stats.received += 1
        if isinstance(message, Request):
            stamp_received(message, source)
        if logger.isEnabledFor(logging.DEBUG):
            self._log_message("sip.recv", message, None, src=source)
        try:
            self.handler(message, source, transport, waited)
        except Exception:
            logger.exception("sip.handler_failed")

    def on_error(
        self, error: Exception, data: bytes, address: Address, transport: Transport
    ) -> None:
        if isinstance(error, ParseError):
            self._answer_malformed(error, data, address, transport)
            return
        self.stats.dropped += 1
        log_event(logger, logging.DEBUG, "sip.transport_error", dest=address, error=error)
        if self.on_transport_error is not None and isinstance(error, TransportError):
            try:
                self.on_transport_error(error)
            except Exception:
                logger.exception("sip.transport_error_handler_failed")

    def on_closed(self, remote: Address, transport: Transport) -> None:
        if self.on_flow_closed is not None:
            try:
                self.on_flow_closed(remote)
            except Exception:
                logger.exception("sip.flow_closed_handler_failed")

    def _answer_malformed(
        self, error: ParseError, data: bytes, source: Address, transport: Transport
    ) -> None:
        self.stats.parse_errors += 1
        response = salvage_error_response(data, error)
        log_event(
            logger,
            logging.DEBUG,
            "sip.parse_error",
            src=source,
            status=error.status,
            reason=error.reason,
            answered=response is not None,
            size=len(data),
        )
        if response is None:
            self.stats.dropped += 1
            return
        stamp_received(response, source)
        self.stats.answered_errors += 1
        self.send_response(response, source, transport)

    def _log_message(
        self, event: str, message: Message, data: bytes | None, **where: Address
    ) -> None:
        if isinstance(message, Request):
            summary = {"method": message.method, "call_id": message.call_id}
        else:
            summary = {"status": str(message.status), "call_id": message.call_id}
        if self.log_messages:
            text = (data if data is not None else message.to_bytes()).decode("utf-8", "replace")
            log_event(logger, logging.DEBUG, event, **where, **summary, message=text)
        else:
            log_event(logger, logging.DEBUG, event, **where, **summary)
