"""Calls through an external line, with SIPp on 127.0.0.2 (and 127.0.0.3)
as the provider: a customer's call routed by the incoming rules to an
employee's phone with the caller's number normalized to E.164, and an
employee's call out through the outgoing rules, the provider's digest
challenge answered with the line's login and the dialled number normalized
on the way. Around them: a provider known by an alternative address, a
stranger's INVITE taken for a phone's, a full line passing the call to the
next rule (or 503), and a deny rule."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .conftest import free_port, start_sipp
from .test_calls import (
    ALICE,
    BOB,
    Pbx,
    _assert_succeeded,
    _final_status,
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)

pytestmark = pytest.mark.integration

PROVIDER = "127.0.0.2"
# A second provider, or the server of a line whose provider sends from PROVIDER.
OTHER_PROVIDER = "127.0.0.3"
LOGIN, SECRET = "acc-42", "provider-secret-1"
CUSTOMER, DID = "89161234567", "380441234567"


def external_line(
    pbx: Pbx,  # noqa: F811 - the fixture's name
    port: int,
    *,
    host: str = PROVIDER,
    **fields: Any,
) -> int:
    with pbx.api() as api:
        created = api.post(
            "/api/v1/external-lines",
            json={
                "code": "provider",
                "server": f"{host}:{port}",
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
    customer_calls(pbx, provider_port, employee)
    [record] = pbx.calls(1)
    assert record["direction"] == "incoming", record
    assert (record["caller_number"], record["caller_raw"]) == ("+79161234567", "89161234567")
    assert record["callee_number"] == BOB.number and record["status"] == "answered", record


def customer_calls(pbx: Pbx, provider_port: int, employee: Any) -> Any:  # noqa: F811
    """The customer (CUSTOMER) calls the DID through the SIPp provider on
    `provider_port`, and `employee`'s device answers; both scenarios must
    succeed. The provider's SIPp, for what a test checks next."""
    customer = start_sipp(
        "provider_uac_call.xml",
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-s", CUSTOMER, "-key", "did", DID, "-d", "300"],
    )
    pbx.phones.append(customer)
    _assert_succeeded(customer, employee, pbx=pbx)
    return customer


def strangers_call_rings_nobody(pbx: Pbx) -> Any:  # noqa: F811
    """A provider's INVITE from PROVIDER that callbridge must refuse: Bob's
    device registers, and its port hears nothing while SIPp's scenario
    (the refusal it expects) succeeds. The stranger's SIPp."""
    device_port = free_port()
    pbx.register(BOB, device_port)
    with silent_peer("127.0.0.1", device_port) as device:
        stranger = start_sipp(
            "provider_uac_stranger.xml",
            pbx.server,
            pbx.tmp_path,
            local_ip=PROVIDER,
            recv_timeout=5,
            extra=["-s", CUSTOMER, "-key", "did", DID],
        )
        pbx.phones.append(stranger)
        _assert_succeeded(stranger, pbx=pbx, timeout=10)
        assert_heard_nothing(device, "Bob's device", pbx.explain())
    return stranger


def mobiles_out(pbx: Pbx, provider_port: int) -> int:  # noqa: F811 - the fixture's name
    """An external line at the SIPp provider on `provider_port`, Russian
    mobiles (89XXXXXXXXX) routed to it and dialled in E.164; its id."""
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
            "fields": ["request_uri", "to"],
            "method": "e164",
        },
    )
    return line_id


@pytest.mark.parametrize("provider", ["provider_uas_auth.xml", "provider_uas_proxy_auth.xml"])
def test_an_employees_call_goes_out_through_the_provider_with_digest(
    pbx: Pbx,  # noqa: F811
    provider: str,
) -> None:
    pbx.line(ALICE)
    provider_port = free_port(host=PROVIDER)
    mobiles_out(pbx, provider_port)
    provider_sipp = start_sipp(
        provider,
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-key", "login", LOGIN, "-key", "secret", SECRET],
    )
    pbx.phones.append(provider_sipp)
    employee = pbx.call(ALICE, "89161234567", "call_uac.xml", talk_ms=300)
    _assert_succeeded(employee, provider_sipp, pbx=pbx)
    invites = provider_sipp.received(method="INVITE")
    assert len(invites) == 2 and all(
        m.first_line.startswith("INVITE sip:+79161234567@") for m in invites
    ), pbx.explain()
    assert "Authorization: Digest" in invites[1].text and SECRET not in invites[1].text
    assert "sip:+79161234567@" in (invites[1].header("To") or ""), invites[1].text
    assert "<sip:380441234567@" in (invites[1].header("P-Asserted-Identity") or "")
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


def outgoing_rule(pbx: Pbx, name: str, priority: int, action: dict[str, Any]) -> None:  # noqa: F811
    rule(
        pbx,
        "/api/v1/routing-rules",
        {
            "name": name,
            "direction": "outgoing",
            "priority": priority,
            "destination_mask": "89XXXXXXXXX",
            "action": action,
        },
    )


