"""What every transport (UDP, TCP, WebSocket; TLS later) offers the layer
above it: addresses, the `Transport` interface and the receiver callbacks."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ..sip import Message

# RFC 3261 §19.1.2: the port a peer listens on when a URI or Via names none.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}
RELIABLE = frozenset({"tcp", "tls", "sctp", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message comes from or goes: `Address("udp", "192.0.2.1", 5060)`.

    `host` is an IP literal as the socket API writes it (IPv6 without
    brackets), or "localhost".
    """

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class TransportError(Exception):
    """A message that could not be sent or a connection that failed.

    RFC 3261 §18.4 has these reported to the transaction layer, which treats
    them like a timeout (§8.1.3.1, §17.1.4).
    """

    def __init__(self, address: Address, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class Flow(Protocol):
    """One open connection of a stream transport (RFC 5626 calls it a flow)."""

    @property
    def local(self) -> Address: ...

    @property
    def remote(self) -> Address: ...

    @property
    def is_open(self) -> bool: ...

    def close(self) -> None: ...


class Receiver(Protocol):
    """Who a transport hands its input to; both calls must not block."""

    def on_message(
        self, message: Message, source: Address, transport: Transport, waited: float = 0.0
    ) -> None:
        """A message parsed off the wire from `source`, after it `waited` that
        many seconds in the socket's queue (0 when the transport cannot tell)."""

    def on_error(
        self, error: Exception, data: bytes, address: Address, transport: Transport
    ) -> None:
        """Input that failed or output that could not go out.

        A `ParseError` (or `sip.framing.FramingError`) carries the bytes
        received from `address`; a `TransportError` the bytes that were not
        sent to it.
        """

    def on_closed(self, remote: Address, transport: Transport) -> None:
        """The connection (flow) with `remote` closed, whoever closed it."""


class Transport(abc.ABC):
    """One local endpoint: a UDP socket, a TCP listener with its connections,
    or the WebSockets an HTTP server handed over.

    `send` never blocks and never raises for network trouble: what cannot be
    delivered is reported to the receiver's `on_error` as a `TransportError`.
    """

    name: ClassVar[str]
    reliable: ClassVar[bool]

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """The address the endpoint listens on (the real port when bound to 0)."""

    @abc.abstractmethod
    def send(self, data: bytes, dest: Address) -> None:
        """Send `data` to `dest`; stream transports reuse an open connection
        to `dest` (RFC 3261 §18.1.1, §18.2.2) and connect when there is none."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and close every connection."""

    def flow(self, remote: Address) -> Flow | None:
        """The open connection to `remote`; datagram transports have none."""
        return None
