"""The UDP endpoint: one socket that parses each datagram as one SIP message
and sends messages to any address (RFC 3261 §18, unreliable transport)."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from ..logs import log_event
from ..sip import DEFAULT_LIMITS, Limits, ParseError, parse
from .base import Address, Receiver, Transport, TransportError

logger = logging.getLogger("callbridge.transport")

# RFC 5626 §3.5.1 keep-alives some phones also send over UDP: nothing to parse.
_KEEP_ALIVES = (b"", b"\r\n", b"\r\n\r\n")
# Source addresses are interned so a busy peer does not cost an Address per
# datagram; cleared when full, so a spoofed flood cannot grow it.
_MAX_REMEMBERED_SOURCES = 4096
# A burst of requests must wait in the kernel while the loop is busy, not be
# dropped: ask for a large receive buffer (the kernel caps it at rmem_max).
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024


class UdpTransport(Transport):
    """A UDP socket bound to one local address; create it with `open`."""

    name = "udp"
    reliable = False

    def __init__(self, receiver: Receiver, limits: Limits) -> None:
        self.receiver = receiver
        self.limits = limits
        self._socket: asyncio.DatagramTransport | None = None
        self._local = Address(self.name, "", 0)
        self._loopback = "127.0.0.1"
        self._closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls, receiver: Receiver, host: str, port: int, *, limits: Limits = DEFAULT_LIMITS
    ) -> UdpTransport:
        self = cls(receiver, limits)
        loop = asyncio.get_running_loop()
        sock, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._socket = sock
        raw = sock.get_extra_info("socket")
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError as exc:  # pragma: no cover - a kernel that refuses: keep its default
            log_event(logger, logging.INFO, "udp.receive_buffer_refused", error=exc)
        bound = sock.get_extra_info("sockname")
        self._local = Address(self.name, bound[0], bound[1])
        if raw.family == socket.AF_INET6:
            self._loopback = "::1"
        return self

    @property
    def local_address(self) -> Address:
        return self._local

    def send(self, data: bytes, dest: Address) -> None:
        sock = self._socket
        if sock is None or sock.is_closing():
            self.receiver.on_error(TransportError(dest, "transport closed"), data, dest, self)
            return
        # uvloop takes IP literals only; "localhost" is the one name allowed here.
        host = self._loopback if dest.host == "localhost" else dest.host
        try:
            sock.sendto(data, (host, dest.port))
        except (OSError, ValueError, TypeError) as exc:
            self.receiver.on_error(TransportError(dest, str(exc)), data, dest, self)

    async def close(self) -> None:
        if self._socket is None:
            return
        self._socket.close()
        await self._closed

    def _connection_lost(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self._owner = owner
        self._receiver = owner.receiver
        self._limits = owner.limits
        self._sources: dict[Any, Address] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Whatever arrives, nothing may escape: an exception here would reach
        # the event loop's handler with every bad datagram.
        try:
            source = self._sources.get(addr)
            if source is None:
                source = self._remember(addr)
            if data in _KEEP_ALIVES:
                return
            try:
                message = parse(data, self._limits)
            except ParseError as error:
                self._receiver.on_error(error, data, source, self._owner)
                return
            except Exception as exc:  # a parser bug must cost one datagram, not the socket
                log_event(logger, logging.DEBUG, "sip.parser_failed", src=source, error=repr(exc))
                self._receiver.on_error(ParseError(400, "Bad Request"), data, source, self._owner)
                return
            self._receiver.on_message(message, source, self._owner)
        except Exception:
            logger.exception("udp.receive_failed")

    def _remember(self, addr: Any) -> Address:
        if len(self._sources) >= _MAX_REMEMBERED_SOURCES:
            self._sources.clear()
        source = self._sources[addr] = Address("udp", addr[0], addr[1])
        return source

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from an earlier sendto carry no message to blame.
        log_event(
            logger, logging.DEBUG, "udp.icmp_error", local=self._owner.local_address, error=exc
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connection_lost()
