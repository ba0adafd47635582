"""What a peer sends, however long or hostile, against a running callbridge
on SQLite and PostgreSQL: a raw-socket provider on 127.0.0.2 (and a raw
REGISTER of a phone) sends one over-long or unprintable value in a field
that reaches the store — the caller's and the dialled number, the display
name, the Call-ID, the tags, the user agent, the Contact — and a normal call
and a normal registration after it are still written. Then header
injection: a percent-encoded CR LF in the caller's number and a display name
with <>;" reach the employee's phone (a SIPp UAS) as one quoted, escaped
From, and the call record and the live events carry no control character.

The hostile calls share a callbridge per store (a start costs seconds): they
go to Bob's line, which has no phone, so none leaves a binding behind, and
the provider's address is never blocked."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from sqlalchemy import select

from callbridge.sip import Response, parse, parse_name_addr
from callbridge.sip.digest import answer_challenge, parse_challenge
from callbridge.store import Database, Registration
from callbridge.store.models import CallRecord

from .test_calls import (  # noqa: F401 - fixtures
    ALICE,
    BOB,
    Pbx,
    fresh_postgres,
    pbx_running,
    postgres_database,
    start_pbx,
)
from .test_events import Crm, EventStream, crm, events, incoming_line  # noqa: F401
from .test_trunk_calls import DID, PROVIDER

pytestmark = pytest.mark.integration

CUSTOMER = b"89161234567"
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


@contextmanager
def provider_socket(port: int) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((PROVIDER, port))
    sock.settimeout(0.5)
    try:
        yield sock
    finally:
        sock.close()


def exchange(sock: socket.socket, server: tuple[str, int], request: bytes) -> Response:
    """Send `request` and read its answers up to the final one (ACKed when
    it is an INVITE's failure); that final answer."""
    sock.sendto(request, server)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        response = parse(data)
        if not isinstance(response, Response) or response.status < 200:
            continue
        if request.startswith(b"INVITE") and response.status >= 300:
            sock.sendto(_ack(request, response), server)
        return response
    pytest.fail(f"no final answer to:\n{request.decode(errors='replace')}")


def _ack(invite: bytes, response: Response) -> bytes:
    head = invite.split(b"\r\n\r\n")[0].split(b"\r\n")
    keep = [line for line in head[1:] if line.split(b":")[0] in (b"Via", b"From", b"Call-ID")]
    to = f"To: {response.headers.get('To')}".encode("utf-8", "surrogateescape")
    ruri = head[0].split(b" ")[1]
    cseq = b"CSeq: 1 ACK"
    lines = [b"ACK " + ruri + b" SIP/2.0", *keep, to, cseq, b"Max-Forwards: 70"]
    return b"\r\n".join([*lines, b"Content-Length: 0", b"", b""])


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\n"
)


def invite(
    server: tuple[str, int],
    port: int,
    *,
    dialled: bytes = DID.encode(),
    from_: bytes | None = None,
    call_id: bytes | None = None,
) -> bytes:
    host = f"{server[0]}:{server[1]}".encode()
    from_ = from_ or b"<sip:" + CUSTOMER + b"@127.0.0.2>;tag=p" + secrets.token_hex(4).encode()
    call_id = call_id or secrets.token_hex(8).encode() + b"@127.0.0.2"
    head = [
        b"INVITE sip:" + dialled + b"@" + host + b" SIP/2.0",
        f"Via: SIP/2.0/UDP {PROVIDER}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport".encode(),
        b"Max-Forwards: 70",
        b"From: " + from_,
        b"To: <sip:" + dialled + b"@" + host + b">",
        b"Call-ID: " + call_id,
        b"CSeq: 1 INVITE",
        f"Contact: <sip:provider@{PROVIDER}:{port}>".encode(),
        b"Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}".encode(),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + SDP


def register(
    pbx: Pbx,
    line: Any,
    *,
    user_agent: bytes = b"desk-phone/1.0",
    contact: bytes | None = None,
    call_id: bytes | None = None,
) -> int:
    """A phone of `line` registers from 127.0.0.1 (answering the digest
    challenge); the final status."""
    server = (pbx.server.host, pbx.server.port)
    host = f"{server[0]}:{server[1]}"
    call_id = call_id or secrets.token_hex(8).encode() + b"@127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        port = sock.getsockname()[1]
        contact = contact or f"<sip:{line.number}@127.0.0.1:{port}>".encode()

        def request(cseq: int, authorization: bytes = b"") -> bytes:
            head = [
                f"REGISTER sip:{host} SIP/2.0".encode(),
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)}".encode(),
                b"Max-Forwards: 70",
                f"From: <sip:{line.number}@{host}>;tag=r{cseq}".encode(),
                f"To: <sip:{line.number}@{host}>".encode(),
                b"Call-ID: " + call_id,
                f"CSeq: {cseq} REGISTER".encode(),
                b"Contact: " + contact,
                b"User-Agent: " + user_agent,
                b"Expires: 600",
                *([authorization] if authorization else []),
                b"Content-Length: 0",
            ]
            return b"\r\n".join(head) + b"\r\n\r\n"

        first = exchange(sock, server, request(1))
        if first.status != 401:
            return first.status
        challenge = parse_challenge(first.headers.get("WWW-Authenticate") or "")
        credentials = answer_challenge(
            challenge,
            method="REGISTER",
            uri=f"sip:{host}",
            username=line.username,
            password=line.password,
        )
        authorization = f"Authorization: {credentials.to_header_value()}".encode()
        return exchange(sock, server, request(2, authorization)).status


