"""Who is calling, live: a SIPp "customer" calls in through an external line
(SIPp on 127.0.0.2 as the provider) to an employee's phone (a SIPp UAS),
and the employee's `/ws/events` stream says who it is — the contact whose
phone holds the number in whatever format — before the phone has rung
200 ms; then `answered`, `ended` or `missed`, each once, and the call
record carries the client's number and the card. Around it: several
matches listed and none linked, an internal call naming the colleague,
hold and resume, a reconnect replaying what was missed, and the telephony
switch taking effect without an apply. On SQLite and PostgreSQL.

Cards, employees and sign-ins are written straight into the database, as
the CRM API (another branch) would."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import update
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from callbridge.numbers import phone_key
from callbridge.store import Database, Employee, User
from callbridge.store.accounts import issue_token
from callbridge.store.models import Account, CallRecord, Contact, Lead, Phone

from .conftest import free_port, start_sipp
from .test_calls import (
    ALICE,
    BOB,
    Pbx,
    _assert_succeeded,
    _final_status,
    fresh_postgres,  # noqa: F401 - a fixture
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)
from .test_trunk_calls import DID, PROVIDER, assert_heard_nothing, external_line, route_incoming_to
from .test_trunk_calls import silent_peer as silent_device

pytestmark = pytest.mark.integration

T = TypeVar("T")
# The customer as the provider sends the number, and as E.164 (the line reads RU).
CUSTOMER = "89161234567"
CUSTOMER_E164 = "+79161234567"
REGION = "RU"


@dataclass
class Crm:
    """A running callbridge and its database, for what the CRM API would write."""

    pbx: Pbx
    url: str

    def run(self, work: Callable[[Database], Coroutine[Any, Any, T]]) -> T:
        async def main() -> T:
            database = Database(self.url)
            try:
                return await work(database)
            finally:
                await database.close()

        return asyncio.run(main())

    def employee(self, name: str) -> int:
        async def work(database: Database) -> int:
            async with database.session() as session:
                employee = Employee(name=name)
                session.add(employee)
                await session.commit()
                return employee.id

        employee_id = self.run(work)
        self.employees_changed()
        return employee_id

    def token(self, employee_id: int, role: str = "operator") -> str:
        """A bearer token of a user who is this employee."""

        async def work(database: Database) -> str:
            async with database.session() as session:
                user = User(
                    username=f"user-{employee_id}",
                    password_hash="!",  # never signs in with a password
                    role=role,
                    employee_id=employee_id,
                )
                session.add(user)
                await session.commit()
                return (await issue_token(session, user, 600)).token

        return self.run(work)

    def card(self, kind: str, name: str, *numbers: str) -> int:
        """A contact, account or lead with `numbers` in the phone index."""
        model = {"contact": Contact, "account": Account, "lead": Lead}[kind]

        async def work(database: Database) -> int:
            async with database.session() as session:
                card = model(name=name)
                session.add(card)
                await session.flush()
                for number in numbers:
                    key = phone_key(number, REGION)
                    phone = Phone(number=number, e164=key.e164, tail=key.tail)
                    setattr(phone, f"{kind}_id", card.id)
                    session.add(phone)
                await session.commit()
                return card.id

        return self.run(work)

    def record(self, call_id: str) -> CallRecord:
        """The call record once it is closed and identified (written behind)."""

        async def work(database: Database) -> CallRecord | None:
            async with database.session() as session:
                return await session.get(CallRecord, call_id)

        deadline = time.monotonic() + 5
        while True:
            found = self.run(work)
            done = found is not None and found.status != "in_progress"
            identified = found is not None and (
                found.matches or found.contact_id or found.account_id or found.lead_id
            )
            if (done and identified) or time.monotonic() > deadline:
                assert found is not None, f"no call record {call_id}"
                return found
            time.sleep(0.1)

    def telephony(self, employee_id: int, enabled: bool) -> None:
        """Flip the switch in the database, then run the employees hook."""

        async def work(database: Database) -> None:
            async with database.session() as session:
                await session.execute(
                    update(Employee)
                    .where(Employee.id == employee_id)
                    .values(telephony_enabled=enabled)
                )
                await session.commit()

        self.run(work)
        self.employees_changed()

    def employees_changed(self) -> None:
        """Run the hook the employees API awaits after every change (SIGHUP
        runs the same in `callbridge serve`), and wait until it has."""
        loaded = self.pbx.server.log().count("pbx.employees_loaded")
        self.pbx.server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while self.pbx.server.log().count("pbx.employees_loaded") == loaded:
            assert time.monotonic() < deadline, "the employees were not reloaded"
            time.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(request: pytest.FixtureRequest, start_pbx: Callable[..., Pbx]) -> Crm:  # noqa: F811
    if request.param == "postgresql":
        url: str = request.getfixturevalue("fresh_postgres")
        return Crm(start_pbx(CALLBRIDGE_DATABASE_URL=url), url)
    pbx = start_pbx()  # noqa: F811
    return Crm(pbx, f"sqlite+aiosqlite:///{pbx.tmp_path / 'callbridge.db'}")


@dataclass
class EventStream:
    """A `/ws/events` client reading in a thread; each message is kept with
    the time it arrived."""

    ws: ClientConnection
    messages: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.messages.append((datetime.now(), json.loads(raw)))
        except ConnectionClosed:
            pass

    def wait_for(self, type: str, timeout: float = 10) -> tuple[datetime, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in list(self.messages):
                if received[1]["type"] == type:
                    return received
            time.sleep(0.01)
        pytest.fail(f"no {type!r} event within {timeout} s; got {self.types()}")

    def types(self) -> list[str]:
        return [message["type"] for _, message in self.messages]

    def of(self, type: str) -> list[dict[str, Any]]:
        return [message for _, message in self.messages if message["type"] == type]


@pytest.fixture
def events(crm: Crm) -> Iterator[Callable[..., EventStream]]:
    """Open event streams on the running callbridge; closed at the end."""
    opened: list[EventStream] = []

    def open_stream(token: str, **query: str | int) -> EventStream:
        # The browser's way: the token in the query.
        params = "&".join(f"{k}={v}" for k, v in {"token": token, **query}.items())
        url = f"ws://127.0.0.1:{crm.pbx.server.http_port}/ws/events?{params}"
        stream = EventStream(sockets.enter_context(connect(url, open_timeout=5)))
        opened.append(stream)
        return stream

    with ExitStack() as sockets:
        try:
            yield open_stream
        finally:
            sockets.close()
            for stream in opened:
                stream._thread.join(timeout=2)


def customer_calls(pbx: Pbx, provider_port: int, scenario: str = "provider_uac_call.xml") -> Any:  # noqa: F811
    customer = start_sipp(
        scenario,
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-s", CUSTOMER, "-key", "did", DID, "-d", "300"],
    )
    pbx.phones.append(customer)
    return customer


def incoming_line(crm: Crm, **line: int) -> tuple[int, int]:
    """Bob's line, his employee, and the provider's line routed to it:
    (Bob's employee id, the provider's port)."""
    bob = crm.employee("Bob Operator")
    crm.pbx.line(BOB, employee_id=bob, **line)
    provider_port = free_port(host=PROVIDER)
    external_line(crm.pbx, provider_port)
    route_incoming_to(crm.pbx, BOB.number)
    return bob, provider_port


def test_ringing_names_the_contact_before_the_phone_has_rung_200_ms(
    crm: Crm, events: Callable[..., EventStream]
) -> None:
    bob, provider_port = incoming_line(crm)
    anna = crm.card("contact", "Anna Petrova", "+7 916 123-45-67")
    token = crm.token(bob)
    stream = events(token, since=0)
    phone = crm.pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(crm.pbx, provider_port)
    _assert_succeeded(customer, phone, pbx=crm.pbx)
    ringing_at, ringing = stream.wait_for("ringing")
    stream.wait_for("ended")
    why = crm.pbx.explain()

    invite = phone.received(method="INVITE")[0]
    late = (ringing_at - invite.at).total_seconds()
    assert late <= 0.2, f"ringing came {late * 1000:.0f} ms after the phone's INVITE\n{why}"
    assert ringing["matches"] == [{"type": "contact", "id": anna, "name": "Anna Petrova"}]
    assert ringing["direction"] == "incoming" and ringing["line"] == BOB.number, ringing
    assert ringing["client_number"] == CUSTOMER_E164, ringing
    assert stream.types() == ["ringing", "answered", "ended"], stream.messages
    ended = stream.of("ended")[0]
    assert (ended["status"], ended["hangup_side"]) == ("answered", "caller"), ended
    assert 0 <= ended["talk_seconds"] <= 3, ended
    assert {m["call_id"] for _, m in stream.messages} == {ringing["call_id"]}
    assert [m["seq"] for _, m in stream.messages] == sorted(m["seq"] for _, m in stream.messages)

    record = crm.record(ringing["call_id"])
    assert (record.client_number, record.contact_id, record.matches) == (CUSTOMER_E164, anna, None)
    assert record.status == "answered"
    # A refreshed page comes back with the last number it saw.
    again = events(token, since=ringing["seq"])
    again.wait_for("ended")
    assert again.types() == ["answered", "ended"], again.messages
    assert token not in crm.pbx.server.log()


def test_the_number_matches_in_each_format_and_several_cards_are_listed_not_linked(
    crm: Crm, events: Callable[..., EventStream]
) -> None:
    bob, provider_port = incoming_line(crm)
    cards = [
        ("contact", crm.card("contact", "Anna Petrova", "+7 916 123-45-67"), "Anna Petrova"),
        ("account", crm.card("account", "Petrov & Co", "8 (916) 1234567"), "Petrov & Co"),
        ("lead", crm.card("lead", "A. Petrova", "79161234567"), "A. Petrova"),
    ]
    stream = events(crm.token(bob), since=0)
    phone = crm.pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(crm.pbx, provider_port)
    _assert_succeeded(customer, phone, pbx=crm.pbx)
    _, ringing = stream.wait_for("ringing")

    expected = [{"type": kind, "id": id, "name": name} for kind, id, name in cards]
    assert ringing["matches"] == expected, ringing
    record = crm.record(ringing["call_id"])
    assert record.matches == expected and record.client_number == CUSTOMER_E164
    assert (record.contact_id, record.account_id, record.lead_id) == (None, None, None)


def test_an_unanswered_call_is_missed_once_with_both_namesakes_as_candidates(
    crm: Crm, events: Callable[..., EventStream]
) -> None:
    bob, provider_port = incoming_line(crm, ring_timeout=5, max_devices=2)
    anna = crm.card("contact", "Anna Petrova", "+7 916 123-45-67")
    boris = crm.card("contact", "Boris Petrov", "+79161234567")
    stream = events(crm.token(bob), since=0)
    # Two phones ring; the call is still missed once.
    phones = [crm.pbx.device(BOB, "call_uas_cancelled.xml") for _ in range(2)]
    customer = customer_calls(crm.pbx, provider_port, "provider_uac_refused.xml")
    _assert_succeeded(customer, *phones, pbx=crm.pbx)
    stream.wait_for("ended")

    assert _final_status_of(customer) == 480, crm.pbx.explain()
    assert stream.types() == ["ringing", "missed", "ended"], stream.messages
    [ringing], [missed], [ended] = stream.of("ringing"), stream.of("missed"), stream.of("ended")
    assert [m["id"] for m in ringing["matches"]] == [anna, boris], ringing
    assert missed["status"] == "missed" and ended["status"] == "missed", stream.messages
    assert ended["talk_seconds"] == 0, ended
    record = crm.record(ringing["call_id"])
    assert [m["id"] for m in record.matches or []] == [anna, boris]
    assert (record.contact_id, record.status, record.client_number) == (
        None,
        "missed",
        CUSTOMER_E164,
    )


def _final_status_of(provider: Any) -> int | None:
    finals = [m.status for m in provider.received() if m.status is not None and m.status >= 200]
    return finals[0] if finals else None


def test_an_internal_call_names_the_colleague_and_reports_hold_and_resume(
    crm: Crm, events: Callable[..., EventStream]
) -> None:
    alice, bob = crm.employee("Alice Agent"), crm.employee("Bob Operator")
    crm.pbx.line(ALICE, employee_id=alice)
    crm.pbx.line(BOB, employee_id=bob)
    bobs, alices = events(crm.token(bob), since=0), events(crm.token(alice), since=0)
    callee = crm.pbx.device(BOB, "call_hold_uas.xml")
    caller = crm.pbx.call(ALICE, BOB.number, "call_hold_uac.xml")
    _assert_succeeded(caller, callee, pbx=crm.pbx)
    bobs.wait_for("ended")
    alices.wait_for("ended")

    # The caller's INFO digit while on hold is a `dtmf` event too.
    expected = ["ringing", "answered", "held", "dtmf", "resumed", "ended"]
    assert bobs.types() == expected and alices.types() == expected, bobs.messages
    dtmf = bobs.of("dtmf")[0]
    assert (dtmf["side"], dtmf["digit"], dtmf["source"]) == ("caller", "5", "info"), dtmf
    assert dtmf["duration"] == 160, dtmf
    ringing = bobs.of("ringing")[0]
    assert ringing["employee"] == {"id": alice, "name": "Alice Agent"}, ringing
    assert (ringing["matches"], ringing["client_number"]) == ([], None), ringing
    assert ringing["direction"] == "internal", ringing
    assert bobs.of("held")[0]["side"] == "caller" == bobs.of("resumed")[0]["side"]


def test_with_telephony_off_the_line_neither_rings_nor_calls_out_until_it_is_on(
    crm: Crm, events: Callable[..., EventStream]
) -> None:
    # Two devices: the one that must stay silent, then one that answers.
    bob, provider_port = incoming_line(crm, max_devices=2)
    stream = events(crm.token(bob), since=0)
    crm.telephony(bob, enabled=False)  # no apply: the hook alone
    device_port = free_port()
    crm.pbx.register(BOB, device_port)
    with silent_device("127.0.0.1", device_port) as device:
        customer = customer_calls(crm.pbx, provider_port, "provider_uac_refused.xml")
        _assert_succeeded(customer, pbx=crm.pbx)
        assert _final_status_of(customer) == 480, crm.pbx.explain()
        assert_heard_nothing(device, "Bob's phone", crm.pbx.explain())
    out = crm.pbx.call(BOB, CUSTOMER, "call_uac_refused.xml")
    _assert_succeeded(out, pbx=crm.pbx)
    assert _final_status(out) == 403, crm.pbx.explain()
    assert out.received(status=403)[0].first_line == "SIP/2.0 403 Telephony disabled"
    records = crm.pbx.calls(2)
    assert {(r["status"], r["hangup_cause"]) for r in records} == {
        ("rejected", "telephony disabled")
    }, records
    assert stream.types() == [], stream.messages  # a call that never rang sends nothing

    crm.telephony(bob, enabled=True)
    phone = crm.pbx.device(BOB, "call_uas_answer.xml")
    customer = customer_calls(crm.pbx, provider_port)
    _assert_succeeded(customer, phone, pbx=crm.pbx)
    assert crm.pbx.calls(3)[0]["status"] == "answered"
