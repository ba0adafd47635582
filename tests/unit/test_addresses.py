"""Which addresses the start log tells people to point phones at."""

from __future__ import annotations

import pytest

from callbridge import settings
from callbridge.transport.addresses import interface_addresses, reachable_addresses

MACHINE = ["127.0.0.1", "::1", "192.0.2.2", "fd00::2", "fe80::fc:ff:fe00:1", "10.1.2.3"]


def test_a_listener_bound_to_one_address_is_reached_there_only() -> None:
    assert reachable_addresses("192.0.2.2", MACHINE) == ["192.0.2.2"]


def test_every_ipv4_interface_for_0_0_0_0_loopback_last() -> None:
    assert reachable_addresses("0.0.0.0", MACHINE) == ["192.0.2.2", "10.1.2.3", "127.0.0.1"]


def test_the_ipv6_wildcard_takes_both_families_but_not_link_local() -> None:
    assert reachable_addresses("::", MACHINE) == [
        "192.0.2.2",
        "10.1.2.3",
        "fd00::2",
        "127.0.0.1",
        "::1",
    ]


def test_this_machine_has_at_least_loopback() -> None:
    assert "127.0.0.1" in interface_addresses()


def test_a_host_name_mapped_to_loopback_advertises_the_first_interface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Debian maps the host name to 127.0.1.1: SDP and Contact must not
    carry an address no other machine can reach."""
    monkeypatch.setattr(settings.socket, "gethostbyname", lambda name: "127.0.1.1")
    monkeypatch.setattr(settings, "interface_addresses", lambda: MACHINE)
    assert settings.own_address() == "192.0.2.2"
    monkeypatch.setattr(settings, "interface_addresses", lambda: ["127.0.0.1", "::1"])
    assert settings.own_address() == "127.0.0.1"
    monkeypatch.setattr(settings.socket, "gethostbyname", lambda name: "198.51.100.7")
    assert settings.own_address() == "198.51.100.7"
