"""`/api/v1/employees`: the life of an employee and their login, validation
naming the field, a taken login, roles, the internal line (staged until
apply), deleting that keeps the person, and a password that never comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from callbridge.store import ApiToken, Employee, InternalLine, User
from callbridge.store.models import ConfigVersion

from .conftest import Api, json_keys
from .test_routing_rules import default_rule  # noqa: F401 - a fixture

URL = "/api/v1/employees"
PASSWORD = "employee-secret-1"


def employee(**fields: Any) -> dict[str, Any]:
    return {"name": "Olga Petrova", "login": "olga", "password": PASSWORD, **fields}


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(URL, json=employee(**fields), headers=api.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def make_line(api: Api, number: str) -> int:
    answer = await api.client.post(
        "/api/v1/internal-lines",
        json={"number": number, "username": f"line{number}", "password": "line-password-1"},
        headers=api.auth(),
    )
    assert answer.status_code == 201, answer.text
    line_id: int = answer.json()["id"]
    return line_id


def assert_names(answer: Any, status: int, field: str) -> None:
    assert answer.status_code == status, answer.text
    assert [e["loc"][-1] for e in answer.json()["detail"]] == [field]


@pytest.fixture(autouse=True)
def no_password_in_any_response(api: Api) -> Any:
    """Every test here: no response body, of any status, carries a password."""
    yield
    for body in api.bodies:
        assert PASSWORD.encode() not in body and b"changed-secret-2" not in body
        if body:
            assert "password" not in json_keys(json.loads(body))
            assert "password_hash" not in body.decode()


async def test_an_employee_is_created_read_updated_and_listed(api: Api) -> None:
    created = await create(api, role="supervisor", email="olga@example.com", phone="+7 916 1")
    assert {k: created[k] for k in ("name", "login", "role", "email", "phone")} == {
        "name": "Olga Petrova",
        "login": "olga",
        "role": "supervisor",
        "email": "olga@example.com",
        "phone": "+7 916 1",
    }
    assert created["active"] and created["telephony_enabled"]
    assert created["internal_line"] is None
    url = f"{URL}/{created['id']}"
    assert (await api.client.get(url, headers=api.auth("supervisor"))).json() == created

    updated = await api.client.patch(
        url, json={"telephony_enabled": False, "role": "operator"}, headers=api.auth()
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["telephony_enabled"], updated.json()["role"]) == (False, "operator")
    assert updated.json()["email"] == "olga@example.com"  # not sent, not changed

    page = (await api.client.get(URL, headers=api.auth())).json()
    assert page["total"] == 1 and page["items"] == [updated.json()]


async def test_the_employee_signs_in_with_their_login(api: Api) -> None:
    created = await create(api)
    login = await api.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
    )
    assert login.status_code == 200
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    # An operator reads employees (histories show names) but writes none.
    assert (await api.client.get(f"{URL}/{created['id']}", headers=token)).status_code == 200
    refused = await api.client.patch(f"{URL}/{created['id']}", json={"name": "X"}, headers=token)
    assert refused.status_code == 403
    # A new password replaces the old one.
    await api.client.patch(
        f"{URL}/{created['id']}", json={"password": "changed-secret-2"}, headers=api.auth()
    )
    old = await api.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
    )
    new = await api.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": "changed-secret-2"}
    )
    assert (old.status_code, new.status_code) == (401, 200)


async def test_a_taken_login_is_409_naming_it(api: Api) -> None:
    await create(api)
    assert_names(
        await api.client.post(URL, json=employee(name="Other"), headers=api.auth()),
        409,
        "login",
    )
    # The admin's own login (no employee) is taken too.
    assert_names(
        await api.client.post(URL, json=employee(login="admin"), headers=api.auth()),
        409,
        "login",
    )
    other = await create(api, login="ivan", name="Ivan")
    assert_names(
        await api.client.patch(f"{URL}/{other['id']}", json={"login": "olga"}, headers=api.auth()),
        409,
        "login",
    )
    # Keeping one's own login is no conflict.
    same = await api.client.patch(
        f"{URL}/{other['id']}", json={"login": "ivan"}, headers=api.auth()
    )
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"password": "short"}, "password"),
        ({"name": ""}, "name"),
        ({"login": "has space"}, "login"),
        ({"role": "root"}, "role"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "call me"}, "phone"),
        ({"internal_line_id": 999}, "internal_line_id"),
        ({"surname": "x"}, "surname"),
    ],
)
async def test_bad_fields_are_422_naming_the_field(
    api: Api, fields: dict[str, Any], field: str
) -> None:
    answer = await api.client.post(URL, json=employee(**fields), headers=api.auth())
    assert_names(answer, 422, field)


async def test_patch_refuses_null_for_required_fields(api: Api) -> None:
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"name": None}, headers=api.auth()
    )
    assert_names(answer, 422, "name")


async def test_writes_are_for_admins(api: Api) -> None:
    created = await create(api)
    for role in ("supervisor", "operator"):
        assert (
            await api.client.post(URL, json=employee(), headers=api.auth(role))
        ).status_code == 403
        url = f"{URL}/{created['id']}"
        assert (await api.client.delete(url, headers=api.auth(role))).status_code == 403
        assert (await api.client.get(URL, headers=api.auth(role))).status_code == 200
    assert (await api.client.get(URL)).status_code == 401


@pytest.mark.usefixtures("default_rule")
async def test_the_internal_line_is_assigned_and_staged_until_apply(api: Api) -> None:
    applied_lines: list[dict[str, Any]] = []

    async def run(version: ConfigVersion) -> None:
        applied_lines.extend(version.snapshot["internal_lines"])

    assert api.app is not None
    api.app.state.apply_config = run
    line_101, line_102 = await make_line(api, "101"), await make_line(api, "102")
    created = await create(api, internal_line_id=line_101)
    assert created["internal_line"] == {"id": line_101, "number": "101"}
    moved = await api.client.patch(
        f"{URL}/{created['id']}", json={"internal_line_id": line_102}, headers=api.auth()
    )
    assert moved.json()["internal_line"] == {"id": line_102, "number": "102"}
    async with api.database.session() as session:
        owners = dict(
            (await session.execute(select(InternalLine.number, InternalLine.employee_id))).all()
        )
    assert owners == {"101": None, "102": created["id"]}  # one line per employee
    # Another employee's line is not taken silently.
    other = await api.client.post(
        URL, json=employee(login="ivan", internal_line_id=line_102), headers=api.auth()
    )
    assert_names(other, 409, "internal_line_id")
    # The assignment is a line edit like any other: apply makes it the PBX's.
    applied = await api.client.post("/api/v1/config/apply", headers=api.auth())
    assert applied.status_code == 200, applied.text
    assert {row["number"]: row["employee_id"] for row in applied_lines} == owners


async def test_search_and_active_filter(api: Api) -> None:
    olga = await create(api)
    await create(api, name="Ivan Sidorov", login="ivan")
    await create(api, name="Anna", login="anna.k")

    async def names(**params: Any) -> list[str]:
        page = (await api.client.get(URL, params=params, headers=api.auth())).json()
        return [item["name"] for item in page["items"]]

    assert await names(q="sidor") == ["Ivan Sidorov"]
    assert await names(q="ANNA.K") == ["Anna"]  # by login, any case
    assert await names(limit=2) == ["Anna", "Ivan Sidorov"]
    assert await names(limit=2, offset=2) == ["Olga Petrova"]
    await api.client.delete(f"{URL}/{olga['id']}", headers=api.auth())
    assert await names(active=False) == ["Olga Petrova"]
    assert await names(active=True) == ["Anna", "Ivan Sidorov"]


async def test_hook_runs_after_every_change(api: Api) -> None:
    calls: list[str] = []

    async def changed() -> None:
        calls.append("changed")

    assert api.app is not None
    api.app.state.on_employees_changed = changed
    created = await create(api)
    await api.client.patch(f"{URL}/{created['id']}", json={"name": "O"}, headers=api.auth())
    await api.client.delete(f"{URL}/{created['id']}", headers=api.auth())
    assert calls == ["changed"] * 3


async def test_delete_keeps_the_employee_and_removes_login_tokens_and_line(api: Api) -> None:
    line = await make_line(api, "101")
    created = await create(api, internal_line_id=line)
    login = await api.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
    )
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    deleted = await api.client.delete(f"{URL}/{created['id']}", headers=api.auth())
    assert deleted.status_code == 204
    after = (await api.client.get(f"{URL}/{created['id']}", headers=api.auth())).json()
    assert after["name"] == "Olga Petrova" and not after["active"]
    assert (after["login"], after["role"], after["internal_line"]) == (None, None, None)
    assert (await api.client.get(URL, headers=token)).status_code == 401
    again = await api.client.post(
        "/api/v1/auth/login", json={"username": "olga", "password": PASSWORD}
    )
    assert again.status_code == 401
    async with api.database.session() as session:
        assert await session.get(Employee, created["id"]) is not None
        assert await session.scalar(select(User).where(User.username == "olga")) is None
        assert await session.scalar(select(func.count()).select_from(ApiToken)) == 3  # fixture's
    # The person can be renamed, not given a login or a line again.
    url = f"{URL}/{created['id']}"
    renamed = await api.client.patch(url, json={"name": "O. P."}, headers=api.auth())
    assert renamed.status_code == 200
    for change in ({"role": "admin"}, {"internal_line_id": line}):
        assert (await api.client.patch(url, json=change, headers=api.auth())).status_code == 409
    # The login is free for someone new.
    assert (await api.client.post(URL, json=employee(), headers=api.auth())).status_code == 201


async def test_unknown_employee_is_404(api: Api) -> None:
    for answer in (
        await api.client.get(f"{URL}/999", headers=api.auth()),
        await api.client.patch(f"{URL}/999", json={"name": "x"}, headers=api.auth()),
        await api.client.delete(f"{URL}/999", headers=api.auth()),
    ):
        assert answer.status_code == 404
