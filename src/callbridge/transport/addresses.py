"""Where phones can reach a listener: the address it is bound to or, bound
to every interface (`0.0.0.0`, `::`), each interface's own addresses, which
`ifaddr` reads from the system (nothing is sent). Said once at start, so a
person setting up a phone knows what to type (issue 12)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import ifaddr

_ANY = {"", "0.0.0.0", "::"}


def interface_addresses() -> list[str]:
    """Every address of this machine's interfaces, IPv4 and IPv6."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return found


def reachable_addresses(bound: str, interfaces: Iterable[str]) -> list[str]:
    """The addresses a socket bound to `bound` answers on, in the
    interfaces' order, IPv4 first and loopback last. An `0.0.0.0` socket takes
    IPv4 only; `::` takes both (Linux's dual stack). Link-local IPv6 is left
    out: it needs an interface name no phone is given."""
    if bound not in _ANY:
        return [bound]
    wanted = {4} if bound == "0.0.0.0" else {4, 6}
    addresses = []
    for text in interfaces:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version in wanted and not address.is_link_local:
            addresses.append(address)
    unique = list(dict.fromkeys(addresses))  # in the interfaces' order
    unique.sort(key=lambda a: (a.is_loopback, a.version))
    return [a.compressed for a in unique]
