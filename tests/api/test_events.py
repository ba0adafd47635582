"""`/ws/events` over a real socket (uvicorn in the test's loop, the
`websockets` client): the bearer token from the header or the query, an
operator's own events only, `scope=all` for supervisors and admins alone,
replay from `since`, a reset when the backlog cannot replay, bad input
closing with a code that names it, and no token in uvicorn's log lines;
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from callbridge.api import events as events_api
from callbridge.app import HttpService
from callbridge.events import EventBus
from callbridge.store import Employee, User
from callbridge.store.accounts import issue_token

from .conftest import Api

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@dataclass
class Stream:
    """The API served on a free loopback port, with the bus it streams."""

    api: Api
    bus: EventBus
    port: int
    operator_employee: int
    other_employee: int

    def url(self, **query: str | int) -> str:
        params = "&".join(f"{key}={value}" for key, value in query.items())
        return f"ws://127.0.0.1:{self.port}/ws/events" + (f"?{params}" if params else "")

    def connect(self, role: str | None = "operator", **query: str | int) -> Any:
        """A client signed in as `role` with the header (None: no header)."""
        headers = {} if role is None else self.api.auth(role)
        return connect(self.url(**query), additional_headers=headers, open_timeout=5)

    def publish(self, type: str, employee: int, **data: Any) -> None:
        self.bus.publish(type, f"call-{self.bus.seq + 1}", employees=[employee], at=T0, **data)


@pytest.fixture
async def stream(api: Api) -> AsyncIterator[Stream]:
    async with api.database.session() as session:
        mine, other = Employee(name="Olga"), Employee(name="Pavel")
        session.add_all([mine, other])
        await session.flush()
        await session.execute(
            update(User).where(User.username == "operator").values(employee_id=mine.id)
        )
        await session.commit()
        ids = (mine.id, other.id)
    bus = EventBus()
    settings = api.settings.model_copy(update={"http_host": "127.0.0.1", "http_port": 0})
    http = HttpService(settings, api.database, event_bus=bus)
    port = await http.start()
    try:
        yield Stream(api, bus, port, *ids)
    finally:
        await http.stop()


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    received = closed.value.rcvd
    return (received.code, received.reason) if received else (None, None)


async def until_subscribed(bus: EventBus, count: int = 1) -> None:
    """The server subscribes after the handshake: wait for it before publishing."""
    for _ in range(500):
        if bus.subscribers >= count:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the WebSocket never subscribed")


async def test_an_operator_gets_the_events_of_their_own_calls_only(stream: Stream) -> None:
    async with stream.connect("operator") as ws:
        await until_subscribed(stream.bus)
        stream.publish("ringing", stream.other_employee)
        stream.publish("ringing", stream.operator_employee, matches=[])
        message = await receive(ws)
    assert message == {
        "seq": 2,
        "epoch": stream.bus.epoch,
        "type": "ringing",
        "call_id": "call-2",
        "at": "2026-11-27T09:00:00+00:00",
        "matches": [],
    }


async def test_the_token_may_come_in_the_query_for_browsers(stream: Stream) -> None:
    token = stream.api.tokens["operator"]
    async with stream.connect(None, token=token) as ws:
        await until_subscribed(stream.bus)
        stream.publish("answered", stream.operator_employee)
        assert (await receive(ws))["type"] == "answered"


@pytest.mark.parametrize("role", ["admin", "supervisor"])
async def test_admins_and_supervisors_may_follow_every_call(stream: Stream, role: str) -> None:
    async with stream.connect(role, scope="all") as ws:
        await until_subscribed(stream.bus)
        stream.publish("ringing", stream.other_employee)
        stream.publish("ringing", stream.operator_employee)
        assert [(await receive(ws))["seq"] for _ in range(2)] == [1, 2]


async def test_an_operator_asking_for_all_is_refused_with_4403(stream: Stream) -> None:
    async with stream.connect("operator", scope="all") as ws:
        code, reason = await closed_with(ws)
    assert code == 4403 and "scope=all" in (reason or "")
    assert stream.bus.subscribers == 0


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param({}, id="no token"),
        pytest.param({"token": "not-a-token"}, id="bad query token"),
    ],
)
async def test_a_missing_or_bad_token_is_refused_with_4401(
    stream: Stream, auth: dict[str, str]
) -> None:
    async with stream.connect(None, **auth) as ws:
        code, _ = await closed_with(ws)
    assert code == 4401


async def test_a_bad_header_token_is_refused_with_4401(stream: Stream) -> None:
    headers = {"Authorization": "Bearer not-a-token"}
    async with connect(stream.url(), additional_headers=headers, open_timeout=5) as ws:
        code, _ = await closed_with(ws)
    assert code == 4401


@pytest.mark.parametrize(
    ("query", "field"),
    [({"since": "-1"}, "since"), ({"since": "x"}, "since"), ({"scope": "every"}, "scope")],
)
async def test_a_bad_parameter_closes_with_4422_naming_it(
    stream: Stream, query: dict[str, str], field: str
) -> None:
    async with stream.connect("admin", **query) as ws:
        code, reason = await closed_with(ws)
    assert code == 4422 and (reason or "").startswith(f"{field}:"), reason


async def test_a_reconnect_with_since_replays_what_was_missed_then_goes_on_live(
    stream: Stream,
) -> None:
    async with stream.connect("operator") as ws:
        await until_subscribed(stream.bus)
        stream.publish("ringing", stream.operator_employee)
        last_seen = (await receive(ws))["seq"]
    # While the page reloads: two events of its own, one of someone else.
    stream.publish("answered", stream.operator_employee)
    stream.publish("ringing", stream.other_employee)
    stream.publish("ended", stream.operator_employee, status="answered")
    async with stream.connect("operator", since=last_seen) as ws:
        replayed = [await receive(ws) for _ in range(2)]
        await until_subscribed(stream.bus)
        stream.publish("ringing", stream.operator_employee)
        live = await receive(ws)
    assert [(m["seq"], m["type"]) for m in replayed] == [(2, "answered"), (4, "ended")]
    assert (live["seq"], live["type"]) == (5, "ringing")


async def test_a_since_the_backlog_no_longer_holds_starts_with_a_reset(stream: Stream) -> None:
    for _ in range(10_002):  # the backlog keeps the last 10,000
        stream.publish("ringing", stream.other_employee)
    async with stream.connect("operator", since=1) as ws:
        reset = await receive(ws)
    assert (reset["type"], reset["seq"], reset["epoch"]) == ("reset", 10_002, stream.bus.epoch)


async def test_the_token_never_reaches_the_log(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    token = stream.api.tokens["operator"]
    with caplog.at_level(logging.INFO):
        async with stream.connect(None, token=token) as ws:
            await until_subscribed(stream.bus)
            stream.publish("answered", stream.operator_employee)
            await receive(ws)
        async with stream.connect(None, token=token + "x") as ws:
            await closed_with(ws)
    lines = [record.getMessage() for record in caplog.records]
    assert any("/ws/events?token=***" in line for line in lines), lines
    assert not any(token in line for line in lines), lines


async def test_a_socket_whose_token_expires_is_closed_with_4401(stream: Stream) -> None:
    async with stream.api.database.session() as session:
        user = await session.scalar(select(User).where(User.username == "operator"))
        assert user is not None
        # Long enough to connect and subscribe on a loaded machine first.
        short = await issue_token(session, user, ttl=4)
    async with stream.connect(None, token=short.token) as ws:
        await until_subscribed(stream.bus)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert stream.bus.subscribers == 0


def _watchers() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__name__", "") == "_watch_token"
    ]


async def test_a_socket_that_fails_while_serving_leaves_no_token_watcher_behind(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> dict[str, Any]:
        raise LookupError("a bug while serving")

    monkeypatch.setattr(events_api, "_as_seen_by", broken)
    async with stream.connect() as ws:
        await until_subscribed(stream.bus)
        assert _watchers(), "the socket's token is not being watched"
        stream.publish("ringing", stream.operator_employee)
        await closed_with(ws)
    for _ in range(100):
        if not _watchers():
            break
        await asyncio.sleep(0.01)
    # It would look the token up every so often until it expired (hours).
    assert not _watchers(), "the socket is gone but its token watcher runs on"
