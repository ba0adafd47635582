"""Calls through an external line, with SIPp on 127.0.0.2 as the provider:
a customer's call routed by the incoming rules to an employee's phone with
the caller's number normalized to E.164, and an employee's call out through
the outgoing rules, the provider's digest challenge answered with the line's
login and the dialled number normalized on the way."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import free_port, start_sipp
from .test_calls import (
    ALICE,
    BOB,
    Pbx,
    _assert_succeeded,
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.integration

PROVIDER = "127.0.0.2"
LOGIN, SECRET = "acc-42", "provider-secret-1"


def external_line(pbx: Pbx, port: int, **fields: Any) -> int:  # noqa: F811 - the fixture's name
    with pbx.api() as api:
        created = api.post(
            "/api/v1/external-lines",
            json={
                "code": "provider",
                "server": f"{PROVIDER}:{port}",
                "username": "380441234567",
                "login": LOGIN,
                "password": SECRET,
                "total_lines": 2,
                "default_region": "RU",
                **fields,
            },
        )
        assert created.status_code == 201, created.text
        pbx.apply(api)
    line_id: int = created.json()["id"]
    return line_id


def rule(pbx: Pbx, path: str, body: dict[str, Any]) -> None:  # noqa: F811 - the fixture's name
    with pbx.api() as api:
        created = api.post(path, json=body)
        assert created.status_code == 201, created.text
        pbx.apply(api)


def route_incoming_to(pbx: Pbx, number: str) -> None:  # noqa: F811 - the fixture's name
    with pbx.api() as api:
        [default] = [r for r in api.get("/api/v1/routing-rules").json()["items"] if r["is_default"]]
        changed = api.patch(
            f"/api/v1/routing-rules/{default['id']}",
            json={"action": {"type": "internal_line", "target": number}},
        )
        assert changed.status_code == 200, changed.text
        pbx.apply(api)


def test_a_customers_call_reaches_the_employee_with_the_number_in_e164(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(BOB)
    provider_port = free_port(host=PROVIDER)
    line_id = external_line(pbx, provider_port)
    route_incoming_to(pbx, BOB.number)
    rule(
        pbx,
        "/api/v1/normalization-rules",
        {
            "name": "callers to E.164",
            "priority": 1,
            "direction": "incoming",
            "external_line_id": line_id,
            "fields": ["from"],
            "method": "e164",
        },
    )
    employee = pbx.device(BOB, "call_uas_answer.xml")
    customer = start_sipp(
        "provider_uac_call.xml",
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-s", "89161234567", "-key", "did", "380441234567", "-d", "300"],
    )
    pbx.phones.append(customer)
    _assert_succeeded(customer, employee, pbx=pbx)
    [record] = pbx.calls(1)
    assert record["direction"] == "incoming", record
    assert (record["caller_number"], record["caller_raw"]) == ("+79161234567", "89161234567")
    assert record["callee_number"] == BOB.number and record["status"] == "answered", record


def test_an_employees_call_goes_out_through_the_provider_with_digest(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    provider_port = free_port(host=PROVIDER)
    line_id = external_line(pbx, provider_port)
    rule(
        pbx,
        "/api/v1/routing-rules",
        {
            "name": "Russian mobiles",
            "direction": "outgoing",
            "priority": 10,
            "destination_mask": "89XXXXXXXXX",
            "action": {"type": "external_line", "target": line_id},
        },
    )
    rule(
        pbx,
        "/api/v1/normalization-rules",
        {
            "name": "dial E.164",
            "priority": 1,
            "direction": "outgoing",
            "external_line_id": line_id,
            "fields": ["request_uri"],
            "method": "e164",
        },
    )
    provider = start_sipp(
        "provider_uas_auth.xml",
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-key", "login", LOGIN, "-key", "secret", SECRET],
    )
    pbx.phones.append(provider)
    employee = pbx.call(ALICE, "89161234567", "call_uac.xml", talk_ms=300)
    _assert_succeeded(employee, provider, pbx=pbx)
    invites = provider.received(method="INVITE")
    assert len(invites) == 2 and all(
        m.first_line.startswith("INVITE sip:+79161234567@") for m in invites
    ), pbx.explain()
    assert "Authorization: Digest" in invites[1].text and SECRET not in invites[1].text
    [record] = pbx.calls(1)
    assert record["direction"] == "outgoing", record
    assert (record["callee_number"], record["callee_raw"]) == ("+79161234567", "89161234567")
    assert record["caller_number"] == ALICE.number and record["status"] == "answered", record


def test_a_number_no_outgoing_rule_allows_is_refused(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    employee = pbx.call(ALICE, "89161234567", "call_uac_refused.xml")
    assert employee.wait(30).successful == 1, pbx.explain()
    assert employee.received(status=403), pbx.explain()
    [record] = pbx.calls(1)
    assert (record["status"], record["hangup_cause"]) == ("rejected", "no outgoing route")
