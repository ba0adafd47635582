"""Notes on calls and cards: written, listed, changed and deleted by their
author (or an admin); a call's notes show on its card and follow the call
to the card it is linked to; validation and visibility."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api


async def note(api: Api, url: str, text: str, role: str = "admin") -> dict[str, Any]:
    answer = await api.client.post(url, json={"text": text}, headers=api.auth(role))
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def texts(api: Api, url: str, role: str = "admin") -> list[str]:
    answer = await api.client.get(url, headers=api.auth(role))
    assert answer.status_code == 200, answer.text
    assert answer.json()["total"] == len(answer.json()["items"])
    return [item["text"] for item in answer.json()["items"]]


@pytest.fixture
async def olga(api: Api) -> int | None:
    return await api.add_user("olga", "operator", employee="Olga Petrova")


async def contact(api: Api, name: str = "Ivan", role: str = "admin") -> int:
    answer = await api.client.post("/api/v1/contacts", json={"name": name}, headers=api.auth(role))
    assert answer.status_code == 201, answer.text
    card_id: int = answer.json()["id"]
    return card_id


async def test_a_note_on_a_call_shows_on_its_card(api: Api, olga: int | None) -> None:
    card = await contact(api)
    call_id = await api.add_call(contact_id=card, employee_id=olga)
    written = await note(api, f"/api/v1/calls/{call_id}/notes", "wants a callback", "olga")
    assert written["author"]["name"] == "Olga Petrova"  # the employee's name
    assert written["call_id"] == call_id
    assert written["card"] == {"type": "contact", "id": card, "name": "Ivan"}
    assert written["created_at"] and written["updated_at"]
    await note(api, f"/api/v1/contacts/{card}/notes", "met at the fair")
    assert await texts(api, f"/api/v1/calls/{call_id}/notes") == ["wants a callback"]
    assert await texts(api, f"/api/v1/contacts/{card}/notes") == [
        "met at the fair",
        "wants a callback",
    ]
    # An admin without an employee is named by their username.
    admins = (await api.client.get(f"/api/v1/contacts/{card}/notes", headers=api.auth())).json()
    assert admins["items"][0]["author"]["name"] == "admin"


async def test_a_calls_notes_follow_it_to_the_card_it_is_linked_to(api: Api) -> None:
    call_id = await api.add_call()
    await note(api, f"/api/v1/calls/{call_id}/notes", "during the call")
    lead = await api.client.post("/api/v1/leads", json={"name": "L"}, headers=api.auth())
    lead_id = lead.json()["id"]
    await api.client.post(
        f"/api/v1/calls/{call_id}/link", json={"type": "lead", "id": lead_id}, headers=api.auth()
    )
    assert await texts(api, f"/api/v1/leads/{lead_id}/notes") == ["during the call"]
    await api.client.delete(f"/api/v1/calls/{call_id}/link", headers=api.auth())
    assert await texts(api, f"/api/v1/leads/{lead_id}/notes") == []
    # A card deleted keeps its calls' notes with the calls.
    card = await contact(api)
    await api.client.post(
        f"/api/v1/calls/{call_id}/link", json={"type": "contact", "id": card}, headers=api.auth()
    )
    await note(api, f"/api/v1/contacts/{card}/notes", "card only")
    await api.client.delete(f"/api/v1/contacts/{card}", headers=api.auth())
    assert await texts(api, f"/api/v1/calls/{call_id}/notes") == ["during the call"]


async def test_only_the_author_or_an_admin_changes_a_note(api: Api, olga: int | None) -> None:
    card = await contact(api, role="olga")
    written = await note(api, f"/api/v1/contacts/{card}/notes", "first", "olga")
    url = f"/api/v1/notes/{written['id']}"
    changed = await api.client.patch(url, json={"text": "second"}, headers=api.auth("olga"))
    assert changed.status_code == 200 and changed.json()["text"] == "second"
    for role in ("supervisor", "operator"):
        answer = await api.client.patch(url, json={"text": "x"}, headers=api.auth(role))
        assert answer.status_code == 403
        assert (await api.client.delete(url, headers=api.auth(role))).status_code == 403
    assert (await api.client.delete(url, headers=api.auth())).status_code == 204
    assert (await api.client.delete(url, headers=api.auth())).status_code == 404
    assert await texts(api, f"/api/v1/contacts/{card}/notes") == []


@pytest.mark.parametrize(
    "body", [{"text": ""}, {"text": "x" * 10_001}, {}, {"text": "ok", "call_id": "x"}]
)
async def test_bad_note_is_422(api: Api, body: dict[str, Any]) -> None:
    card = await contact(api)
    answer = await api.client.post(f"/api/v1/contacts/{card}/notes", json=body, headers=api.auth())
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][:2] in (["body", "text"], ["body", "call_id"])


async def test_notes_follow_the_visibility_of_their_call_or_card(
    api: Api, olga: int | None
) -> None:
    ivan = await api.add_user("ivan", "operator", employee="Ivan")
    ivans_card = await contact(api, "Ivan's", role="ivan")
    ivans_call = await api.add_call(employee_id=ivan)
    card_url, call_url = f"/api/v1/contacts/{ivans_card}/notes", f"/api/v1/calls/{ivans_call}/notes"
    assert (await api.client.get(card_url, headers=api.auth("olga"))).status_code == 404
    refused = await api.client.post(card_url, json={"text": "x"}, headers=api.auth("olga"))
    assert refused.status_code == 404
    assert (await api.client.get(call_url, headers=api.auth("olga"))).status_code == 403
    refused = await api.client.post(call_url, json={"text": "x"}, headers=api.auth("olga"))
    assert refused.status_code == 403
    assert (await api.client.get(call_url, headers=api.auth("ivan"))).status_code == 200
    missing = await api.client.get(f"/api/v1/calls/{'0' * 32}/notes", headers=api.auth())
    assert missing.status_code == 404


async def test_a_note_on_her_call_shows_olga_only_the_type_of_a_card_she_cannot_open(
    api: Api, olga: int | None
) -> None:
    boris = await api.add_user("boris", "operator", employee="Boris")
    theirs = await api.client.post(
        "/api/v1/contacts", json={"name": "Boris's client", "owner_id": boris}, headers=api.auth()
    )
    assert theirs.status_code == 201, theirs.text
    call = await api.add_call(employee_id=olga, contact_id=theirs.json()["id"])
    written = await note(api, f"/api/v1/calls/{call}/notes", "called back", role="olga")
    hidden = {"type": "contact", "id": None, "name": None}
    assert written["card"] == hidden, written
    listed = await api.client.get(f"/api/v1/calls/{call}/notes", headers=api.auth("olga"))
    assert [n["card"] for n in listed.json()["items"]] == [hidden]
    admins = await api.client.get(f"/api/v1/calls/{call}/notes", headers=api.auth())
    assert admins.json()["items"][0]["card"]["name"] == "Boris's client"
