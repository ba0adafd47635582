"""Where the relay may send: allowed networks and this PBX's own sockets."""

from __future__ import annotations

import ipaddress

import pytest

from callbridge.media.policy import AllowedNetworks, MediaPolicy, NetworksError, OwnDestination

PUBLIC = ["8.8.8.8", "203.0.114.7", "2a00:1450:4001::1", "1.1.1.1"]
NOT_PUBLIC = [
    "10.1.2.3",
    "172.16.0.9",
    "192.168.1.5",
    "127.0.0.1",
    "127.0.0.3",
    "169.254.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "fe80::1",
    "fc00::5",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_allows_globally_routable_addresses(address: str) -> None:
    assert ipaddress.ip_address(address) in AllowedNetworks.parse("public")


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_public_leaves_out_private_loopback_link_local_and_multicast(address: str) -> None:
    assert ipaddress.ip_address(address) not in AllowedNetworks.parse("public")


def test_listed_networks_are_allowed_beside_or_instead_of_public() -> None:
    lan = AllowedNetworks.parse(" public , 192.168.0.0/16,fc00::/7 ")
    assert ipaddress.ip_address("192.168.1.5") in lan
    assert ipaddress.ip_address("fc00::5") in lan
    assert ipaddress.ip_address("10.1.2.3") not in lan
    provider_only = AllowedNetworks.parse("203.0.113.0/24")
    assert ipaddress.ip_address("203.0.113.9") in provider_only
    assert ipaddress.ip_address("8.8.8.8") not in provider_only


@pytest.mark.parametrize("text", ["publik", "10.0.0.0/33", "10.0.0.0/8;public", "::g"])
def test_a_bad_entry_is_named(text: str) -> None:
    with pytest.raises(NetworksError) as raised:
        AllowedNetworks.parse(text)
    assert raised.value.entry in text


def test_our_own_sockets_are_refused_and_other_ports_of_our_host_are_not() -> None:
    policy = MediaPolicy(AllowedNetworks.parse("127.0.0.0/8"))
    policy.add_own("127.0.0.1", range(30000, 31000))
    policy.add_own("0.0.0.0", 5060)  # SIP on every address
    policy.add_own("pbx.example.com", 5060)  # a name: nothing to compare with
    for host, port in [("127.0.0.1", 30000), ("127.0.0.1", 30999), ("127.0.0.2", 5060)]:
        with pytest.raises(OwnDestination):
            policy.check(host, port)
        assert not policy.allows((host, port))
    for host, port in [("127.0.0.1", 31000), ("127.0.0.2", 30000), ("127.0.0.1", 5062)]:
        policy.check(host, port)
        assert policy.allows((host, port))
    with pytest.raises(OwnDestination, match="unspecified"):
        policy.check("0.0.0.0", 4000)


def test_a_wildcard_socket_is_ours_on_every_interface_address_of_the_host() -> None:
    policy = MediaPolicy(AllowedNetworks.parse("public,10.0.0.0/8"))
    policy.add_own("0.0.0.0", range(30000, 31000))  # RTP on every address
    policy.set_local(["10.1.2.3", "2001:db8::7", "fe80::1%eth0"])
    for host in ("10.1.2.3", "127.0.0.1", "2001:db8::7"):
        with pytest.raises(OwnDestination):
            policy.check(host, 30000)
    policy.check("10.1.2.4", 30000)  # another machine of the LAN
    assert policy.allows(("10.1.2.4", 30000))


def test_an_address_read_again_is_parsed_once_and_what_is_remembered_is_bounded() -> None:
    from callbridge.media.policy import _ip_of, ip_of

    _ip_of.cache_clear()
    assert str(ip_of("192.0.2.7")) == "192.0.2.7"
    assert ip_of("192.0.2.7") is ip_of("192.0.2.7")
    assert ip_of("not-an-address") is None
    assert ip_of("1" * 10_000) is None  # no address is that long: not remembered
    info = _ip_of.cache_info()
    assert (info.hits, info.misses, info.currsize) == (2, 2, 2)
    for n in range(5_000):
        ip_of(f"10.0.{n // 256}.{n % 256}")
    assert _ip_of.cache_info().currsize == 4096
