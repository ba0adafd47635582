"""An operator sees of a card they may not open (another operator's) only
its type, in the ringing event and in the call record alike, while an
admin or supervisor sees every name: a SIPp customer calls an operator's
line through an external line on a running `callbridge serve`. On SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from callbridge.store import Database
from callbridge.store.models import Account, Contact, Lead

from .test_calls import BOB, _assert_succeeded
from .test_events import (  # noqa: F401 - fixtures
    Crm,
    EventStream,
    crm,
    customer_calls,
    events,
    fresh_postgres,
    incoming_line,
    pbx,
    start_pbx,
)

pytestmark = pytest.mark.integration

HIDDEN = {"id": None, "name": None}


def own(crm: Crm, kind: str, card_id: int, owner: int) -> None:  # noqa: F811
    model = {"contact": Contact, "account": Account, "lead": Lead}[kind]

    async def work(database: Database) -> None:
        async with database.session() as session:
            await session.execute(update(model).where(model.id == card_id).values(owner_id=owner))
            await session.commit()

    crm.run(work)


def call_as(crm: Crm, token: str, call_id: str) -> dict[str, Any]:  # noqa: F811
    base = f"http://127.0.0.1:{crm.pbx.server.http_port}"
    with httpx.Client(base_url=base, timeout=10) as http:
        headers = {"Authorization": f"Bearer {token}"}
        one = http.get(f"/api/v1/calls/{call_id}", headers=headers)
        assert one.status_code == 200, one.text
        listed = http.get("/api/v1/calls", headers=headers).json()["items"]
        assert [c for c in listed if c["id"] == call_id] == [one.json()]
        return dict(one.json())


def test_matches_an_operator_may_not_open_show_only_their_type(
    crm: Crm,  # noqa: F811
    events: Callable[..., EventStream],  # noqa: F811
) -> None:
    bob, provider_port = incoming_line(crm)
    carl = crm.employee("Carl Colleague")
    anna = crm.card("contact", "Anna Petrova", "+7 916 123-45-67")
    company = crm.card("account", "Petrov & Co", "8 (916) 1234567")
    lead = crm.card("lead", "A. Petrova", "79161234567")
    own(crm, "contact", anna, carl)  # Carl's: Bob may not open it
    own(crm, "lead", lead, bob)  # Bob's own; the account is nobody's
    bobs_token, supervisor = crm.token(bob), crm.token(carl, role="supervisor")
    bobs, everything = events(bobs_token, since=0), events(supervisor, since=0, scope="all")
    phone = crm.pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(crm.pbx, provider_port)
    _assert_succeeded(customer, phone, pbx=crm.pbx)
    _, ringing = bobs.wait_for("ringing")
    _, seen_by_all = everything.wait_for("ringing")

    full = [
        {"type": "contact", "id": anna, "name": "Anna Petrova"},
        {"type": "account", "id": company, "name": "Petrov & Co"},
        {"type": "lead", "id": lead, "name": "A. Petrova"},
    ]
    masked = [{"type": "contact", **HIDDEN}, full[1], full[2]]
    assert ringing["matches"] == masked, ringing
    assert seen_by_all["matches"] == full, seen_by_all
    crm.record(ringing["call_id"])
    assert call_as(crm, bobs_token, ringing["call_id"])["matches"] == masked
    assert call_as(crm, supervisor, ringing["call_id"])["matches"] == full


def test_a_linked_card_an_operator_may_not_open_shows_only_its_type(
    crm: Crm,  # noqa: F811
    events: Callable[..., EventStream],  # noqa: F811
) -> None:
    bob, provider_port = incoming_line(crm)
    carl = crm.employee("Carl Colleague")
    anna = crm.card("contact", "Anna Petrova", "+7 916 123-45-67")
    own(crm, "contact", anna, carl)
    bobs_token, supervisor = crm.token(bob), crm.token(carl, role="supervisor")
    stream = events(bobs_token, since=0)
    phone = crm.pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(crm.pbx, provider_port)
    _assert_succeeded(customer, phone, pbx=crm.pbx)
    _, ringing = stream.wait_for("ringing")

    assert ringing["matches"] == [{"type": "contact", **HIDDEN}], ringing
    assert "Anna" not in str(stream.messages)
    crm.record(ringing["call_id"])
    seen = call_as(crm, bobs_token, ringing["call_id"])
    assert seen["card"] == {"type": "contact", **HIDDEN}, seen
    assert call_as(crm, supervisor, ringing["call_id"])["card"] == {
        "type": "contact",
        "id": anna,
        "name": "Anna Petrova",
    }
