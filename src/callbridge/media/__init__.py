"""RTP media: anchoring calls' audio in process (relay now; recording, playing,
mixing, DTMF and WebRTC legs attach to the same per-call graph later)."""

from .engine import (
    Leg,
    LegStats,
    LocalLeg,
    LocalMediaEngine,
    LocalMediaSession,
    MediaEngine,
    MediaSession,
    StreamStats,
    Tap,
)
from .errors import MediaError
from .ports import PortPair, PortRange, PortRangeError, PortsExhausted, RtpPortAllocator
from .rtp import RtpError, RtpPacket, TelephoneEvent

__all__ = [
    "Leg",
    "LegStats",
    "LocalLeg",
    "LocalMediaEngine",
    "LocalMediaSession",
    "MediaEngine",
    "MediaError",
    "MediaSession",
    "PortPair",
    "PortRange",
    "PortRangeError",
    "PortsExhausted",
    "RtpError",
    "RtpPacket",
    "RtpPortAllocator",
    "StreamStats",
    "Tap",
    "TelephoneEvent",
]
