"""RTP port pairs from a configured range: an even port for RTP and the next
odd one for RTCP (RFC 3550 §11), bound on allocation and freed on release."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
from dataclasses import dataclass

from .errors import MediaError

# A burst must wait in the kernel while the loop is busy; media sockets are many,
# so ask for less than the SIP socket does (the kernel caps it at rmem_max).
RECEIVE_BUFFER_BYTES = 256 * 1024


class PortRangeError(ValueError):
    """A port range setting that cannot be used; `problem` says why."""

    def __init__(self, text: str, problem: str) -> None:
        super().__init__(f"RTP port range {text!r}: {problem}")
        self.text = text
        self.problem = problem


class PortsExhausted(MediaError):
    """Every port pair of the range is in use (or held by another process)."""


@dataclass(frozen=True, slots=True)
class PortRange:
    """Inclusive bounds, as in `CALLBRIDGE_RTP_PORTS=10000-20000`."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        low, sep, high = text.strip().partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            raise PortRangeError(text, "expected two port numbers as FIRST-LAST") from None
        if not 1 <= first <= last <= 65535:
            raise PortRangeError(text, "ports must satisfy 1 <= FIRST <= LAST <= 65535")
        self = cls(first, last)
        if not self.rtp_ports():
            raise PortRangeError(text, "holds no even port followed by an odd one")
        return self

    def rtp_ports(self) -> range:
        """The even RTP ports whose RTCP port (+1) is also in the range."""
        return range(self.first + (self.first & 1), self.last, 2)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(slots=True)
class PortPair:
    """Two bound, non-blocking sockets: RTP on `port`, RTCP on `port + 1`."""

    host: str
    port: int
    rtp: socket.socket
    rtcp: socket.socket


class RtpPortAllocator:
    """Hands out port pairs of `ports` bound on `host`, picked at random.

    In order, the next call's ports were easy to guess and spray (issue 11,
    "RTP bleed"); at random, a stranger must cover the whole range. A random
    pick swaps the last free port into its place, so picking and releasing
    are O(1) however full the range. A port that another
    process holds is skipped and tried again on a later allocation."""

    def __init__(self, ports: PortRange | str, host: str = "0.0.0.0") -> None:
        self.range = PortRange.parse(ports) if isinstance(ports, str) else ports
        self.host = host
        self._family = (
            socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        )
        self._free: list[int] = list(self.range.rtp_ports())
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> PortPair:
        """Bind a free pair picked at random; `PortsExhausted` when none can be bound."""
        held: list[int] = []  # by other processes: back into the pool afterwards
        try:
            while self._free:
                port = self._take(secrets.randbelow(len(self._free)))
                pair = self._bind(port)
                if pair is not None:
                    self._in_use.add(port)
                    return pair
                held.append(port)
        finally:
            for port in held:
                self._give(port)
        raise PortsExhausted(
            f"no free RTP port pair in {self.range} on {self.host}: "
            f"{len(self._in_use)} of {self.capacity} pairs in use by calls, "
            f"the other {len(held)} held by other processes"
        )

    def release(self, pair: PortPair) -> None:
        """Close the pair's sockets (if still open) and return its port; idempotent."""
        pair.rtp.close()
        pair.rtcp.close()
        if pair.port in self._in_use:
            self._in_use.remove(pair.port)
            self._give(pair.port)

    def _take(self, index: int) -> int:
        """Remove the free port at `index`: the last one fills its place."""
        free = self._free
        port, last = free[index], free.pop()
        if index < len(free):
            free[index] = last
        return port

    def _give(self, port: int) -> None:
        self._free.append(port)

    def _bind(self, port: int) -> PortPair | None:
        sockets: list[socket.socket] = []
        try:
            for number in (port, port + 1):
                sock = socket.socket(self._family, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.setblocking(False)
                sock.bind((self.host, number))
        except OSError:
            for sock in sockets:
                sock.close()
            return None
        for sock in sockets:
            # A kernel that refuses keeps its default.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        return PortPair(self.host, port, sockets[0], sockets[1])
