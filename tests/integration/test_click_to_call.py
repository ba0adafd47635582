"""Click-to-call through `callbridge serve`: `POST /api/v1/calls` rings the
employee's registered phone (a SIPp UAS) with callbridge's own SDP offer,
and once it answers calls the number as if that phone had dialled it:
another internal line's SIPp phone, or a SIPp provider on 127.0.0.2 through
an external line and the outgoing rules. Around them: the employee not
answering, the customer busy, and the refusals the API answers at once.

The employee and their API user are written straight into the server's
database (there is no employee API yet); everything else goes through the API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from callbridge.store import Database, Employee, User
from callbridge.store.accounts import issue_token

from .conftest import free_port, start_sipp
from .test_calls import (
    ALICE,
    BOB,
    CAROL,
    Pbx,
    _assert_anchored,
    _assert_succeeded,
    _free_ports,
    _one,
    fresh_postgres,  # noqa: F401 - a fixture
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)
from .test_trunk_calls import LOGIN, PROVIDER, SECRET, mobiles_out

pytestmark = pytest.mark.integration


def employee(
    pbx: Pbx,  # noqa: F811 - the fixture's name
    name: str,
    *,
    telephony: bool = True,
    database_url: str | None = None,
) -> tuple[int, str]:
    """An employee with an operator user of their own: (employee id, the
    user's bearer token)."""
    url = database_url or f"sqlite+aiosqlite:///{pbx.tmp_path / 'callbridge.db'}"

    async def create() -> tuple[int, str]:
        database = Database(url)
        try:
            async with database.session() as session:
                person = Employee(name=name, telephony_enabled=telephony)
                session.add(person)
                await session.flush()
                user = User(
                    username=name.lower(),
                    password_hash="never-signs-in",
                    role="operator",
                    active=True,
                    employee_id=person.id,
                )
                session.add(user)
                await session.commit()
                return person.id, (await issue_token(session, user, 600)).token
        finally:
            await database.close()

    return asyncio.run(create())


def click(pbx: Pbx, token: str, to: str) -> httpx.Response:  # noqa: F811
    with httpx.Client(base_url=f"http://127.0.0.1:{pbx.server.http_port}", timeout=10) as api:
        return api.post(
            "/api/v1/calls", json={"to": to}, headers={"Authorization": f"Bearer {token}"}
        )


def placed(pbx: Pbx, token: str, to: str) -> str:  # noqa: F811
    """Click-to-call `to`; the call record's id."""
    answer = click(pbx, token, to)
    assert answer.status_code == 202, answer.text
    call_id: str = answer.json()["call_id"]
    return call_id


def codecs(body: str) -> set[str]:
    return set(re.findall(r"^a=rtpmap:\d+ ([\w-]+)/", body, re.MULTILINE))


def assert_record(
    record: dict[str, Any], call_id: str, employee_id: int, line_id: int, **expected: Any
) -> None:
    assert record["id"] == call_id, record
    assert record["caller_number"] == ALICE.number, record
    assert (record["employee_id"], record["internal_line_id"]) == (employee_id, line_id), record
    for name, value in expected.items():
        assert record[name] == value, (name, record)


# --- calls that connect ---------------------------------------------------------


def test_the_employees_phone_rings_first_then_the_line_called_and_either_bye_ends_both(
    pbx: Pbx,  # noqa: F811
) -> None:
    alice, token = employee(pbx, "Alice")
    line_id = pbx.line(ALICE, employee_id=alice)
    pbx.line(BOB)
    phone = pbx.device(ALICE, "call_uas_answer.xml")
    customer = pbx.device(BOB, "call_uas_hangup.xml", extra=("-d", "1000"))
    call_id = placed(pbx, token, BOB.number)
    _assert_succeeded(phone, customer, pbx=pbx)
    why = pbx.explain()

    # The employee's phone got callbridge's own offer, with the number to be
    # called in From; the customer's phone was called only after the answer,
    # from the employee's line, with callbridge's media.
    ring = _one(phone.received(method="INVITE"), "INVITE at the employee", why)
    assert f"sip:{BOB.number}@" in (ring.header("From") or ""), ring.text
    assert f"sip:{ALICE.number}@" in (ring.header("To") or ""), ring.text
    _assert_anchored(ring, why)
    assert codecs(ring.body) == {"PCMU", "PCMA", "telephone-event"}, ring.text
    answered = next(m for m in phone.messages() if m.direction == "sent" and m.status == 200)
    invite = _one(customer.received(method="INVITE"), "INVITE at the customer", why)
    # Two SIPp processes stamp their own traces, the sender after sending:
    # the customer's INVITE may be stamped some microseconds before the 200
    # that caused it. The phone rang 300 ms first, so 5 ms still tells.
    assert invite.at >= answered.at - timedelta(milliseconds=5), why
    assert f"sip:{ALICE.number}@" in (invite.header("From") or ""), invite.text
    assert invite.header("Call-ID") != ring.header("Call-ID"), why
    _assert_anchored(invite, why)
    # The customer's BYE was passed on to the employee.
    assert phone.received(method="BYE"), why

    [record] = pbx.calls(1)
    assert_record(
        record,
        call_id,
        alice,
        line_id,
        direction="internal",
        callee_number=BOB.number,
        status="answered",
        hangup_side="callee",
    )


def test_a_customer_is_called_through_the_outgoing_rules_and_the_employee_hangs_up(
    pbx: Pbx,  # noqa: F811
) -> None:
    alice, token = employee(pbx, "Alice")
    line_id = pbx.line(ALICE, employee_id=alice)
    provider_port = free_port(host=PROVIDER)
    mobiles_out(pbx, provider_port)
    provider = start_sipp(
        "provider_uas_auth.xml",
        pbx.server,
        pbx.tmp_path,
        port=provider_port,
        local_ip=PROVIDER,
        extra=["-key", "login", LOGIN, "-key", "secret", SECRET],
    )
    pbx.phones.append(provider)
    phone = pbx.device(ALICE, "call_uas_hangup.xml", extra=("-d", "2000"))
    call_id = placed(pbx, token, "8 (916) 123-45-67")
    _assert_succeeded(phone, provider, pbx=pbx)
    why = pbx.explain()

    ring = _one(phone.received(method="INVITE"), "INVITE at the employee", why)
    assert "sip:89161234567@" in (ring.header("From") or ""), ring.text
    # Exactly as if the phone had dialled 89161234567: challenged, answered
    # with the line's login, the number normalized on the way.
    invites = provider.received(method="INVITE")
    assert len(invites) == 2, why
    assert all(m.first_line.startswith("INVITE sip:+79161234567@") for m in invites), why
    assert "Authorization: Digest" in invites[1].text and SECRET not in invites[1].text
    _assert_anchored(invites[1], why)
    assert provider.received(method="BYE"), why

    [record] = pbx.calls(1)
    assert_record(
        record,
        call_id,
        alice,
        line_id,
        direction="outgoing",
        callee_number="+79161234567",
        callee_raw="89161234567",
        status="answered",
        hangup_side="caller",
    )


def test_the_employees_phone_is_offered_the_customers_codec_when_it_took_another_first(
    pbx: Pbx,  # noqa: F811
) -> None:
    alice, token = employee(pbx, "Alice")
    pbx.line(ALICE, employee_id=alice)
    pbx.line(BOB)
    # Alice's phone answers PCMA first; Bob's answers the offer with PCMU only.
    phone = pbx.device(ALICE, "c2c_employee_pcma_first.xml", extra=("-d", "1000"))
    customer = pbx.device(BOB, "call_uas_answer.xml")
    placed(pbx, token, BOB.number)
    _assert_succeeded(phone, customer, pbx=pbx)
    why = pbx.explain()

    offer = _one(customer.received(method="INVITE"), "INVITE at the customer", why)
    assert re.search(r"^m=audio \d+ RTP/AVP 8 0 101", offer.body, re.MULTILINE), offer.text
    first, again = phone.received(method="INVITE")
    assert codecs(again.body) == {"PCMU", "telephone-event"}, again.text
    _assert_anchored(again, why)
    # The same session as callbridge's first offer, one version on (RFC 3264 §8).
    origin = re.compile(r"^o=\S+ (\d+) (\d+) ", re.MULTILINE)
    [(session, version)] = origin.findall(first.body)
    assert origin.findall(again.body) == [(session, str(int(version) + 1))], again.text
    [record] = pbx.calls(1)
    assert (record["status"], record["hangup_side"]) == ("answered", "caller"), record


def test_a_click_to_call_is_recorded_on_postgresql(
    start_pbx: Callable[..., Pbx],  # noqa: F811
    fresh_postgres: str,  # noqa: F811
) -> None:
    on_pg = start_pbx(CALLBRIDGE_DATABASE_URL=fresh_postgres)
    alice, token = employee(on_pg, "Alice", database_url=fresh_postgres)
    line_id = on_pg.line(ALICE, employee_id=alice)
    on_pg.line(BOB)
    phone = on_pg.device(ALICE, "call_uas_hangup.xml", extra=("-d", "1000"))
    customer = on_pg.device(BOB, "call_uas_answer.xml")
    call_id = placed(on_pg, token, BOB.number)
    _assert_succeeded(phone, customer, pbx=on_pg)
    [record] = on_pg.calls(1)
    assert_record(record, call_id, alice, line_id, status="answered", hangup_side="caller")


# --- calls that do not connect ----------------------------------------------------


def test_nobody_is_called_when_the_employee_does_not_answer(pbx: Pbx) -> None:  # noqa: F811
    alice, token = employee(pbx, "Alice")
    line_id = pbx.line(ALICE, employee_id=alice, ring_timeout=5)
    pbx.line(BOB)
    phone = pbx.device(ALICE, "call_uas_cancelled.xml")
    customer = pbx.device(BOB, "call_uas_answer.xml")
    call_id = placed(pbx, token, BOB.number)
    _assert_succeeded(phone, pbx=pbx, timeout=15)
    why = pbx.explain()

    cancel = _one(phone.received(method="CANCEL"), "CANCEL at the employee", why)
    assert "Originator did not answer" in (cancel.header("Reason") or ""), cancel.text
    ring = _one(phone.received(method="INVITE"), "INVITE at the employee", why)
    assert 4.5 <= (cancel.at - ring.at).total_seconds() <= 7, why
    customer.stop()
    assert not customer.received(method="INVITE"), why

    [record] = pbx.calls(1)
    assert_record(
        record,
        call_id,
        alice,
        line_id,
        status="cancelled",
        hangup_side="caller",
        hangup_cause="originator did not answer",
        answered_at=None,
    )


def test_a_busy_customer_ends_the_employees_side_and_the_call_is_busy(
    pbx: Pbx,  # noqa: F811
) -> None:
    alice, token = employee(pbx, "Alice")
    line_id = pbx.line(ALICE, employee_id=alice)
    pbx.line(BOB)
    phone = pbx.device(ALICE, "call_uas_answer.xml")
    customer = pbx.device(BOB, "call_uas_busy.xml")
    call_id = placed(pbx, token, BOB.number)
    _assert_succeeded(phone, customer, pbx=pbx)
    why = pbx.explain()

    bye = _one(phone.received(method="BYE"), "BYE at the employee", why)
    assert "cause=486" in (bye.header("Reason") or ""), bye.text
    [record] = pbx.calls(1)
    assert_record(
        record,
        call_id,
        alice,
        line_id,
        status="busy",
        hangup_side="callee",
        answered_at=None,
    )


# --- refusals -----------------------------------------------------------------------


def detail_of(answer: httpx.Response) -> Any:
    return answer.json()["detail"]


def test_what_cannot_be_called_is_refused_at_once(pbx: Pbx) -> None:  # noqa: F811
    alice, token = employee(pbx, "Alice")
    pbx.line(ALICE, employee_id=alice)
    pbx.line(BOB)
    muted, muted_token = employee(pbx, "Mallory", telephony=False)
    pbx.line(CAROL, employee_id=muted)
    _, lineless_token = employee(pbx, "Lineless")

    # A number must look like one: 1-32 characters of digits, + ( ) - and spaces.
    for bad in ("", "abc", "+", "1+2", "1" * 33, "101; drop"):
        answer = click(pbx, token, bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert detail_of(answer)[0]["loc"] == ["body", "to"], answer.text
    # The admin has no employee; Mallory may not telephone; Lineless has no line.
    assert pbx.token is not None  # the admin's, signed in to create the lines
    answer = click(pbx, pbx.token, BOB.number)
    assert answer.status_code == 409 and "not an employee" in answer.text, answer.text
    answer = click(pbx, muted_token, BOB.number)
    assert answer.status_code == 403 and "disabled" in answer.text, answer.text
    answer = click(pbx, lineless_token, BOB.number)
    assert answer.status_code == 409 and "no internal line" in answer.text, answer.text
    # Alice's line has no device yet.
    answer = click(pbx, token, BOB.number)
    assert answer.status_code == 409 and "no device" in answer.text, answer.text

    port, _ = _free_ports(2)
    pbx.register(ALICE, port)
    # Bob's line has no device; 199 is nobody; no rule lets a mobile out.
    for number, status in ((BOB.number, 409), ("199", 422), ("89161234567", 422)):
        answer = click(pbx, token, number)
        assert answer.status_code == status, (number, answer.text)
        assert detail_of(answer)[0]["loc"] == ["body", "to"], answer.text
    # Those three were dialled, as far as the records go: refused as a phone's
    # call would have been, without ringing the employee.
    records = pbx.calls(3)
    causes = {r["callee_number"]: (r["status"], r["hangup_cause"]) for r in records}
    assert causes == {
        BOB.number: ("failed", "no registered device"),
        "199": ("failed", "unknown number"),
        "89161234567": ("rejected", "no outgoing route"),
    }, records
