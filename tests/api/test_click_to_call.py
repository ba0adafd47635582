"""`POST /api/v1/calls` before any call is placed: the number's validation
naming `to`, and the user and employee checks, on SQLite and PostgreSQL.
The calls themselves are in tests/integration/test_click_to_call.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from callbridge.store import Employee, User

from .conftest import Api

URL = "/api/v1/calls"


async def make_employee(api: Api, role: str, *, telephony: bool) -> None:
    """Give the `role` user an employee of their own."""
    async with api.database.session() as session:
        person = Employee(name=f"{role} person", telephony_enabled=telephony)
        session.add(person)
        await session.flush()
        user = await session.scalar(select(User).where(User.username == role))
        assert user is not None
        user.employee_id = person.id
        await session.commit()


@pytest.mark.parametrize(
    "to", ["", "abc", "+", "1+2", "--", "1" * 33, "101;x", " ", "()"], ids=repr
)
async def test_a_number_that_is_not_one_is_422_naming_to(api: Api, to: str) -> None:
    answer = await api.client.post(URL, json={"to": to}, headers=api.auth("operator"))
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "to"]]


async def test_a_body_without_to_or_with_more_is_422(api: Api) -> None:
    for body in ({}, {"to": "102", "from": "101"}, {"to": 102}):
        answer = await api.client.post(URL, json=body, headers=api.auth())
        assert answer.status_code == 422, (body, answer.text)


async def test_a_user_without_an_employee_is_409(api: Api) -> None:
    for role in ("admin", "supervisor", "operator"):
        answer = await api.client.post(URL, json={"to": "102"}, headers=api.auth(role))
        assert answer.status_code == 409, answer.text
        assert "not an employee" in answer.json()["detail"]


async def test_an_employee_without_telephony_is_403(api: Api) -> None:
    await make_employee(api, "operator", telephony=False)
    answer = await api.client.post(URL, json={"to": "102"}, headers=api.auth("operator"))
    assert answer.status_code == 403, answer.text
    assert "telephony is disabled" in answer.json()["detail"]


async def test_without_a_pbx_in_the_process_it_is_503(api: Api) -> None:
    # The in-process API of these tests runs no SIP side.
    await make_employee(api, "operator", telephony=True)
    answer = await api.client.post(
        URL, json={"to": "+7 (916) 123-45-67"}, headers=api.auth("operator")
    )
    assert answer.status_code == 503, answer.text


async def test_signing_in_is_required(api: Api) -> None:
    answer = await api.client.post(URL, json={"to": "102"})
    assert answer.status_code == 401
