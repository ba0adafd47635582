"""The UDP endpoint: one socket that parses each datagram as one SIP message
and sends messages to any address (RFC 3261 §18, unreliable transport).

Each datagram is read with the time the kernel received it (Linux's
SO_TIMESTAMPNS), so the layer above learns how long it waited in the
socket's queue: the backlog that overload control keeps short."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
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
# The largest UDP payload: a longer message is refused by the parser (513).
_MAX_DATAGRAM = 65_536
# Datagrams read per wake-up: the loop's timers and other sockets get their
# turn in between (libuv reads 32 too).
_READS_PER_WAKEUP = 32
# Linux's SO_TIMESTAMPNS (and SCM_TIMESTAMPNS): each datagram carries the
# time it arrived as a struct timespec; Python names neither constant.
_SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


class UdpTransport(Transport):
    """A UDP socket bound to one local address; create it with `open`."""

    name = "udp"
    reliable = False

    def __init__(self, receiver: Receiver, limits: Limits) -> None:
        self.receiver = receiver
        self.limits = limits
        self._loop = asyncio.get_running_loop()
        self._socket: socket.socket | None = None
        self._local = Address(self.name, "", 0)
        self._loopback = "127.0.0.1"
        self._sources: dict[Any, Address] = {}
        self._stamped = False

    @classmethod
    async def open(
        cls, receiver: Receiver, host: str, port: int, *, limits: Limits = DEFAULT_LIMITS
    ) -> UdpTransport:
        self = cls(receiver, limits)
        infos = await self._loop.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(address)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            except OSError as exc:  # pragma: no cover - a kernel that refuses: keep its default
                log_event(logger, logging.INFO, "udp.receive_buffer_refused", error=exc)
            self._stamped = _ask_for_timestamps(sock)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        bound = sock.getsockname()
        self._local = Address(self.name, bound[0], bound[1])
        if family == socket.AF_INET6:
            self._loopback = "::1"
        self._loop.add_reader(sock.fileno(), self._readable)
        return self

    @property
    def local_address(self) -> Address:
        return self._local

    def send(self, data: bytes, dest: Address) -> None:
        sock = self._socket
        if sock is None:
            self.receiver.on_error(TransportError(dest, "transport closed"), data, dest, self)
            return
        # Only IP literals: a name would make sendto wait on DNS, on the loop.
        host = self._loopback if dest.host == "localhost" else dest.host
        try:
            if not _is_ip_literal(host):
                raise ValueError("not an IP address")
            sock.sendto(data, (host, dest.port))
        except (OSError, ValueError, TypeError, OverflowError) as exc:
            # A full send buffer (BlockingIOError) loses the datagram, as the
            # network may: the transaction's retransmission covers it.
            self.receiver.on_error(TransportError(dest, str(exc)), data, dest, self)

    async def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is None:
            return
        self._loop.remove_reader(sock.fileno())
        sock.close()

    def _readable(self) -> None:
        sock = self._socket
        if sock is None:
            return
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors from an earlier sendto carry no message to blame.
                log_event(logger, logging.DEBUG, "udp.icmp_error", local=self._local, error=exc)
                continue
            waited = _waited(ancillary) if self._stamped else 0.0
            self._datagram(data, addr, waited)

    def _datagram(self, data: bytes, addr: Any, waited: float) -> None:
        # Whatever arrives, nothing may escape: an exception here would reach
        # the event loop's handler with every bad datagram.
        try:
            source = self._sources.get(addr)
            if source is None:
                source = self._remember(addr)
            if data in _KEEP_ALIVES:
                return
            try:
                message = parse(data, self.limits)
            except ParseError as error:
                self.receiver.on_error(error, data, source, self)
                return
            except Exception as exc:  # a parser bug must cost one datagram, not the socket
                log_event(logger, logging.DEBUG, "sip.parser_failed", src=source, error=repr(exc))
                self.receiver.on_error(ParseError(400, "Bad Request"), data, source, self)
                return
            self.receiver.on_message(message, source, self, waited)
        except Exception:
            logger.exception("udp.receive_failed")

    def _remember(self, addr: Any) -> Address:
        if len(self._sources) >= _MAX_REMEMBERED_SOURCES:
            self._sources.clear()
        source = self._sources[addr] = Address("udp", addr[0], addr[1])
        return source


def _ask_for_timestamps(sock: socket.socket) -> bool:
    """Have the kernel stamp each datagram with its arrival (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def _waited(ancillary: list[tuple[int, int, bytes]]) -> float:
    """Seconds a datagram spent in the socket's queue, from its arrival stamp."""
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size:
            seconds: int
            nanoseconds: int
            seconds, nanoseconds = _TIMESPEC.unpack_from(raw)
            return max(0.0, time.time() - seconds - nanoseconds * 1e-9)
    return 0.0


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError, TypeError):
        return False
    return True