def stored(crm: Crm) -> tuple[list[CallRecord], list[Registration]]:  # noqa: F811
    async def work(database: Database) -> tuple[list[CallRecord], list[Registration]]:
        async with database.session() as session:
            calls = list(await session.scalars(select(CallRecord)))
            registrations = list(await session.scalars(select(Registration)))
        return calls, registrations

    return crm.run(work)


def wait_stored(
    crm: Crm,  # noqa: F811
    done: Callable[[list[CallRecord], list[Registration]], bool],
    why: str,
) -> tuple[list[CallRecord], list[Registration]]:
    deadline = time.monotonic() + 8
    while True:
        calls, registrations = stored(crm)
        if done(calls, registrations):
            return calls, registrations
        if time.monotonic() > deadline:
            pytest.fail(f"{why}: calls {calls!r}, registrations {registrations!r}")
        time.sleep(0.1)


def closed(calls: list[CallRecord], call_id: bytes) -> bool:
    return any(c.sip_call_id == call_id.decode() and c.status != "in_progress" for c in calls)


# One value a peer controls, per field that reaches the store, each the
# longest or the least printable it can be sent as.
_LONG_DIGITS = b"9" * 40
HOSTILE_INVITES: dict[str, dict[str, bytes]] = {
    "caller number too long": {"from_": b"<sip:" + _LONG_DIGITS + b"@127.0.0.2>;tag=n1"},
    "caller number with NUL and CR LF": {"from_": b"<sip:%00%0d%0a" + CUSTOMER + b"@p>;tag=n2"},
    "dialled number too long": {"dialled": b"7" * 40},
    "dialled number with NUL": {"dialled": b"%00" + DID.encode()},
    "dialled number with letters": {"dialled": b"evil%0d%0aX"},
    "display name": {"from_": b'"\xff\x01' + b"n" * 400 + b'" <sip:' + CUSTOMER + b"@p>;tag=d1"},
    "Call-ID too long": {"call_id": b"c" * 300 + b"@127.0.0.2"},
    "Call-ID not UTF-8": {"call_id": b"bad\xff\x01id@127.0.0.2"},
    "tags": {"from_": b"<sip:" + CUSTOMER + b"@p>;tag=" + b"t\xff" * 300},
}
HOSTILE_REGISTERS: dict[str, dict[str, bytes]] = {
    "user agent": {"user_agent": b"phone \xff\x00\x1b[2J" + b"u" * 400},
    "contact": {"contact": b'"\xff\x00" <sip:102@127.0.0.1:5999>'},
    "contact too long": {"contact": b"<sip:102@127.0.0.1:5999;x=" + b"y" * 3000 + b">"},
    "Call-ID too long": {"call_id": b"r" * 300},
}
# The user agent is cut and made printable; a Contact with a control
# character and a Call-ID the store cannot keep are refused.
REGISTER_STATUS = {
    "user agent": 200,
    "contact": 400,
    "contact too long": 200,
    "Call-ID too long": 400,
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def called(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Crm, int]]:
    """The callbridge the hostile calls on one store share, Bob's line routed
    from the provider: (its CRM, the provider's port)."""
    tmp_path = tmp_path_factory.mktemp(f"hostile-calls-{request.param}")
    with ExitStack() as running:
        if request.param == "postgresql":
            url = running.enter_context(postgres_database())
            pbx = running.enter_context(pbx_running(tmp_path, CALLBRIDGE_DATABASE_URL=url))
        else:
            pbx = running.enter_context(pbx_running(tmp_path))
            url = f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}"
        crm = Crm(pbx, url)
        _, provider_port = incoming_line(crm)
        yield crm, provider_port


