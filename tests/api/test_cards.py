"""`/api/v1/contacts`, `/accounts`, `/leads`: cards with their phones in the
phone index, search by any format of a number, validation naming the field,
references, qualifying a lead, and what an operator may see and do."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from callbridge.store.models import Phone

from .conftest import Api

FORMATS = ("+7 916 123-45-67", "8 (916) 1234567", "79161234567")


async def create(api: Api, plural: str, role: str = "admin", **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(
        f"/api/v1/{plural}", json={"name": "Ivan Petrov", **fields}, headers=api.auth(role)
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def listed(api: Api, plural: str, role: str = "admin", **params: Any) -> dict[str, Any]:
    answer = await api.client.get(f"/api/v1/{plural}", params=params, headers=api.auth(role))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_names(answer: Any, status: int, loc: list[Any]) -> None:
    assert answer.status_code == status, answer.text
    assert [e["loc"][1:] for e in answer.json()["detail"]] == [loc]


@pytest.fixture
def ru(api: Api) -> None:
    """Numbers read as dialled in Russia (CALLBRIDGE_DEFAULT_REGION=RU)."""
    api.settings.default_region = "RU"


async def test_a_contact_is_created_read_updated_and_deleted(api: Api, ru: None) -> None:
    account = await create(api, "accounts", name="Acme", website="https://acme.example")
    created = await create(
        api,
        "contacts",
        email="ivan@acme.example",
        company="Acme",
        position="buyer",
        account_id=account["id"],
        phones=[{"type": "work", "number": "+7 916 123-45-67"}, {"number": "123"}],
    )
    assert created["account_id"] == account["id"] and created["position"] == "buyer"
    assert created["phones"] == [
        {"type": "work", "number": "+7 916 123-45-67", "e164": "+79161234567"},
        {"type": "mobile", "number": "123", "e164": None},
    ]
    # The admin has no employee: nobody owns the card.
    assert created["owner_id"] is None
    url = f"/api/v1/contacts/{created['id']}"
    assert (await api.client.get(url, headers=api.auth("supervisor"))).json() == created

    updated = await api.client.patch(
        url,
        json={"position": "director", "phones": [{"number": "8 916 765 43 21"}]},
        headers=api.auth(),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["position"] == "director"
    assert updated.json()["email"] == "ivan@acme.example"
    assert updated.json()["phones"] == [
        {"type": "mobile", "number": "8 916 765 43 21", "e164": "+79167654321"}
    ]
    deleted = await api.client.delete(url, headers=api.auth("supervisor"))
    assert deleted.status_code == 204
    assert (await api.client.get(url, headers=api.auth())).status_code == 404
    async with api.database.session() as session:
        assert list(await session.scalars(select(Phone))) == []


async def test_accounts_and_leads_have_their_own_fields(api: Api) -> None:
    account = await create(api, "accounts", website="https://a.example", comment="key client")
    assert (account["website"], account["comment"]) == ("https://a.example", "key client")
    lead = await create(api, "leads", company="Startup")
    assert (lead["status"], lead["company"], lead["contact_id"]) == ("new", "Startup", None)
    working = await api.client.patch(
        f"/api/v1/leads/{lead['id']}", json={"status": "working"}, headers=api.auth()
    )
    assert working.json()["status"] == "working"


async def test_one_number_in_three_formats_has_one_e164_and_is_found_by_each(
    api: Api, ru: None
) -> None:
    ids = [
        (await create(api, "contacts", name=f"Holder {n}", phones=[{"number": text}]))["id"]
        for n, text in enumerate(FORMATS)
    ]
    await create(api, "contacts", name="Someone else", phones=[{"number": "+7 916 000-00-00"}])
    async with api.database.session() as session:
        assert set(await session.scalars(select(Phone.e164).where(Phone.contact_id.in_(ids)))) == {
            "+79161234567"
        }
    for text in FORMATS:
        page = await listed(api, "contacts", q=text)
        assert sorted(item["id"] for item in page["items"]) == ids, text
        assert page["total"] == 3
    # The last digits alone find it too, through the tail index.
    assert (await listed(api, "contacts", q="123-45-67"))["total"] == 3


async def test_search_by_name_email_and_company(api: Api) -> None:
    await create(api, "contacts", name="Anna Smirnova", email="anna@x.example")
    await create(api, "contacts", name="Boris", company="Smirnov & Sons")
    await create(api, "leads", name="Lead 100%", email="lead@y.example")
    assert (await listed(api, "contacts", q="SMIRNOV"))["total"] == 2
    assert [i["name"] for i in (await listed(api, "contacts", q="anna@"))["items"]] == [
        "Anna Smirnova"
    ]
    # Case is folded beyond ASCII, on SQLite as on PostgreSQL.
    await create(api, "contacts", name="Иван Сидоров")
    assert [i["name"] for i in (await listed(api, "contacts", q="иван"))["items"]] == [
        "Иван Сидоров"
    ]
    # Wildcards in q are literal.
    assert (await listed(api, "leads", q="100%"))["total"] == 1
    assert (await listed(api, "leads", q="%"))["total"] == 1
    first = await listed(api, "contacts", limit=1)
    second = await listed(api, "contacts", limit=1, offset=1)
    assert (first["total"], first["items"][0]["name"], second["items"][0]["name"]) == (
        3,
        "Anna Smirnova",
        "Boris",
    )


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"phones": [{"number": "call me"}]}, ["phones", 0, "number"]),
        ({"phones": [{"number": "+7"}]}, ["phones", 0, "number"]),
        ({"phones": [{"number": "101"}, {"number": "12"}]}, ["phones", 1, "number"]),
        ({"phones": [{"type": "pager", "number": "101"}]}, ["phones", 0, "type"]),
        ({"phones": [{"number": "101"}] * 21}, ["phones"]),
        ({"name": ""}, ["name"]),
        ({"email": "nobody"}, ["email"]),
        ({"account_id": 999}, ["account_id"]),
        ({"owner_id": 999}, ["owner_id"]),
        ({"call_id": "0" * 32}, ["call_id"]),
        ({"colour": "red"}, ["colour"]),
    ],
)
async def test_bad_contact_fields_are_422_naming_the_field(
    api: Api, fields: dict[str, Any], loc: list[Any]
) -> None:
    answer = await api.client.post(
        "/api/v1/contacts", json={"name": "X", **fields}, headers=api.auth()
    )
    assert_names(answer, 422, loc)


async def test_bad_lead_and_update_fields_are_422_naming_the_field(api: Api) -> None:
    bad_status = await api.client.post(
        "/api/v1/leads", json={"name": "L", "status": "won"}, headers=api.auth()
    )
    assert_names(bad_status, 422, ["status"])
    no_contact = await api.client.post(
        "/api/v1/leads", json={"name": "L", "contact_id": 999}, headers=api.auth()
    )
    assert_names(no_contact, 422, ["contact_id"])
    account = await create(api, "accounts")
    url = f"/api/v1/accounts/{account['id']}"
    assert_names(
        await api.client.patch(url, json={"name": None}, headers=api.auth()), 422, ["name"]
    )
    assert_names(
        await api.client.patch(url, json={"phones": None}, headers=api.auth()), 422, ["phones"]
    )


async def test_a_lead_is_qualified_into_a_new_contact(api: Api, ru: None) -> None:
    lead = await create(
        api,
        "leads",
        email="ivan@x.example",
        company="X",
        phones=[{"type": "work", "number": "8 (916) 1234567"}],
    )
    call_id = await api.add_call(lead_id=lead["id"])
    answer = await api.client.post(f"/api/v1/leads/{lead['id']}/qualify", headers=api.auth())
    assert answer.status_code == 201, answer.text
    contact = answer.json()
    assert (contact["name"], contact["email"], contact["company"]) == (
        "Ivan Petrov",
        "ivan@x.example",
        "X",
    )
    assert contact["phones"] == [
        {"type": "work", "number": "8 (916) 1234567", "e164": "+79161234567"}
    ]
    qualified = (await api.client.get(f"/api/v1/leads/{lead['id']}", headers=api.auth())).json()
    assert (qualified["status"], qualified["contact_id"]) == ("qualified", contact["id"])
    # The lead's calls stay the lead's.
    call = (await api.client.get(f"/api/v1/calls/{call_id}", headers=api.auth())).json()
    assert call["card"] == {"type": "lead", "id": lead["id"], "name": "Ivan Petrov"}
    again = await api.client.post(f"/api/v1/leads/{lead['id']}/qualify", headers=api.auth())
    assert again.status_code == 409


async def test_a_lead_is_qualified_into_an_existing_contact(api: Api) -> None:
    contact = await create(api, "contacts", name="Known")
    lead = await create(api, "leads")
    url = f"/api/v1/leads/{lead['id']}/qualify"
    missing = await api.client.post(url, json={"contact_id": 999}, headers=api.auth())
    assert_names(missing, 422, ["contact_id"])
    answer = await api.client.post(url, json={"contact_id": contact["id"]}, headers=api.auth())
    assert answer.status_code == 201 and answer.json()["id"] == contact["id"]
    assert (await listed(api, "contacts"))["total"] == 1


@pytest.fixture
async def operators(api: Api) -> dict[str, int | None]:
    """Two operators with employees of their own."""
    return {
        "olga": await api.add_user("olga", "operator", employee="Olga"),
        "ivan": await api.add_user("ivan", "operator", employee="Ivan"),
    }


async def test_an_operator_sees_own_and_unowned_cards_only(
    api: Api, operators: dict[str, int | None]
) -> None:
    olgas = await create(api, "contacts", "olga", name="Olga's client")
    assert olgas["owner_id"] == operators["olga"]  # the creator's employee by default
    ivans = await create(api, "contacts", "ivan", name="Ivan's client")
    shared = await create(api, "contacts", name="Nobody's", owner_id=None)
    assert [c["name"] for c in (await listed(api, "contacts", "olga"))["items"]] == [
        "Nobody's",
        "Olga's client",
    ]
    assert (await listed(api, "contacts", "supervisor"))["total"] == 3
    # Another's card is as good as absent: read, change, history and notes.
    for url in (f"/api/v1/contacts/{ivans['id']}", f"/api/v1/contacts/{ivans['id']}/calls"):
        assert (await api.client.get(url, headers=api.auth("olga"))).status_code == 404
    patched = await api.client.patch(
        f"/api/v1/contacts/{ivans['id']}", json={"name": "mine"}, headers=api.auth("olga")
    )
    assert patched.status_code == 404
    # Nor can they point at it.
    lead = await api.client.post(
        "/api/v1/leads", json={"name": "L", "contact_id": ivans["id"]}, headers=api.auth("olga")
    )
    assert_names(lead, 422, ["contact_id"])
    # They change the cards they see, but delete none.
    shared_url = f"/api/v1/contacts/{shared['id']}"
    changed = await api.client.patch(shared_url, json={"comment": "c"}, headers=api.auth("olga"))
    assert changed.status_code == 200
    assert (await api.client.delete(shared_url, headers=api.auth("olga"))).status_code == 403
    own_url = f"/api/v1/contacts/{olgas['id']}"
    assert (await api.client.delete(own_url, headers=api.auth("olga"))).status_code == 403


async def test_an_operator_gives_cards_to_no_one_else(
    api: Api, operators: dict[str, int | None]
) -> None:
    answer = await api.client.post(
        "/api/v1/accounts",
        json={"name": "A", "owner_id": operators["ivan"]},
        headers=api.auth("olga"),
    )
    assert_names(answer, 403, ["owner_id"])
    unowned = await create(api, "accounts", "olga", owner_id=None)
    assert unowned["owner_id"] is None
    # An admin gives a card to anyone.
    given = await create(api, "accounts", owner_id=operators["ivan"])
    assert given["owner_id"] == operators["ivan"]


async def test_cards_need_a_token(api: Api) -> None:
    for plural in ("contacts", "accounts", "leads"):
        assert (await api.client.get(f"/api/v1/{plural}")).status_code == 401
