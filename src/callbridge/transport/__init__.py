"""The only place that owns sockets: UDP and TCP endpoints, the RFC 3261 §18
transport layer over them (Via stamping, response routing, error answers)."""

from .base import Address, Flow, Receiver, Transport, TransportError
from .layer import MessageHandler, TransportLayer, TransportStats
from .tcp import TcpTransport
from .udp import UdpTransport
from .via import response_destination, stamp_received

__all__ = [
    "Address",
    "Flow",
    "MessageHandler",
    "Receiver",
    "TcpTransport",
    "Transport",
    "TransportError",
    "TransportLayer",
    "TransportStats",
    "UdpTransport",
    "response_destination",
    "stamp_received",
]
