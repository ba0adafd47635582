"""Where the relay may send a call's audio: never to this PBX's own sockets,
and only into the networks an admin allowed (`CALLBRIDGE_MEDIA_ALLOWED_NETWORKS`)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import MediaError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The longest text an IP address is written in (IPv6 with an IPv4 tail);
# anything longer is no address and is not remembered.
_LONGEST_ADDRESS = 45


def ip_of(text: str) -> IPAddress | None:
    """`text` as an IP address, or None when it is none. A call's setup
    reads the same few hosts a dozen times (SDP, policy, the dialplan's
    providers), and parsing one costs ~10 µs: the answers are remembered,
    for at most 4,096 texts no longer than an address (a flood of new ones
    pushes the oldest out)."""
    if len(text) > _LONGEST_ADDRESS:
        return None
    return _ip_of(text)


@functools.lru_cache(maxsize=4096)
def _ip_of(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The word for every globally routable address (`ipaddress`'s `is_global`):
# ordinary phones and providers on the internet.
PUBLIC = "public"
DEFAULT_ALLOWED_NETWORKS = PUBLIC


class NetworksError(ValueError):
    """An allowed-networks setting that cannot be read; `entry` is the bad part."""

    def __init__(self, entry: str, problem: str) -> None:
        super().__init__(f"media allowed networks: {entry!r} {problem}")
        self.entry = entry
        self.problem = problem


class OwnDestination(MediaError):
    """An SDP names one of this PBX's own sockets as the place to send media."""


@dataclass(frozen=True, slots=True)
class AllowedNetworks:
    """`public` and/or networks in CIDR notation, comma separated."""

    public: bool
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> AllowedNetworks:
        public = False
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry.lower() == PUBLIC:
                public = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise NetworksError(entry, f"is neither {PUBLIC!r} nor a network") from None
        return cls(public, tuple(networks))

    def __contains__(self, address: IPAddress) -> bool:
        if self.public and address.is_global and not address.is_multicast:
            return True
        return any(address in network for network in self.networks)


@dataclass(slots=True)
class MediaPolicy:
    """The rule the engine applies before it sends to an address.

    `own` holds (address, ports) of this host's sockets: the RTP range on the
    relay's address, the SIP port on its. An SDP that names one is
    refused outright (it would make the PBX feed itself); an address outside
    `allowed` is never sent to (behind NAT the leg waits for a latch instead)."""

    allowed: AllowedNetworks = field(default_factory=lambda: AllowedNetworks(True, ()))
    own: list[tuple[IPAddress | None, range]] = field(default_factory=list)
    # This host's interface addresses: where a wildcard socket answers
    # besides loopback (the app reads them at start).
    local: frozenset[IPAddress] = frozenset()

    def set_local(self, addresses: Iterable[str]) -> None:
        """This host's interface addresses (IP literals; others skipped)."""
        found = set()
        for text in addresses:
            try:
                found.add(ipaddress.ip_address(text))
            except ValueError:
                continue
        self.local = frozenset(found)

    def add_own(self, host: str, ports: range | int) -> None:
        """One of our sockets; host '0.0.0.0' or '::' (every address) counts as
        any. A host name is no address an SDP can compare with: skipped."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        span = range(ports, ports + 1) if isinstance(ports, int) else ports
        self.own.append((None if address.is_unspecified else address, span))

    def check(self, host: str, port: int) -> None:
        """Raise `OwnDestination` when (host, port) is one of our own sockets."""
        address = ip_of(host)
        if address is None:
            raise ValueError(f"{host!r} is not an IP address")
        if address.is_unspecified:
            raise OwnDestination(f"media address {host} is unspecified (it means this host)")
        for own, ports in self.own:
            # A wildcard socket answers on every address of the host.
            mine = (address.is_loopback or address in self.local) if own is None else own == address
            if mine and port in ports:
                raise OwnDestination(f"media address {host}:{port} is this PBX's own socket")

    def allows(self, address: tuple[str, int]) -> bool:
        """Whether the relay may send to `address` (an IP literal, port)."""
        try:
            self.check(*address)
        except OwnDestination:
            return False
        ip = ip_of(address[0])
        return ip is not None and ip in self.allowed
