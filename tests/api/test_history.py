"""Calls and cards together: what a call record shows (card, matches,
employee, line, notes), linking a call to a card (by `link` or by creating
the card with `call_id`), the history of a contact, an account (with its
contacts' calls), a lead and an employee after answered, missed, busy and
cancelled calls, and what an operator may read of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callbridge.store import InternalLine

from .conftest import Api

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def post(api: Api, url: str, role: str = "admin", **body: Any) -> dict[str, Any]:
    answer = await api.client.post(url, json=body, headers=api.auth(role))
    assert answer.status_code in (200, 201), answer.text
    result: dict[str, Any] = answer.json()
    return result


async def get(api: Api, url: str, role: str = "admin", **params: Any) -> dict[str, Any]:
    answer = await api.client.get(url, params=params, headers=api.auth(role))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


class Office:
    """Two operators with employees and a line each, a contact of Olga's in
    an account, a lead, and one call of each outcome."""

    async def setup(self, api: Api) -> None:
        self.api = api
        self.olga = await api.add_user("olga", "operator", employee="Olga")
        self.ivan = await api.add_user("ivan", "operator", employee="Ivan")
        async with api.database.session() as session:
            line = InternalLine(number="101", username="olga-line", employee_id=self.olga)
            line.set_password("line-password-1", "test.realm")
            session.add(line)
            await session.commit()
            self.line = line.id
        self.account = await post(api, "/api/v1/accounts", name="Acme", owner_id=self.olga)
        self.contact = await post(
            api,
            "/api/v1/contacts",
            name="Ivan Petrov",
            account_id=self.account["id"],
            owner_id=self.olga,
        )
        self.other_contact = await post(
            api, "/api/v1/contacts", name="Ivan's client", owner_id=self.ivan
        )
        self.lead = await post(api, "/api/v1/leads", name="Prospect", owner_id=self.olga)
        contact, account = self.contact["id"], self.account["id"]
        self.calls = {
            "answered": await self.call(0, "answered", contact_id=contact),
            "missed": await self.call(10, "missed", contact_id=contact),
            "busy": await self.call(20, "busy", account_id=account),
            "cancelled": await self.call(30, "cancelled", lead_id=self.lead["id"]),
            # Ivan's: no card, not Olga's.
            "ivans": await api.add_call(
                started_at=at(40), status="answered", employee_id=self.ivan
            ),
        }

    async def call(self, minute: int, status: str, **card: int) -> str:
        return await self.api.add_call(
            started_at=at(minute),
            status=status,
            client_number="+79161234567",
            employee_id=self.olga,
            internal_line_id=self.line,
            talk_seconds=60 if status == "answered" else 0,
            **card,
        )

    def names(self, page: dict[str, Any]) -> list[str]:
        by_id = {call_id: name for name, call_id in self.calls.items()}
        return [by_id[item["id"]] for item in page["items"]]


@pytest.fixture
async def office(api: Api) -> Office:
    made = Office()
    await made.setup(api)
    return made


async def test_a_call_shows_its_card_employee_line_and_notes(api: Api, office: Office) -> None:
    url = f"/api/v1/calls/{office.calls['answered']}"
    await post(api, f"{url}/notes", text="asked for a quote")
    call = await get(api, url)
    assert call["client_number"] == "+79161234567"
    assert call["card"] == {"type": "contact", "id": office.contact["id"], "name": "Ivan Petrov"}
    assert call["employee"] == {"id": office.olga, "name": "Olga"}
    assert call["internal_number"] == "101"
    assert (call["matches"], call["recording"], call["notes_count"]) == (None, None, 1)
    listed = await get(api, "/api/v1/calls", status="answered")
    assert [item["notes_count"] for item in listed["items"]] == [0, 1]  # Ivan's, then this


async def test_a_call_is_linked_to_one_card_and_unlinked(api: Api, office: Office) -> None:
    call_id = await api.add_call(
        client_number="+79161234567",
        matches=[
            {"type": "contact", "id": office.contact["id"], "name": "Ivan Petrov"},
            {"type": "lead", "id": office.lead["id"], "name": "Prospect"},
        ],
    )
    url = f"/api/v1/calls/{call_id}"
    shown = await get(api, url)
    assert shown["card"] is None and [m["type"] for m in shown["matches"]] == ["contact", "lead"]
    linked = await post(api, f"{url}/link", type="lead", id=office.lead["id"])
    assert linked["card"] == {"type": "lead", "id": office.lead["id"], "name": "Prospect"}
    assert linked["matches"] is None
    # One card per call: linking another replaces it.
    relinked = await post(api, f"{url}/link", type="account", id=office.account["id"])
    assert relinked["card"]["type"] == "account"
    lead_history = await get(api, f"/api/v1/leads/{office.lead['id']}/calls")
    assert call_id not in [item["id"] for item in lead_history["items"]]
    assert (await api.client.delete(f"{url}/link", headers=api.auth())).status_code == 204
    assert (await get(api, url))["card"] is None


async def test_link_checks_the_card(api: Api, office: Office) -> None:
    url = f"/api/v1/calls/{office.calls['answered']}/link"
    for body, loc in (
        ({"type": "contact", "id": 999}, "id"),
        ({"type": "employee", "id": 1}, "type"),
        ({"type": "contact"}, "id"),
    ):
        answer = await api.client.post(url, json=body, headers=api.auth())
        assert answer.status_code == 422, answer.text
        assert [e["loc"][-1] for e in answer.json()["detail"]] == [loc]
    # Olga sees her call but not Ivan's client: no linking it there.
    answer = await api.client.post(
        url, json={"type": "contact", "id": office.other_contact["id"]}, headers=api.auth("olga")
    )
    assert answer.status_code == 422
    unknown = await api.client.post(
        f"/api/v1/calls/{'0' * 32}/link", json={"type": "contact", "id": 1}, headers=api.auth()
    )
    assert unknown.status_code == 404


async def test_a_card_created_with_call_id_is_linked_to_the_call(api: Api, office: Office) -> None:
    call_id = await api.add_call(client_number="+74951112233", employee_id=office.olga)
    contact = await post(
        api,
        "/api/v1/contacts",
        "olga",
        name="New caller",
        phones=[{"number": "+7 495 111-22-33"}],
        call_id=call_id,
    )
    call = await get(api, f"/api/v1/calls/{call_id}", "olga")
    assert call["card"] == {"type": "contact", "id": contact["id"], "name": "New caller"}
    history = await get(api, f"/api/v1/contacts/{contact['id']}/calls", "olga")
    assert [item["id"] for item in history["items"]] == [call_id]
    # Ivan's call is not Olga's to link.
    refused = await api.client.post(
        "/api/v1/leads",
        json={"name": "L", "call_id": office.calls["ivans"]},
        headers=api.auth("olga"),
    )
    assert refused.status_code == 403
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "call_id"]]


async def test_history_of_a_contact_account_lead_and_employee(api: Api, office: Office) -> None:
    contact = await get(api, f"/api/v1/contacts/{office.contact['id']}/calls")
    assert office.names(contact) == ["missed", "answered"] and contact["total"] == 2
    # An account's history holds its own calls and its contacts'.
    account = await get(api, f"/api/v1/accounts/{office.account['id']}/calls")
    assert office.names(account) == ["busy", "missed", "answered"] and account["total"] == 3
    lead = await get(api, f"/api/v1/leads/{office.lead['id']}/calls")
    assert office.names(lead) == ["cancelled"]
    employee = await get(api, f"/api/v1/employees/{office.olga}/calls")
    assert office.names(employee) == ["cancelled", "busy", "missed", "answered"]
    first = employee["items"][-1]
    assert (first["status"], first["talk_seconds"], first["started_at"]) == (
        "answered",
        60,
        "2026-11-27T09:00:00Z",
    )
    assert first["employee"]["name"] == "Olga" and first["card"]["name"] == "Ivan Petrov"


async def test_history_filters_and_pages(api: Api, office: Office) -> None:
    url = f"/api/v1/accounts/{office.account['id']}/calls"
    assert office.names(await get(api, url, status="missed")) == ["missed"]
    assert (await get(api, url, direction="outgoing"))["total"] == 0
    page = await get(api, url, limit=2, offset=1)
    assert office.names(page) == ["missed", "answered"] and page["total"] == 3
    bad = await api.client.get(url, params={"status": "lost"}, headers=api.auth())
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]
    assert (
        await api.client.get("/api/v1/contacts/999/calls", headers=api.auth())
    ).status_code == 404
    assert (
        await api.client.get("/api/v1/employees/999/calls", headers=api.auth())
    ).status_code == 404


async def test_a_missed_call_is_listed_once(api: Api, office: Office) -> None:
    missed = await get(api, "/api/v1/calls", status="missed")
    assert office.names(missed) == ["missed"] and missed["total"] == 1
    mine = await get(api, "/api/v1/calls", "olga", status="missed", employee_id=office.olga)
    assert office.names(mine) == ["missed"]
    history = await get(api, f"/api/v1/employees/{office.olga}/calls", status="missed")
    assert office.names(history) == ["missed"]


async def test_an_operator_reads_own_calls_and_those_of_cards_they_see(
    api: Api, office: Office
) -> None:
    # Ivan's call, once linked to Olga's contact, is Olga's to see too.
    ivans_url = f"/api/v1/calls/{office.calls['ivans']}"
    assert (await api.client.get(ivans_url, headers=api.auth("olga"))).status_code == 403
    await post(api, f"{ivans_url}/link", type="contact", id=office.contact["id"])
    assert (await api.client.get(ivans_url, headers=api.auth("olga"))).status_code == 200
    # Ivan sees his own call still, but not Olga's others, nor her history.
    assert (await api.client.get(ivans_url, headers=api.auth("ivan"))).status_code == 200
    olgas_url = f"/api/v1/calls/{office.calls['busy']}"
    assert (await api.client.get(olgas_url, headers=api.auth("ivan"))).status_code == 403
    history = await api.client.get(
        f"/api/v1/employees/{office.olga}/calls", headers=api.auth("ivan")
    )
    assert history.status_code == 403
    assert (await get(api, f"/api/v1/employees/{office.ivan}/calls", "ivan"))["total"] == 1
    listed = await get(api, "/api/v1/calls", "ivan")
    assert office.names(listed) == ["ivans"]
    # A card Ivan cannot see has no history for him.
    hidden = await api.client.get(
        f"/api/v1/contacts/{office.contact['id']}/calls", headers=api.auth("ivan")
    )
    assert hidden.status_code == 404
    # Supervisors read everyone's.
    assert (await get(api, f"/api/v1/employees/{office.olga}/calls", "supervisor"))["total"] == 4


async def test_a_contacts_calls_follow_it_to_another_account(api: Api, office: Office) -> None:
    other = await post(api, "/api/v1/accounts", name="Globex")
    moved = await api.client.patch(
        f"/api/v1/contacts/{office.contact['id']}",
        json={"account_id": other["id"]},
        headers=api.auth(),
    )
    assert moved.status_code == 200, moved.text
    assert office.names(await get(api, f"/api/v1/accounts/{other['id']}/calls")) == [
        "missed",
        "answered",
    ]
    assert office.names(await get(api, f"/api/v1/accounts/{office.account['id']}/calls")) == [
        "busy"
    ]
    # A call linked to the contact later joins its account's history too.
    call_id = await api.add_call(started_at=at(50), employee_id=office.olga)
    linked = await api.client.post(
        f"/api/v1/calls/{call_id}/link",
        json={"type": "contact", "id": office.contact["id"]},
        headers=api.auth(),
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["card"]["type"] == "contact"
    history = await get(api, f"/api/v1/accounts/{other['id']}/calls")
    assert history["items"][0]["id"] == call_id
    assert history["total"] == 3
