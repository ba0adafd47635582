"""`POST /api/v1/calls/{id}/hangup` in front of the PBX: who may, and what
each refusal says, on SQLite and PostgreSQL. The PBX's side is a stand-in
here; the panel's end-to-end test hangs up a real call this way
(tests/web/test_audio.py)."""

from __future__ import annotations

import pytest

from callbridge.pbx.call import CallRefused

from .conftest import Api
from .test_click_to_call import make_employee


class FakePbx:
    def __init__(self) -> None:
        self.ended: list[tuple[str, int]] = []
        self.refusal: CallRefused | None = None

    def end_call(self, call_id: str, employee_id: int) -> None:
        if self.refusal is not None:
            raise self.refusal
        self.ended.append((call_id, employee_id))


@pytest.fixture
def pbx(api: Api) -> FakePbx:
    fake = FakePbx()
    assert api.app is not None
    api.app.state.end_call = fake.end_call
    return fake


async def test_an_employee_hangs_up_their_call(api: Api, pbx: FakePbx) -> None:
    await make_employee(api, "operator", telephony=True)
    call = await api.add_call()
    answer = await api.client.post(f"/api/v1/calls/{call}/hangup", headers=api.auth("operator"))
    assert answer.status_code == 204, answer.text
    [(call_id, _)] = pbx.ended
    assert call_id == call


async def test_an_unknown_call_is_404_and_a_user_without_an_employee_403(
    api: Api, pbx: FakePbx
) -> None:
    answer = await api.client.post("/api/v1/calls/" + "a" * 32 + "/hangup", headers=api.auth())
    assert answer.status_code == 404, answer.text
    call = await api.add_call()
    answer = await api.client.post(f"/api/v1/calls/{call}/hangup", headers=api.auth())
    assert answer.status_code == 403, answer.text
    assert pbx.ended == []


async def test_the_pbx_refusals_come_back_as_they_are(api: Api, pbx: FakePbx) -> None:
    await make_employee(api, "admin", telephony=True)
    call = await api.add_call()
    for status, problem in ((403, "your line takes no part"), (409, "the call is not answered")):
        pbx.refusal = CallRefused(status, problem)
        answer = await api.client.post(f"/api/v1/calls/{call}/hangup", headers=api.auth())
        assert answer.status_code == status, answer.text
        assert problem in answer.json()["detail"]


async def test_an_operator_learns_nothing_of_a_call_not_theirs(api: Api, pbx: FakePbx) -> None:
    await make_employee(api, "operator", telephony=True)
    call = await api.add_call()  # nobody's: an operator may not see it
    pbx.refusal = CallRefused(409, "the call is not in progress")
    answer = await api.client.post(f"/api/v1/calls/{call}/hangup", headers=api.auth("operator"))
    assert answer.status_code == 403, answer.text


async def test_without_a_token_it_is_401_and_without_a_pbx_503(api: Api) -> None:
    call = await api.add_call()
    answer = await api.client.post(f"/api/v1/calls/{call}/hangup")
    assert answer.status_code == 401
    await make_employee(api, "operator", telephony=True)
    answer = await api.client.post(f"/api/v1/calls/{call}/hangup", headers=api.auth("operator"))
    assert answer.status_code == 503, answer.text
