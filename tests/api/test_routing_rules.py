"""`/api/v1/routing-rules`: the default incoming rule the migration creates
(there from the start, undeletable, always incoming), the life of a rule,
actions and masks checked with the field named, references that must exist,
paging in priority order, and roles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from callbridge.store import Database
from callbridge.store.models import (
    DEFAULT_INCOMING_RULE_NAME,
    DEFAULT_INCOMING_RULE_PRIORITY,
    RoutingRule,
)

from .conftest import Api

URL = "/api/v1/routing-rules"


def rule(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Kyiv office",
        "direction": "outgoing",
        "priority": 10,
        "action": {"type": "deny"},
        **fields,
    }


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(URL, json=rule(**fields), headers=api.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def internal_line(api: Api, number: str) -> None:
    answer = await api.client.post(
        "/api/v1/internal-lines",
        json={"number": number, "username": f"u{number}", "password": "line-password-1"},
        headers=api.auth(),
    )
    assert answer.status_code == 201, answer.text


async def external_line(api: Api, code: str = "trunk") -> int:
    answer = await api.client.post(
        "/api/v1/external-lines", json={"code": code, "server": "192.0.2.10"}, headers=api.auth()
    )
    assert answer.status_code == 201, answer.text
    line_id: int = answer.json()["id"]
    return line_id


def assert_names(answer: Any, status: int, *loc: str) -> None:
    assert answer.status_code == status, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", *loc]]


@pytest.fixture(autouse=True)
async def default_rule(api: Api) -> None:
    """The row migration 0004 creates. SQLite builds each test's schema afresh
    and has it; on PostgreSQL the tests share one schema, emptied between
    tests, so it is put back the way the migration writes it."""
    async with api.database.session() as session:
        if await session.scalar(select(RoutingRule.id).where(RoutingRule.is_default)) is None:
            session.add(
                RoutingRule(
                    name=DEFAULT_INCOMING_RULE_NAME,
                    direction="incoming",
                    priority=DEFAULT_INCOMING_RULE_PRIORITY,
                    action_type="internal_line",
                    action_target=None,
                    is_default=True,
                )
            )
            await session.commit()


async def default_id(api: Api) -> int:
    listed = await api.client.get(URL, headers=api.auth())
    [default] = [item for item in listed.json()["items"] if item["is_default"]]
    rule_id: int = default["id"]
    return rule_id


async def test_the_migration_creates_the_default_incoming_rule_unset(
    empty_database: Database,
) -> None:
    await empty_database.migrate()
    async with empty_database.session() as session:
        rules = list(await session.scalars(select(RoutingRule)))
    assert [
        (r.name, r.direction, r.priority, r.action_type, r.action_target, r.is_default)
        for r in rules
    ] == [
        (
            DEFAULT_INCOMING_RULE_NAME,
            "incoming",
            DEFAULT_INCOMING_RULE_PRIORITY,
            "internal_line",
            None,
            True,
        )
    ]
    assert (rules[0].source_mask, rules[0].destination_mask) == ("*", "*")
    assert rules[0].destination_rewrite is None and rules[0].external_line_id is None
    assert rules[0].created_at.tzinfo is not None


async def test_the_default_rule_is_listed_and_its_line_can_be_set(api: Api) -> None:
    listed = await api.client.get(URL, headers=api.auth("supervisor"))
    assert listed.status_code == 200 and listed.json()["total"] == 1
    [default] = listed.json()["items"]
    assert {k: default[k] for k in ("name", "direction", "priority", "action", "is_default")} == {
        "name": "Default incoming",
        "direction": "incoming",
        "priority": 1_000_000,
        "action": {"type": "internal_line", "target": None},
        "is_default": True,
    }
    await internal_line(api, "101")
    url = f"{URL}/{default['id']}"
    answer = await api.client.patch(
        url, json={"action": {"type": "internal_line", "target": "101"}}, headers=api.auth()
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == {"type": "internal_line", "target": "101"}
    assert answer.json()["is_default"] is True
    renamed = await api.client.patch(
        url, json={"name": "Reception", "direction": "incoming"}, headers=api.auth()
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Reception"


async def test_the_default_rule_cannot_be_deleted(api: Api) -> None:
    answer = await api.client.delete(f"{URL}/{await default_id(api)}", headers=api.auth())
    assert answer.status_code == 409
    assert "fallback" in answer.json()["detail"] and "incoming" in answer.json()["detail"]
    assert (await api.client.get(URL, headers=api.auth())).json()["total"] == 1


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"direction": "outgoing"}, ("direction",)),
        ({"is_default": False}, ("is_default",)),
        ({"action": {"type": "deny"}}, ("action", "type")),
        ({"action": {"type": "external_line", "target": 1}}, ("action", "type")),
        ({"action": {"type": "internal_line"}}, ("action", "target")),
        ({"action": {"type": "internal_line", "target": "999"}}, ("action", "target")),
    ],
)
async def test_the_default_rule_stays_an_incoming_rule_to_an_internal_line(
    api: Api, change: dict[str, Any], loc: tuple[str, ...]
) -> None:
    await external_line(api)
    answer = await api.client.patch(
        f"{URL}/{await default_id(api)}", json=change, headers=api.auth()
    )
    assert_names(answer, 422, *loc)


async def test_no_rule_can_be_made_the_default(api: Api) -> None:
    answer = await api.client.post(URL, json=rule(is_default=True), headers=api.auth())
    assert_names(answer, 422, "is_default")
    created = await create(api)
    assert created["is_default"] is False
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"is_default": True}, headers=api.auth()
    )
    assert_names(answer, 422, "is_default")


async def test_a_rule_is_created_read_updated_and_deleted(api: Api) -> None:
    line_id = await external_line(api)
    created = await create(
        api,
        external_line_id=line_id,
        action={"type": "external_line", "target": line_id},
        source_mask="1XX",
        destination_mask="0[5-9]XXXXXXXX",
        destination_rewrite="+38${number}",
    )
    assert {k: v for k, v in created.items() if k not in ("id", "created_at", "updated_at")} == {
        "name": "Kyiv office",
        "direction": "outgoing",
        "external_line_id": line_id,
        "priority": 10,
        "action": {"type": "external_line", "target": line_id},
        "source_mask": "1XX",
        "destination_mask": "0[5-9]XXXXXXXX",
        "destination_rewrite": "+38${number}",
        "is_default": False,
    }
    url = f"{URL}/{created['id']}"
    read = await api.client.get(url, headers=api.auth("supervisor"))
    assert read.status_code == 200 and read.json() == created

    await internal_line(api, "205")
    updated = await api.client.patch(
        url,
        json={
            "direction": "incoming",
            "external_line_id": None,
            "action": {"type": "internal_line", "target": "205"},
            "destination_rewrite": None,
            "priority": 0,
        },
        headers=api.auth(),
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["direction"], body["external_line_id"], body["priority"]) == ("incoming", None, 0)
    assert body["action"] == {"type": "internal_line", "target": "205"}
    assert body["destination_rewrite"] is None and body["source_mask"] == "1XX"

    assert (await api.client.delete(url, headers=api.auth())).status_code == 204
    assert (await api.client.get(url, headers=api.auth())).status_code == 404
    assert (await api.client.delete(url, headers=api.auth())).status_code == 404


async def test_masks_default_to_any_number(api: Api) -> None:
    created = await create(api, action={"type": "deny"}, source_mask="")
    assert (created["source_mask"], created["destination_mask"]) == ("*", "*")
    assert created["destination_rewrite"] is None
    assert created["action"] == {"type": "deny", "target": None}
    assert created["external_line_id"] is None


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("name", "", ("name",)),
        ("name", "n" * 201, ("name",)),
        ("direction", "sideways", ("direction",)),
        ("priority", -1, ("priority",)),
        ("priority", "first", ("priority",)),
        ("source_mask", "1Q", ("source_mask",)),
        ("source_mask", "9.1", ("source_mask",)),
        ("destination_mask", "[5-1]XX", ("destination_mask",)),
        ("destination_mask", "[12", ("destination_mask",)),
        ("destination_mask", "X" * 65, ("destination_mask",)),
        ("destination_rewrite", "${foo}", ("destination_rewrite",)),
        ("destination_rewrite", "${number:x}", ("destination_rewrite",)),
        ("destination_rewrite", "abc", ("destination_rewrite",)),
        ("external_line_id", "trunk", ("external_line_id",)),
        ("action", "deny", ("action",)),
        ("action", {"type": "voicemail"}, ("action", "type")),
        ("action", {"target": "101"}, ("action", "type")),
        ("action", {"type": "deny", "target": "101"}, ("action", "target")),
        ("action", {"type": "ivr"}, ("action", "target")),
        ("action", {"type": "ivr", "target": "menu"}, ("action", "target")),
        ("action", {"type": "ivr", "target": 0}, ("action", "target")),
        ("action", {"type": "ivr", "target": 3}, ("action", "target")),
        ("action", {"type": "internal_line"}, ("action", "target")),
        ("action", {"type": "internal_line", "target": "1O1"}, ("action", "target")),
        ("action", {"type": "external_line"}, ("action", "target")),
        ("action", {"type": "external_line", "target": "first"}, ("action", "target")),
        ("action", {"type": "external_line", "target": 0}, ("action", "target")),
        ("action", {"type": "deny", "extra": 1}, ("action", "extra")),
        ("surprise", 1, ("surprise",)),
    ],
)
async def test_a_bad_field_is_422_naming_it(
    api: Api, field: str, value: Any, loc: tuple[str, ...]
) -> None:
    answer = await api.client.post(URL, json=rule(**{field: value}), headers=api.auth())
    assert_names(answer, 422, *loc)


async def test_a_mask_problem_is_explained(api: Api) -> None:
    answer = await api.client.post(URL, json=rule(source_mask="[5-1]"), headers=api.auth())
    assert "backwards" in answer.json()["detail"][0]["msg"]


@pytest.mark.parametrize("field", ["name", "direction", "action"])
async def test_a_missing_required_field_is_422_naming_it(api: Api, field: str) -> None:
    body = rule()
    del body[field]
    assert_names(await api.client.post(URL, json=body, headers=api.auth()), 422, field)


@pytest.mark.parametrize(
    "field", ["name", "direction", "priority", "action", "source_mask", "destination_mask"]
)
async def test_null_for_a_field_that_cannot_be_empty_is_422(api: Api, field: str) -> None:
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={field: None}, headers=api.auth()
    )
    assert_names(answer, 422, field)


async def test_references_must_exist(api: Api) -> None:
    answer = await api.client.post(URL, json=rule(external_line_id=4242), headers=api.auth())
    assert_names(answer, 422, "external_line_id")
    for action in (
        {"type": "internal_line", "target": "101"},
        {"type": "external_line", "target": 4242},
    ):
        answer = await api.client.post(URL, json=rule(action=action), headers=api.auth())
        assert_names(answer, 422, "action", "target")
    created = await create(api)
    url = f"{URL}/{created['id']}"
    answer = await api.client.patch(url, json={"external_line_id": 4242}, headers=api.auth())
    assert_names(answer, 422, "external_line_id")
    answer = await api.client.patch(
        url, json={"action": {"type": "internal_line", "target": "101"}}, headers=api.auth()
    )
    assert_names(answer, 422, "action", "target")
    # Numbers and ids given the other way round are read as meant.
    await internal_line(api, "101")
    line_id = await external_line(api)
    for action, shown in (
        ({"type": "internal_line", "target": 101}, "101"),
        ({"type": "external_line", "target": str(line_id)}, line_id),
    ):
        answer = await api.client.patch(url, json={"action": action}, headers=api.auth())
        assert answer.status_code == 200, answer.text
        assert answer.json()["action"]["target"] == shown


async def test_the_list_pages_in_priority_order_and_filters_by_direction(api: Api) -> None:
    for priority in (50, 10, 40, 20):
        await create(api, name=f"out {priority}", priority=priority)
    await create(api, name="in 30", direction="incoming", priority=30)
    first = await api.client.get(URL, params={"limit": 2}, headers=api.auth())
    rest = await api.client.get(URL, params={"limit": 10, "offset": 2}, headers=api.auth())
    assert first.json()["total"] == rest.json()["total"] == 6
    names = [i["name"] for i in first.json()["items"] + rest.json()["items"]]
    assert names == ["out 10", "out 20", "in 30", "out 40", "out 50", "Default incoming"]
    incoming = await api.client.get(URL, params={"direction": "incoming"}, headers=api.auth())
    assert incoming.json()["total"] == 2
    assert [i["name"] for i in incoming.json()["items"]] == ["in 30", "Default incoming"]
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"direction": "up"}):
        bad = await api.client.get(URL, params=params, headers=api.auth())
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][0] == "query"


async def test_operators_may_not_see_rules_and_supervisors_may_not_change_them(api: Api) -> None:
    created = await create(api)
    url = f"{URL}/{created['id']}"
    operator, supervisor = api.auth("operator"), api.auth("supervisor")
    assert (await api.client.get(URL, headers=operator)).status_code == 403
    assert (await api.client.get(url, headers=operator)).status_code == 403
    assert (await api.client.get(url, headers=supervisor)).status_code == 200
    for headers in (operator, supervisor):
        post = await api.client.post(URL, json=rule(), headers=headers)
        patch = await api.client.patch(url, json={"name": "x"}, headers=headers)
        delete = await api.client.delete(url, headers=headers)
        assert (post.status_code, patch.status_code, delete.status_code) == (403, 403, 403)
    assert (await api.client.get(URL)).status_code == 401


async def test_an_unknown_rule_is_404(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        answer = await api.client.request(method, f"{URL}/999", json={}, headers=api.auth())
        assert answer.status_code == 404
