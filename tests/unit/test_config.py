"""Apply's checks of external lines, and versions stored before a field
existed still running."""

from __future__ import annotations

from typing import Any

from callbridge.pbx.config import Problem, running_config, validate
from callbridge.store.models import ConfigVersion


def external_line(**fields: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "code": "provider",
        "active": True,
        "server": "127.0.0.2:5060",
        "username": "380441234567",
        "register": False,
        "login": "acc-42",
        "password": "provider-secret-1",
        "total_lines": 2,
        "outgoing_lines": 2,
        "transport": "tcp",
        "incoming_auth": False,
        "alt_addresses": [],
        "default_region": "RU",
        "comment": "",
        **fields,
    }


def test_checking_a_providers_calls_without_credentials_cannot_be_applied() -> None:
    def line_problems(**fields: Any) -> list[Problem]:
        problems = validate({"external_lines": [external_line(**fields)]})
        return [p for p in problems if p.object == "external_line"]

    assert line_problems(incoming_auth=True, password="") == [
        Problem(
            "external_line",
            1,
            "incoming_auth",
            "checking the provider's calls needs a login and password",
        )
    ]
    assert line_problems(incoming_auth=True, login="") != []
    assert line_problems(incoming_auth=True) == []
    assert line_problems(incoming_auth=False, password="") == []


async def test_a_version_from_before_incoming_auth_runs_with_it_off() -> None:
    line = external_line()
    del line["incoming_auth"]
    version = ConfigVersion(id=3, source="apply", snapshot={"external_lines": [line]})

    # Credentials never ride in a version: they come from the live tables.
    running = await running_config(version, {"external_lines": {1: {"password": "secret"}}})

    [trunk] = running.trunks
    assert (trunk.incoming_auth, trunk.transport, trunk.address) == (False, "tcp", "127.0.0.2")
    assert running.dialplan.trunk_for_source("127.0.0.2", "tcp") == trunk
    assert running.dialplan.trunk_for_source("127.0.0.2", "udp") is None
    assert running.dialplan.is_provider_address("127.0.0.2")


async def test_a_version_from_before_inband_dtmf_runs_with_it_off_and_a_new_one_carries_it() -> (
    None
):
    old = external_line()
    new = external_line(id=2, code="other", server="127.0.0.3", inband_dtmf=True)
    version = ConfigVersion(id=4, source="apply", snapshot={"external_lines": [old, new]})
    running = await running_config(version, {"external_lines": {}})
    assert [t.inband_dtmf for t in sorted(running.trunks, key=lambda t: t.id)] == [False, True]
