"""The SIP proxies an admin puts in front of callbridge (an SBC, Kamailio):
who sent a request that came through one of them.

A request from a trusted proxy is judged by the address the proxy reports
for its sender, not by the proxy's own: the flood guard counts per phone,
and one phone guessing passwords does not cut off every phone behind the
proxy. The proxy reports it in the sender's Via, which it stamps with
`received` when the packet came from elsewhere than the Via says (RFC 3261
§18.2.1); Kamailio's `add_path_received()` repeats it in the Path of a
REGISTER. Only the networks the admin names are believed: anyone else could
write any Via.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

from ..sip import ParseError, Request
from ..sip.uri import SipURI, parse_name_addr, parse_uri

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Text a sender's address may take as a guard key (an IPv6 literal is 45).
_MAX_HOST = 64


class TrustedProxies:
    """The networks of the proxies whose word on a sender is taken."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def is_proxy(self, host: str) -> bool:
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def sender_of(self, request: Request, source: str) -> str:
        """The address `request` is judged by: `source`, unless `source` is a
        trusted proxy; then the first address down its Via (and Path) that
        is not a trusted proxy; the proxy itself for a request it made."""
        if not self.is_proxy(source):
            return source
        try:
            for via in request.vias:
                host = (via.received or via.host).strip("[]")
                if not self.is_proxy(host):
                    return host[:_MAX_HOST]
            return self._path_received(request) or source
        except ParseError:
            return source

    def _path_received(self, request: Request) -> str | None:
        """The address a proxy wrote in its Path entry (Kamailio's
        `add_path_received()`), for a REGISTER whose Via says nothing more."""
        if request.method != "REGISTER":
            return None
        for value in request.headers.get_all("Path"):
            try:
                uri = parse_name_addr(value).uri
                received = uri.params.get("received") if isinstance(uri, SipURI) else None
                sender = parse_uri(unquote(received.strip('"'))) if received else None
            except ParseError:
                continue
            if isinstance(sender, SipURI) and not self.is_proxy(sender.host):
                return sender.host.strip("[]")[:_MAX_HOST]
        return None
