"""`/api/v1/internal-lines`: roles, the life of a line, validation naming the
field, conflicts, paging, and a SIP password that never comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from callbridge.sip.digest import compute_ha1
from callbridge.store import Employee, InternalLine

from .conftest import Api, json_keys

URL = "/api/v1/internal-lines"
SIP_PASSWORD = "line-secret-101"


def line(**fields: Any) -> dict[str, Any]:
    return {"number": "101", "username": "alice", "password": SIP_PASSWORD, **fields}


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(URL, json=line(**fields), headers=api.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_names(answer: Any, status: int, field: str) -> None:
    assert answer.status_code == status, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", field]]


@pytest.fixture(autouse=True)
def no_password_in_any_response(api: Api) -> Any:
    """Every test here: no response body, of any status, carries a SIP password."""
    yield
    for body in api.bodies:
        assert SIP_PASSWORD.encode() not in body
        assert b"new-secret-202" not in body
        if body:
            assert "password" not in json_keys(json.loads(body))


async def test_a_line_is_created_read_updated_and_deleted(api: Api) -> None:
    created = await create(api, comment="front desk")
    assert {k: created[k] for k in ("number", "username", "comment")} == {
        "number": "101",
        "username": "alice",
        "comment": "front desk",
    }
    assert (created["ring_timeout"], created["max_devices"], created["max_talk_duration"]) == (
        30,
        1,
        0,
    )
    assert created["max_incoming_calls"] == 1 and created["employee_id"] is None
    assert "password" not in created
    url = f"{URL}/{created['id']}"

    read = await api.client.get(url, headers=api.auth("supervisor"))
    assert read.status_code == 200 and read.json() == created

    updated = await api.client.patch(
        url, json={"ring_timeout": 45, "max_devices": 3}, headers=api.auth()
    )
    assert updated.status_code == 200
    assert (updated.json()["ring_timeout"], updated.json()["max_devices"]) == (45, 3)
    assert updated.json()["comment"] == "front desk"

    assert (await api.client.delete(url, headers=api.auth())).status_code == 204
    assert (await api.client.get(url, headers=api.auth())).status_code == 404
    assert (await api.client.delete(url, headers=api.auth())).status_code == 404


async def test_the_stored_line_keeps_ha1_for_the_realm_not_the_password(api: Api) -> None:
    created = await create(api)
    await api.client.patch(
        f"{URL}/{created['id']}",
        json={"username": "alice2", "password": "new-secret-202"},
        headers=api.auth(),
    )
    async with api.database.session() as session:
        stored = await session.scalar(select(InternalLine))
    assert stored is not None and stored.username == "alice2"
    assert stored.ha1_md5 == compute_ha1("alice2", "test.realm", "new-secret-202", "MD5")
    assert stored.ha1_sha256 == compute_ha1("alice2", "test.realm", "new-secret-202", "SHA-256")


async def test_changing_the_username_needs_the_password(api: Api) -> None:
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"username": "bob"}, headers=api.auth()
    )
    assert_names(answer, 422, "password")


async def test_a_line_can_belong_to_an_employee(api: Api) -> None:
    async with api.database.session() as session:
        employee = Employee(name="Alice Smith", email="alice@example.org")
        session.add(employee)
        await session.commit()
    created = await create(api, employee_id=employee.id)
    assert created["employee_id"] == employee.id
    cleared = await api.client.patch(
        f"{URL}/{created['id']}", json={"employee_id": None}, headers=api.auth()
    )
    assert cleared.json()["employee_id"] is None


async def test_an_employee_that_does_not_exist_is_422_naming_employee_id(api: Api) -> None:
    answer = await api.client.post(URL, json=line(employee_id=4242), headers=api.auth())
    assert_names(answer, 422, "employee_id")
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"employee_id": 4242}, headers=api.auth()
    )
    assert_names(answer, 422, "employee_id")


async def test_a_deleted_employee_gets_no_line_again_409_naming_employee_id(api: Api) -> None:
    async with api.database.session() as session:
        leaver = Employee(name="Left Last Week", email="left@example.org", active=False)
        session.add(leaver)
        await session.commit()
    answer = await api.client.post(URL, json=line(employee_id=leaver.id), headers=api.auth())
    assert_names(answer, 409, "employee_id")
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={"employee_id": leaver.id}, headers=api.auth()
    )
    assert_names(answer, 409, "employee_id")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("number", "1"),
        ("number", "1234567890123456"),
        ("number", "10a"),
        ("number", "+101"),
        ("max_devices", 0),
        ("max_devices", 21),
        ("ring_timeout", 4),
        ("ring_timeout", 601),
        ("max_talk_duration", -1),
        ("max_talk_duration", 86_401),
        ("max_incoming_calls", 0),
        ("max_incoming_calls", 51),
        ("username", ""),
        ("username", "al ice"),
        ("username", 'al"ice'),
        ("username", "a" * 65),
        ("password", "short"),
        ("password", "x" * 129),
        ("comment", "c" * 2001),
        ("employee_id", "someone"),
        ("inband_dtmf", "sometimes"),
        ("surprise", 1),
    ],
)
async def test_a_bad_field_is_422_naming_it(api: Api, field: str, value: Any) -> None:
    answer = await api.client.post(URL, json=line(**{field: value}), headers=api.auth())
    assert_names(answer, 422, field)
    if field == "password":
        assert str(value) not in answer.text


@pytest.mark.parametrize("field", ["number", "username", "password"])
async def test_a_missing_required_field_is_422_naming_it(api: Api, field: str) -> None:
    body = line()
    del body[field]
    assert_names(await api.client.post(URL, json=body, headers=api.auth()), 422, field)


@pytest.mark.parametrize("field", ["number", "username", "max_devices", "inband_dtmf", "comment"])
async def test_null_for_a_field_that_cannot_be_empty_is_422(api: Api, field: str) -> None:
    created = await create(api)
    answer = await api.client.patch(
        f"{URL}/{created['id']}", json={field: None}, headers=api.auth()
    )
    assert_names(answer, 422, field)


@pytest.mark.parametrize("field", ["number", "username"])
async def test_a_duplicate_is_409_naming_the_field(api: Api, field: str) -> None:
    await create(api)
    other = {"number": "102", "username": "bob"}
    answer = await api.client.post(
        URL, json=line(**{**other, field: line()[field]}), headers=api.auth()
    )
    assert_names(answer, 409, field)
    second = await create(api, **other)
    answer = await api.client.patch(
        f"{URL}/{second['id']}",
        json={field: line()[field], "password": "new-secret-202"},
        headers=api.auth(),
    )
    assert_names(answer, 409, field)


async def test_the_list_pages_in_number_order(api: Api) -> None:
    for n in range(12, 7, -1):
        await create(api, number=f"1{n:02d}", username=f"user{n}")
    first = await api.client.get(URL, params={"limit": 2}, headers=api.auth())
    rest = await api.client.get(URL, params={"limit": 10, "offset": 2}, headers=api.auth())
    assert first.json()["total"] == rest.json()["total"] == 5
    numbers = [i["number"] for i in first.json()["items"] + rest.json()["items"]]
    assert numbers == ["108", "109", "110", "111", "112"]
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        bad = await api.client.get(URL, params=params, headers=api.auth())
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][0] == "query"


async def test_operators_may_not_see_lines_and_supervisors_may_not_change_them(api: Api) -> None:
    created = await create(api)
    url = f"{URL}/{created['id']}"
    operator, supervisor = api.auth("operator"), api.auth("supervisor")
    assert (await api.client.get(URL, headers=operator)).status_code == 403
    assert (await api.client.get(url, headers=operator)).status_code == 403
    assert (await api.client.get(URL, headers=supervisor)).status_code == 200
    for headers in (operator, supervisor):
        post = await api.client.post(URL, json=line(number="102", username="b"), headers=headers)
        patch = await api.client.patch(url, json={"comment": "x"}, headers=headers)
        delete = await api.client.delete(url, headers=headers)
        assert (post.status_code, patch.status_code, delete.status_code) == (403, 403, 403)


async def test_an_unknown_line_is_404(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        answer = await api.client.request(method, f"{URL}/999", json={}, headers=api.auth())
        assert answer.status_code == 404


# --- digest algorithms per line ---------------------------------------------------


async def test_a_lines_digest_algorithms_are_kept_normalized_in_order(api: Api) -> None:
    created = await create(api)
    assert created["digest_algorithms"] is None  # the global setting
    url = f"{URL}/{created['id']}"
    for typed, kept in (("sha-256, md5", "SHA-256,MD5"), (" Md5 ", "MD5"), (None, None)):
        answer = await api.client.patch(url, json={"digest_algorithms": typed}, headers=api.auth())
        assert answer.status_code == 200, answer.text
        assert answer.json()["digest_algorithms"] == kept
    other = await create(api, number="102", username="bob", digest_algorithms="SHA-256")
    assert other["digest_algorithms"] == "SHA-256"
    async with api.database.session() as session:
        stored = await session.scalar(select(InternalLine).where(InternalLine.username == "bob"))
    assert stored is not None and stored.digest_algorithms == "SHA-256"


@pytest.mark.parametrize("value", ["md4", "MD5;SHA-256", "", "MD5,md5", "MD5-sess", 5, "x" * 65])
async def test_a_bad_digest_algorithm_list_is_a_422_naming_the_field(
    api: Api, value: object
) -> None:
    answer = await api.client.post(URL, json=line(digest_algorithms=value), headers=api.auth())
    assert_names(answer, 422, "digest_algorithms")
    created = await create(api)
    patched = await api.client.patch(
        f"{URL}/{created['id']}", json={"digest_algorithms": value}, headers=api.auth()
    )
    assert_names(patched, 422, "digest_algorithms")


async def test_inband_dtmf_is_off_unless_asked_for(api: Api) -> None:
    created = await create(api)
    assert created["inband_dtmf"] is False
    turned_on = await api.client.patch(
        f"{URL}/{created['id']}", json={"inband_dtmf": True}, headers=api.auth()
    )
    assert turned_on.status_code == 200 and turned_on.json()["inband_dtmf"] is True
    assert (await create(api, number="102", username="bob", inband_dtmf=True))["inband_dtmf"]
