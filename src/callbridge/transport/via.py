"""The Via rules that need to know the network: stamping `received` and
`rport` on what arrives (RFC 3261 §18.2.1, RFC 3581 §4) and choosing where a
response goes (RFC 3261 §18.2.2, RFC 3581 §4). Pure functions, no sockets."""

from __future__ import annotations

import ipaddress

from ..sip import Headers, Message, Via
from .base import DEFAULT_PORTS, Address


def stamp_received(message: Message, source: Address) -> None:
    """Add `received` (and fill an empty `rport`) to the top Via of `message`.

    `received` goes in when the sent-by host is a name or an IP other than
    the packet's source; a client asking for `rport` gets both, always.
    """
    via = message.top_via
    fill_rport = via.wants_rport and via.rport is None
    if not fill_rport and _same_ip(via.host, source.host):
        return
    # Parsed Vias are cached and shared, so the stamp goes on a copy.
    params = via.params.copy()
    params.set("received", source.host)
    if fill_rport:
        params.set("rport", str(source.port))
    replace_top_via(message.headers, Via(via.transport, via.host, via.port, params))


def replace_top_via(headers: Headers, via: Via) -> None:
    """Put `via` in place of the first Via value.

    The new value becomes the first header field: only the order of the Via
    values among themselves carries meaning (RFC 3261 §7.3.1).
    """
    headers.pop_first("Via")
    headers.prepend("Via", str(via))


def response_destination(via: Via, source: Address) -> Address:
    """Where a response goes when it cannot follow the request's connection.

    `via` is the response's top Via (as stamped on receipt) and `source` where
    the request came from. For a reliable transport the caller first tries the
    connection the request came on (RFC 3261 §18.2.2); this is the address to
    connect to when that connection is gone.
    """
    transport = source.transport
    sent_by_port = via.port or DEFAULT_PORTS.get(transport, 5060)
    if source.reliable:
        return Address(transport, _bare(via.received or via.host), sent_by_port)
    maddr = via.params.get("maddr")
    if maddr:
        return Address(transport, _bare(maddr), via.port or 5060)
    if via.wants_rport:
        # RFC 3581 §4: back to the source address and port, which the stamp
        # recorded; an unstamped Via still has the source itself.
        return Address(transport, _bare(via.received or source.host), via.rport or source.port)
    return Address(transport, _bare(via.received or via.host), sent_by_port)


def _same_ip(via_host: str, source_host: str) -> bool:
    if via_host == source_host:
        return True
    try:
        return ipaddress.ip_address(_bare(via_host)) == ipaddress.ip_address(source_host)
    except ValueError:
        return False  # a domain name in sent-by: always stamped


def _bare(host: str) -> str:
    """An IPv6 reference as the socket API writes it: without brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host
