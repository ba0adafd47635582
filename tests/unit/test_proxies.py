"""Who sent a request that came through a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest

from callbridge.pbx.proxies import TrustedProxies
from callbridge.sip import Request, parse

PROXIES = TrustedProxies(
    [ipaddress.ip_network("127.0.0.2/32"), ipaddress.ip_network("10.9.0.0/16")]
)


def request(*vias: str, method: str = "INVITE", extra: tuple[str, ...] = ()) -> Request:
    lines = [
        f"{method} sip:102@127.0.0.1 SIP/2.0",
        *(f"Via: {via}" for via in vias),
        "Max-Forwards: 69",
        "From: <sip:alice@127.0.0.1>;tag=a",
        "To: <sip:102@127.0.0.1>",
        "Call-ID: who-sent-it",
        f"CSeq: 1 {method}",
        *extra,
    ]
    message = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


PROXY_VIA = "SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-p;received=127.0.0.2"


def test_a_request_from_elsewhere_is_judged_by_its_source() -> None:
    forged = request("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-a", PROXY_VIA)
    assert PROXIES.sender_of(forged, "203.0.113.5") == "203.0.113.5"


def test_through_a_proxy_the_sender_is_the_address_the_proxy_stamped() -> None:
    phone = "SIP/2.0/UDP 192.168.1.20:5062;received=203.0.113.7;rport=40000;branch=z9hG4bK-a"
    assert PROXIES.sender_of(request(PROXY_VIA, phone), "127.0.0.2") == "203.0.113.7"


def test_a_via_the_proxy_did_not_stamp_names_the_sender_itself() -> None:
    phone = "SIP/2.0/UDP 203.0.113.8:5062;branch=z9hG4bK-a"
    assert PROXIES.sender_of(request(PROXY_VIA, phone), "127.0.0.2") == "203.0.113.8"


def test_a_chain_of_trusted_proxies_is_walked_down_to_the_phone() -> None:
    inner = "SIP/2.0/TCP 10.9.1.1:5060;branch=z9hG4bK-i"
    phone = "SIP/2.0/TLS [2001:db8::7]:5061;branch=z9hG4bK-a"
    assert PROXIES.sender_of(request(PROXY_VIA, inner, phone), "127.0.0.2") == "2001:db8::7"


def test_a_request_the_proxy_made_itself_is_the_proxys() -> None:
    assert PROXIES.sender_of(request(PROXY_VIA, method="OPTIONS"), "127.0.0.2") == "127.0.0.2"


def test_a_register_with_only_the_paths_received_uses_it() -> None:
    path = "Path: <sip:127.0.0.2;lr;received=sip:203.0.113.9:5062>"
    register = request(PROXY_VIA, method="REGISTER", extra=(path,))
    assert PROXIES.sender_of(register, "127.0.0.2") == "203.0.113.9"


@pytest.mark.parametrize("host", ["127.0.0.2", "10.9.200.3", "[10.9.0.1]"])
def test_the_networks_named_are_proxies(host: str) -> None:
    assert PROXIES.is_proxy(host)


def test_no_proxies_trusted_means_no_request_is_judged_by_its_via() -> None:
    nobody = TrustedProxies()
    phone = "SIP/2.0/UDP 203.0.113.8:5062;branch=z9hG4bK-a"
    assert not nobody
    assert nobody.sender_of(request(PROXY_VIA, phone), "127.0.0.2") == "127.0.0.2"