@pytest.mark.parametrize("field", list(HOSTILE_INVITES))
def test_a_hostile_call_never_stops_the_next_calls_record(
    called: tuple[Crm, int], field: str
) -> None:
    shared, provider_port = called
    pbx = shared.pbx
    log = pbx.server.since_now()
    server = (pbx.server.host, pbx.server.port)
    with provider_socket(provider_port) as sock:
        answer = exchange(sock, server, invite(server, provider_port, **HOSTILE_INVITES[field]))
        assert 400 <= answer.status < 700, answer
        time.sleep(0.2)  # the hostile record's batch goes first, alone
        normal_id = secrets.token_hex(8).encode()
        exchange(sock, server, invite(server, provider_port, call_id=normal_id))
    calls, _ = wait_stored(shared, lambda c, _: closed(c, normal_id), "the next call's record")
    for call in calls:
        for name in ("caller_number", "callee_number", "caller_raw", "callee_raw", "sip_call_id"):
            value = getattr(call, name) or ""
            assert not _CONTROL_RE.search(value), (name, value)
    assert "calls.change_dropped" not in log.log()


@pytest.mark.parametrize("field", list(HOSTILE_REGISTERS))
def test_a_hostile_registration_never_stops_the_next_ones(crm: Crm, field: str) -> None:  # noqa: F811
    pbx = crm.pbx
    pbx.line(ALICE)
    pbx.line(BOB)
    status = register(pbx, BOB, **HOSTILE_REGISTERS[field])
    assert status == REGISTER_STATUS[field], status
    time.sleep(0.2)
    assert register(pbx, ALICE) == 200
    _, registrations = wait_stored(
        crm, lambda _, r: any(x.aor == ALICE.number for x in r), "Alice's registration"
    )
    for registration in registrations:
        for name in ("contact", "call_id", "user_agent"):
            value = getattr(registration, name) or ""
            assert not _CONTROL_RE.search(value), (name, value)
    assert "pbx.location_dropped" not in pbx.server.log()


def test_a_forged_header_and_display_name_reach_the_phone_as_one_quoted_from(
    crm: Crm,  # noqa: F811
    events: Callable[..., EventStream],  # noqa: F811
) -> None:
    bob, provider_port = incoming_line(crm)
    stream = events(crm.token(bob), since=0)
    pbx = crm.pbx
    phone = pbx.device(BOB, "call_uas_busy.xml")
    server = (pbx.server.host, pbx.server.port)
    display = rb'"Boss\" <sip:100@pbx>;tag=forged \\" '
    hostile = display + b"<sip:%0d%0aX-Injected%3a%20yes%0d%0a" + CUSTOMER + b"@127.0.0.2>;tag=h1"
    call_id = secrets.token_hex(8).encode()
    with provider_socket(provider_port) as sock:
        answer = exchange(
            sock, server, invite(server, provider_port, from_=hostile, call_id=call_id)
        )
    assert answer.status == 486, answer
    [received] = phone.received(method="INVITE")
    why = pbx.explain()
    assert "X-Injected" not in received.text, why
    from_ = received.header("From") or ""
    assert from_.startswith('"Boss\\" <sip:100@pbx>;tag=forged \\\\" <sip:anonymous@'), from_
    shown = parse_name_addr(from_)
    assert shown.display_name == 'Boss" <sip:100@pbx>;tag=forged \\', why
    assert shown.tag != "forged" and str(shown.uri).startswith("sip:anonymous@"), from_
    stream.wait_for("ended")
    for _, message in stream.messages:
        assert not any(_CONTROL_RE.search(text) for text in _texts(message)), message
    calls, _ = wait_stored(crm, lambda c, _: closed(c, call_id), "the call's record")
    [record] = [c for c in calls if c.sip_call_id == call_id.decode()]
    assert record.caller_number == "anonymous", record
    assert record.caller_raw == "\ufffd\ufffdX-Injected: yes\ufffd\ufffd" + CUSTOMER.decode()


def _texts(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
