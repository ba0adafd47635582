"""`/api/v1/calls`: the call records, newest first, each filter, paging with
the total, validation naming the field, and an operator who sees only the
calls of their own employee (and of cards they see: tests/api/test_history.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from callbridge.pbx.calls import CallRecorder
from callbridge.store import Employee, InternalLine, User

from .conftest import Api

URL = "/api/v1/calls"
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Calls:
    """Two employees with a line each, and a few calls between them."""

    def __init__(self, api: Api, recorder: CallRecorder) -> None:
        self.api = api
        self.recorder = recorder
        self.ids: dict[str, str] = {}

    async def setup(self) -> None:
        async with self.api.database.session() as session:
            self.alice, self.bob = Employee(name="Alice"), Employee(name="Bob")
            session.add_all([self.alice, self.bob])
            await session.flush()
            self.line_101 = self._line("101", "alice", self.alice.id)
            self.line_102 = self._line("102", "bob", self.bob.id)
            session.add_all([self.line_101, self.line_102])
            await session.commit()
        # Calls to Bob's line are handled by Bob, and the other way round.
        self._call("answered", minute=0, to=self.line_102, by=self.bob, status="answered")
        self._call("missed", minute=10, to=self.line_101, by=self.alice, status="missed")
        self._call("busy", minute=20, to=self.line_102, by=self.bob, status="busy")
        self._call("ringing", minute=30, to=self.line_101, by=self.alice, status=None)
        await self.recorder.flush()

    @staticmethod
    def _line(number: str, username: str, employee_id: int) -> InternalLine:
        line = InternalLine(number=number, username=username, employee_id=employee_id)
        line.set_password("s3cret-pass", "test.realm")
        return line

    def _call(
        self, name: str, *, minute: int, to: InternalLine, by: Employee, status: str | None
    ) -> None:
        call_id = self.recorder.begin(
            at=at(minute),
            caller_number="102" if to.number == "101" else "101",
            callee_number=to.number,
            internal_line_id=to.id,
            employee_id=by.id,
        )
        answered_at: datetime | None = None
        if status == "answered":
            answered_at = at(minute) + timedelta(seconds=5)
            self.recorder.answered(call_id, answered_at)
        if status is not None:
            side = "caller" if status == "answered" else "callee"
            self.recorder.ended(
                call_id,
                at=at(minute + 1),
                answered_at=answered_at,
                status=status,
                hangup_side=side,
                hangup_cause=None,
                hold_seconds=20 if status == "answered" else 0,
            )
        self.ids[name] = call_id

    def names(self, items: list[dict[str, Any]]) -> list[str]:
        by_id = {call_id: name for name, call_id in self.ids.items()}
        return [by_id[item["id"]] for item in items]


@pytest.fixture
async def recorder(api: Api) -> AsyncIterator[CallRecorder]:
    running = CallRecorder(api.database)
    running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def calls(api: Api, recorder: CallRecorder) -> Calls:
    made = Calls(api, recorder)
    await made.setup()
    return made


async def listed(api: Api, role: str = "admin", **params: Any) -> dict[str, Any]:
    answer = await api.client.get(URL, params=params, headers=api.auth(role))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_names(answer: Any, field: str) -> None:
    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["detail"]] == [["query", field]]


async def test_calls_are_listed_newest_first_with_the_total(api: Api, calls: Calls) -> None:
    page = await listed(api)
    assert calls.names(page["items"]) == ["ringing", "busy", "missed", "answered"]
    assert page["total"] == 4
    answered = page["items"][-1]
    assert answered["status"] == "answered" and answered["talk_seconds"] == 55
    assert [item["hold_seconds"] for item in page["items"]] == [0, 0, 0, 20]
    assert answered["started_at"] == "2026-11-27T09:00:00Z"
    assert (answered["caller_number"], answered["callee_number"]) == ("101", "102")
    assert page["items"][0]["status"] == "in_progress"


async def test_one_call_is_read_by_id(api: Api, calls: Calls) -> None:
    answer = await api.client.get(f"{URL}/{calls.ids['busy']}", headers=api.auth("supervisor"))
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["hangup_side"]) == ("busy", "callee")
    unknown = await api.client.get(f"{URL}/{'0' * 32}", headers=api.auth())
    assert unknown.status_code == 404


async def test_filter_by_line_number(api: Api, calls: Calls) -> None:
    assert calls.names((await listed(api, line="101"))["items"]) == ["ringing", "missed"]
    assert (await listed(api, line="999"))["total"] == 0


async def test_filter_by_employee(api: Api, calls: Calls) -> None:
    page = await listed(api, employee_id=calls.bob.id)
    assert calls.names(page["items"]) == ["busy", "answered"]


async def test_filter_by_status(api: Api, calls: Calls) -> None:
    assert calls.names((await listed(api, status="missed"))["items"]) == ["missed"]
    assert calls.names((await listed(api, status="in_progress"))["items"]) == ["ringing"]
    assert (await listed(api, status="cancelled"))["total"] == 0


async def test_filter_by_direction(api: Api, calls: Calls) -> None:
    assert (await listed(api, direction="internal"))["total"] == 4
    assert (await listed(api, direction="incoming"))["total"] == 0


async def test_filter_by_time_range_on_the_start(api: Api, calls: Calls) -> None:
    since = await listed(api, since=at(10).isoformat())
    assert calls.names(since["items"]) == ["ringing", "busy", "missed"]
    until = await listed(api, until="2026-11-27T09:20:00+00:00")
    assert calls.names(until["items"]) == ["missed", "answered"]
    # The same instant written in another zone.
    both = await listed(api, since="2026-11-27T10:05:00+01:00", until=at(30).isoformat())
    assert calls.names(both["items"]) == ["busy", "missed"]


async def test_filters_combine(api: Api, calls: Calls) -> None:
    page = await listed(api, line="102", status="busy", since=at(0).isoformat())
    assert calls.names(page["items"]) == ["busy"]


async def test_paging_keeps_the_total(api: Api, calls: Calls) -> None:
    first = await listed(api, limit=3)
    second = await listed(api, limit=3, offset=3)
    assert (first["total"], second["total"]) == (4, 4)
    assert calls.names(first["items"]) == ["ringing", "busy", "missed"]
    assert calls.names(second["items"]) == ["answered"]
    assert (await listed(api, offset=10))["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "hung_up"}, "status"),
        ({"status": "ANSWERED"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-27T09:00:00"}, "until"),  # no zone: ambiguous
        # Instants that fall outside the years 1 to 9999 in UTC (were a 500).
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until"),
        ({"line": "1a"}, "line"),
        ({"employee_id": "bob"}, "employee_id"),
    ],
)
async def test_bad_query_is_422_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    assert_names(await api.client.get(URL, params=params, headers=api.auth()), field)


async def test_operator_sees_only_the_calls_of_their_employee(api: Api, calls: Calls) -> None:
    async with api.database.session() as session:
        await session.execute(
            update(User).where(User.username == "operator").values(employee_id=calls.alice.id)
        )
        await session.commit()
    page = await listed(api, "operator")
    assert calls.names(page["items"]) == ["ringing", "missed"] and page["total"] == 2
    # Filters narrow within their own calls, never widen past them.
    assert (await listed(api, "operator", employee_id=calls.bob.id))["total"] == 0
    assert (await listed(api, "operator", line="102"))["total"] == 0
    own = await api.client.get(f"{URL}/{calls.ids['missed']}", headers=api.auth("operator"))
    assert own.status_code == 200
    # Another's call is refused (issue 5: 403); an unknown id is still a 404.
    other = await api.client.get(f"{URL}/{calls.ids['busy']}", headers=api.auth("operator"))
    assert other.status_code == 403
    unknown = await api.client.get(f"{URL}/{'0' * 32}", headers=api.auth("operator"))
    assert unknown.status_code == 404


async def test_operator_without_an_employee_sees_no_calls(
    api: Api, calls: Calls, recorder: CallRecorder
) -> None:
    # A record with no employee must not match an operator with none.
    recorder.begin(at=at(40), caller_number="101", callee_number="199")
    await recorder.flush()
    assert await listed(api, "operator") == {"items": [], "total": 0}
    for call_id in calls.ids.values():
        answer = await api.client.get(f"{URL}/{call_id}", headers=api.auth("operator"))
        assert answer.status_code == 403


async def test_calls_need_a_token(api: Api, calls: Calls) -> None:
    assert (await api.client.get(URL)).status_code == 401
    assert (await api.client.get(f"{URL}/{calls.ids['busy']}")).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await api.client.get(URL, headers=bad)).status_code == 401
