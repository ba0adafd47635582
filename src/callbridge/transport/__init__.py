"""The only place that owns sockets: UDP and TCP endpoints, the WebSocket
flows the HTTP server hands over, and the RFC 3261 §18 transport layer over
them (Via stamping, response routing, error answers)."""

from .base import Address, Flow, Receiver, Transport, TransportError
from .layer import MessageHandler, TransportLayer, TransportStats
from .tcp import TcpTransport
from .udp import UdpTransport
from .via import response_destination, stamp_received
from .ws import WsFlow, WsTransport

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
    "WsFlow",
    "WsTransport",
    "response_destination",
    "stamp_received",
]
