"""`POST /api/v1/calls/{id}/dtmf` with the PBX side replaced by a recorder:
what reaches it, and how each of its refusals and the API's own are
answered, on SQLite and PostgreSQL. Digits reaching real phones are in
tests/integration/test_dtmf.py."""

from __future__ import annotations

import pytest

from callbridge.pbx.dtmf import DigitsRefused

from .conftest import Api


def url(call_id: str) -> str:
    return f"/api/v1/calls/{call_id}/dtmf"


class FakePbx:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str]] = []
        self.refusal: DigitsRefused | None = None

    def __call__(self, call_id: str, employee_id: int, digits: str) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.sent.append((call_id, employee_id, digits))


@pytest.fixture
def pbx(api: Api) -> FakePbx:
    fake = FakePbx()
    assert api.app is not None
    api.app.state.send_digits = fake
    return fake


async def test_an_employees_digits_reach_the_pbx_with_who_sends_them(
    api: Api, pbx: FakePbx
) -> None:
    employee = await api.add_user("olga", "operator", employee="Olga")
    assert employee is not None
    call = await api.add_call(employee_id=employee)
    answer = await api.client.post(url(call), json={"digits": "12#*AD0"}, headers=api.auth("olga"))
    assert answer.status_code == 202, answer.text
    assert pbx.sent == [(call, employee, "12#*AD0")]


@pytest.mark.parametrize(
    "digits", ["", "E", "a", "1 2", "12\n", "1" * 33, "\u0661", 5, None], ids=repr
)
async def test_what_is_no_dtmf_is_422_naming_digits(api: Api, pbx: FakePbx, digits: object) -> None:
    await api.add_user("olga", "operator", employee="Olga")
    call = await api.add_call()
    answer = await api.client.post(url(call), json={"digits": digits}, headers=api.auth("olga"))
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "digits"]]
    assert pbx.sent == []


async def test_unknown_fields_and_a_missing_body_are_422(api: Api, pbx: FakePbx) -> None:
    call = await api.add_call()
    for body in ({}, {"digits": "1", "duration": 9999}):
        answer = await api.client.post(url(call), json=body, headers=api.auth("operator"))
        assert answer.status_code == 422, (body, answer.text)


async def test_an_unknown_call_is_404_and_a_bad_id_422(api: Api, pbx: FakePbx) -> None:
    answer = await api.client.post(url("f" * 32), json={"digits": "1"}, headers=api.auth())
    assert answer.status_code == 404, answer.text
    answer = await api.client.post(url("x" * 500), json={"digits": "1"}, headers=api.auth())
    assert answer.status_code == 422, answer.text


async def test_a_user_without_an_employee_is_403(api: Api, pbx: FakePbx) -> None:
    call = await api.add_call()
    for role in ("admin", "supervisor", "operator"):
        answer = await api.client.post(url(call), json={"digits": "1"}, headers=api.auth(role))
        assert answer.status_code == 403, answer.text
    assert pbx.sent == []


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (403, "your line takes no part in this call"),
        (409, "the call is not answered"),
        (429, "too many digits are waiting to be sent"),
    ],
)
async def test_the_pbxs_refusals_are_answered_as_they_are(
    api: Api, pbx: FakePbx, status: int, problem: str
) -> None:
    employee = await api.add_user("olga", "operator", employee="Olga")
    call = await api.add_call(employee_id=employee)
    pbx.refusal = DigitsRefused(status, problem)
    answer = await api.client.post(url(call), json={"digits": "1"}, headers=api.auth("olga"))
    assert (answer.status_code, answer.json()["detail"]) == (status, problem)


async def test_a_call_over_is_409_to_who_may_see_it_and_403_to_others(
    api: Api, pbx: FakePbx
) -> None:
    """Whether another's call is still going is none of an operator's business."""
    olga = await api.add_user("olga", "operator", employee="Olga")
    await api.add_user("petr", "operator", employee="Petr")
    await api.add_user("sam", "supervisor", employee="Sam")
    call = await api.add_call(employee_id=olga)
    pbx.refusal = DigitsRefused(409, "the call is not in progress")
    for user, status in (("olga", 409), ("sam", 409), ("petr", 403)):
        answer = await api.client.post(url(call), json={"digits": "1"}, headers=api.auth(user))
        assert answer.status_code == status, (user, answer.text)


async def test_without_a_pbx_in_the_process_it_is_503(api: Api) -> None:
    await api.add_user("olga", "operator", employee="Olga")
    call = await api.add_call()
    answer = await api.client.post(url(call), json={"digits": "1"}, headers=api.auth("olga"))
    assert answer.status_code == 503, answer.text


async def test_signing_in_is_required(api: Api, pbx: FakePbx) -> None:
    call = await api.add_call()
    answer = await api.client.post(url(call), json={"digits": "1"})
    assert answer.status_code == 401
    assert pbx.sent == []
