"""The CRM end to end, through the HTTP API a browser uses: an admin makes
an employee with a line; the employee signs in and follows their events; a
stranger calls in, and the employee creates the caller's contact during the
call, which links the call; the next call from that number is identified
as the new contact and missed; the contact's, the employee's and the
missed-calls histories then say so, and another operator may read none of
it. SIPp is the provider on 127.0.0.2 and the employee's phone; SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from .conftest import free_port, start_sipp
from .test_calls import (  # noqa: F401 - fixtures among them
    BOB,
    _assert_succeeded,
    fresh_postgres,
    pbx,
    start_pbx,
)
from .test_events import CUSTOMER, CUSTOMER_E164, Crm, EventStream, crm, events  # noqa: F401
from .test_trunk_calls import DID, PROVIDER, external_line, route_incoming_to

pytestmark = pytest.mark.integration

PASSWORD = "employee-password-1"


@contextmanager
def _signed_in(crm: Crm, login: str) -> Iterator[httpx.Client]:  # noqa: F811 - the fixture's name
    base_url = f"http://127.0.0.1:{crm.pbx.server.http_port}"
    with httpx.Client(base_url=base_url, timeout=10) as client:
        signed = client.post("/api/v1/auth/login", json={"username": login, "password": PASSWORD})
        assert signed.status_code == 200, signed.text
        client.headers["Authorization"] = f"Bearer {signed.json()['token']}"
        yield client


def _employee(crm: Crm, name: str, login: str, line_id: int | None = None) -> int:  # noqa: F811
    with crm.pbx.api() as api:
        created = api.post(
            "/api/v1/employees",
            json={"name": name, "login": login, "password": PASSWORD, "internal_line_id": line_id},
        )
        assert created.status_code == 201, created.text
        assert PASSWORD not in created.text
        if line_id is not None:
            crm.pbx.apply(api)  # the line's new employee is a staged edit
    employee_id: int = created.json()["id"]
    return employee_id


def _customer_calls(crm: Crm, port: int, scenario: str, talk_ms: int) -> Any:  # noqa: F811
    customer = start_sipp(
        scenario,
        crm.pbx.server,
        crm.pbx.tmp_path,
        port=port,
        local_ip=PROVIDER,
        extra=["-s", CUSTOMER, "-key", "did", DID, "-d", str(talk_ms)],
    )
    crm.pbx.phones.append(customer)
    return customer


def _until(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_contact_made_during_a_call_owns_it_and_the_next_call(
    crm: Crm,  # noqa: F811
    events: Callable[..., EventStream],  # noqa: F811
) -> None:
    line_id = crm.pbx.line(BOB, ring_timeout=5, max_devices=2)
    bob = _employee(crm, "Bob Operator", "bob", line_id)
    provider_port = free_port(host=PROVIDER)
    external_line(crm.pbx, provider_port)
    route_incoming_to(crm.pbx, BOB.number)
    with _signed_in(crm, "bob") as api:
        stream = events(api.headers["Authorization"].removeprefix("Bearer "), since=0)

        # A stranger calls; Bob answers and makes the caller's card meanwhile.
        phone = crm.pbx.device(BOB, "call_uas_answer.xml")
        customer = _customer_calls(crm, provider_port, "provider_uac_call.xml", talk_ms=3000)
        _, ringing = stream.wait_for("ringing")
        assert ringing["matches"] == [] and ringing["client_number"] == CUSTOMER_E164, ringing
        first_call = ringing["call_id"]
        stream.wait_for("answered")
        created = api.post(
            "/api/v1/contacts",
            json={
                "name": "Anna Petrova",
                "phones": [{"type": "mobile", "number": "+7 916 123-45-67"}],
                "call_id": first_call,
            },
        )
        assert created.status_code == 201, created.text
        anna = created.json()["id"]
        _assert_succeeded(customer, phone, pbx=crm.pbx)
        stream.wait_for("ended")

        def first_closed() -> bool:
            return api.get(f"/api/v1/calls/{first_call}").json()["status"] == "answered"

        _until(first_closed, "the first call's record was not closed")
        call = api.get(f"/api/v1/calls/{first_call}").json()
        assert call["card"] == {"type": "contact", "id": anna, "name": "Anna Petrova"}, call
        assert (call["employee_id"], call["internal_number"]) == (bob, BOB.number), call

        # She calls again: known now, and nobody answers.
        phone = crm.pbx.device(BOB, "call_uas_cancelled.xml")
        customer = _customer_calls(crm, provider_port, "provider_uac_refused.xml", talk_ms=0)
        _assert_succeeded(customer, phone, pbx=crm.pbx)
        [_, ringing] = [m for _, m in stream.messages if m["type"] == "ringing"]
        assert ringing["matches"] == [{"type": "contact", "id": anna, "name": "Anna Petrova"}]
        second_call = ringing["call_id"]
        stream.wait_for("missed")

        def history_complete() -> bool:
            items = api.get(f"/api/v1/contacts/{anna}/calls").json()["items"]
            return [c["status"] for c in items] == ["missed", "answered"]

        _until(history_complete, "the contact's history is not missed + answered")
        history = api.get(f"/api/v1/contacts/{anna}/calls").json()
        assert [c["id"] for c in history["items"]] == [second_call, first_call]
        assert history["total"] == 2
        assert all(c["client_number"] == CUSTOMER_E164 for c in history["items"])
        own = api.get(f"/api/v1/employees/{bob}/calls").json()
        assert [c["id"] for c in own["items"]] == [second_call, first_call]
        missed = api.get("/api/v1/calls", params={"status": "missed"}).json()
        assert [c["id"] for c in missed["items"]] == [second_call]

    # Another operator sees neither Bob's calls nor Bob's customer.
    _employee(crm, "Carol Operator", "carol")
    with _signed_in(crm, "carol") as other:
        assert other.get(f"/api/v1/calls/{first_call}").status_code == 403
        assert other.get(f"/api/v1/employees/{bob}/calls").status_code == 403
        assert other.get(f"/api/v1/contacts/{anna}").status_code == 404
        assert other.get("/api/v1/calls").json()["total"] == 0