@contextmanager
def silent_peer(host: str, port: int = 0) -> Iterator[socket.socket]:
    """A UDP socket on `host`:`port` (0: a free one) standing for a peer that
    must hear nothing: a provider no call may reach, a phone that must not ring."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, port))
        sock.settimeout(0.5)
        yield sock


def assert_heard_nothing(sock: socket.socket, who: str, why: str) -> None:
    try:
        data = sock.recv(65535)
    except TimeoutError:
        return
    pytest.fail(f"{who} got {data[:300]!r}\n{why}")


def test_a_call_from_an_alternative_address_is_the_lines_call(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(BOB)
    # The line's server is 127.0.0.3; the provider's calls come from 127.0.0.2.
    provider_port = free_port(host=PROVIDER)
    external_line(
        pbx,
        free_port(host=OTHER_PROVIDER),
        host=OTHER_PROVIDER,
        alt_addresses=[PROVIDER],
    )
    route_incoming_to(pbx, BOB.number)
    employee = pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(pbx, provider_port, employee)
    # No digest: the provider was known by its address.
    assert not customer.received(status=407), pbx.explain()
    [record] = pbx.calls(1)
    assert record["direction"] == "incoming", record
    assert record["caller_raw"] == CUSTOMER, record
    assert record["callee_number"] == BOB.number and record["status"] == "answered", record


def test_an_invite_from_an_unknown_address_never_rings_an_employee(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(BOB)
    # The line is at 127.0.0.3 with no alternative address; its calls would
    # ring Bob, but the INVITE comes from 127.0.0.2.
    external_line(pbx, free_port(host=OTHER_PROVIDER), host=OTHER_PROVIDER)
    route_incoming_to(pbx, BOB.number)
    stranger = strangers_call_rings_nobody(pbx)
    assert stranger.received(status=403), pbx.explain()
    with pbx.api() as api:
        records = api.get("/api/v1/calls", params={"limit": 100}).json()["items"]
    assert not [r for r in records if r["status"] == "answered"], records
    assert not [r for r in records if r["direction"] == "incoming"], records


def test_the_outgoing_line_limit_fails_over_to_the_next_rule(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    with silent_peer(PROVIDER) as provider_a:
        # Line A takes no outgoing call at all; line B, at another provider, does.
        line_a = external_line(
            pbx, provider_a.getsockname()[1], code="provider-a", outgoing_lines=0
        )
        b_port = free_port(host=OTHER_PROVIDER)
        line_b = external_line(pbx, b_port, host=OTHER_PROVIDER, code="provider-b")
        outgoing_rule(pbx, "mobiles via A", 10, {"type": "external_line", "target": line_a})
        outgoing_rule(pbx, "mobiles via B", 20, {"type": "external_line", "target": line_b})
        provider_b = start_sipp(
            "provider_uas_auth.xml",
            pbx.server,
            pbx.tmp_path,
            port=b_port,
            local_ip=OTHER_PROVIDER,
            extra=["-key", "login", LOGIN, "-key", "secret", SECRET],
        )
        pbx.phones.append(provider_b)
        employee = pbx.call(ALICE, CUSTOMER, "call_uac.xml", talk_ms=300)
        _assert_succeeded(employee, provider_b, pbx=pbx, timeout=15)
        assert_heard_nothing(provider_a, "line A's provider", pbx.explain())
    assert len(provider_b.received(method="INVITE")) == 2, pbx.explain()
    [record] = pbx.calls(1)
    assert (record["direction"], record["status"]) == ("outgoing", "answered"), record
    assert record["callee_raw"] == CUSTOMER, record


def test_a_full_line_with_no_other_rule_gives_503(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    with silent_peer(PROVIDER) as provider:
        line_id = external_line(pbx, provider.getsockname()[1], outgoing_lines=0)
        outgoing_rule(pbx, "mobiles", 10, {"type": "external_line", "target": line_id})
        employee = pbx.call(ALICE, CUSTOMER, "call_uac_refused.xml", recv_timeout=5)
        _assert_succeeded(employee, pbx=pbx, timeout=15)
        assert _final_status(employee) == 503, pbx.explain()
        assert_heard_nothing(provider, "the provider", pbx.explain())
    [record] = pbx.calls(1)
    assert (record["status"], record["hangup_cause"]) == ("failed", "external lines full"), record


def test_a_deny_rule_refuses_the_call(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    with silent_peer(PROVIDER) as provider:
        # The deny rule comes first; the line's rule after it is never tried.
        line_id = external_line(pbx, provider.getsockname()[1])
        outgoing_rule(pbx, "no mobiles", 5, {"type": "deny"})
        outgoing_rule(pbx, "mobiles", 10, {"type": "external_line", "target": line_id})
        employee = pbx.call(ALICE, CUSTOMER, "call_uac_refused.xml", recv_timeout=5)
        _assert_succeeded(employee, pbx=pbx, timeout=15)
        assert_heard_nothing(provider, "the provider", pbx.explain())
    assert _final_status(employee) == 403, pbx.explain()
    refusal = employee.received(status=403)[0]
    assert refusal.first_line == "SIP/2.0 403 Forbidden", refusal.text
    [record] = pbx.calls(1)
    assert (record["status"], record["hangup_cause"]) == ("rejected", "denied by rule"), record
