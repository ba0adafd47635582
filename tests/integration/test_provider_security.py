"""Attacks through an external line, against a live callbridge: a provider's
INVITE spoofed over UDP when the line is configured for TCP (or the other
way round), a line that checks its provider's calls by digest, and a
normalization pattern that backtracks catastrophically on a long caller
number while the server must keep answering."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest

from callbridge.numbers import MAX_NUMBER_LENGTH

from .conftest import free_port, start_sipp
from .test_calls import (
    BOB,
    Pbx,
    _assert_succeeded,
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)
from .test_guard import blocks, register_with_password, status_of
from .test_trunk_calls import (
    CUSTOMER,
    DID,
    LOGIN,
    PROVIDER,
    SECRET,
    assert_heard_nothing,
    external_line,
    route_incoming_to,
    rule,
    silent_peer,
    strangers_call_rings_nobody,
)

pytestmark = pytest.mark.integration


def provider_call(
    pbx: Pbx,  # noqa: F811 - the fixture's name
    *,
    password: str = SECRET,
    scenario: str = "call_uac.xml",
    recv_timeout: float = 10,
) -> Any:
    """The provider at PROVIDER calling DID from CUSTOMER with call_uac.xml:
    an INVITE without credentials, and after a 407 one signed with the
    line's login and `password`."""
    server = pbx.server
    media_port = free_port(host=PROVIDER)
    customer = start_sipp(
        scenario,
        server,
        pbx.tmp_path,
        local_ip=PROVIDER,
        media_port=media_port,
        recv_timeout=recv_timeout,
        extra=[
            "-s",
            CUSTOMER,
            "-au",
            LOGIN,
            "-ap",
            password,
            "-auth_uri",
            f"{DID}@{server.host}:{server.port}",
            "-key",
            "callee",
            DID,
            "-key",
            "rtp_port",
            str(media_port),
            "-d",
            "300",
        ],
    )
    pbx.phones.append(customer)
    return customer


# ---------------------------------------------------------------- transport


def test_a_providers_invite_over_udp_to_a_tcp_line_never_rings_an_employee(
    pbx: Pbx,  # noqa: F811
) -> None:
    pbx.line(BOB)
    # SIPp plays the provider from the line's own address, but over UDP,
    # where anyone can write that address.
    external_line(pbx, free_port(host=PROVIDER), transport="tcp")
    route_incoming_to(pbx, BOB.number)
    spoofer = strangers_call_rings_nobody(pbx)
    [refusal] = spoofer.received(status=403)
    assert refusal.first_line == "SIP/2.0 403 Forbidden", refusal.text
    assert "call.stranger" in pbx.server.log()
    with pbx.api() as api:
        assert api.get("/api/v1/calls").json()["items"] == []


@pytest.mark.parametrize(("configured", "sent"), [("tcp", "udp"), ("udp", "tcp")])
def test_an_invite_over_another_transport_than_the_lines_is_refused(
    pbx: Pbx,  # noqa: F811
    configured: str,
    sent: str,
) -> None:
    pbx.line(BOB)
    external_line(pbx, free_port(host=PROVIDER), transport=configured)
    route_incoming_to(pbx, BOB.number)
    device_port = free_port()
    pbx.register(BOB, device_port)
    with silent_peer("127.0.0.1", device_port) as device:
        status = _raw_invite(pbx, transport=sent, caller=CUSTOMER)
        assert_heard_nothing(device, "Bob's device", pbx.explain())
    assert status.startswith("SIP/2.0 403"), status
    assert "call.stranger" in pbx.server.log()
    with pbx.api() as api:
        records = api.get("/api/v1/calls", params={"limit": 100}).json()["items"]
    assert records == [], records


def test_an_invite_over_the_lines_own_transport_is_its_call(pbx: Pbx) -> None:  # noqa: F811
    # The control for the test above: the same raw INVITE over TCP to a TCP
    # line is the line's call (no route yet: 480, not 403).
    external_line(pbx, free_port(host=PROVIDER), transport="tcp")
    status = _raw_invite(pbx, transport="tcp", caller=CUSTOMER)
    assert status.startswith("SIP/2.0 480"), status


# ---------------------------------------------------------------- incoming digest


def test_a_line_with_incoming_auth_takes_the_call_its_provider_signs(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(BOB)
    external_line(pbx, free_port(host=PROVIDER), incoming_auth=True)
    route_incoming_to(pbx, BOB.number)
    employee = pbx.device(BOB, "call_uas_answer.xml")
    customer = provider_call(pbx)
    _assert_succeeded(customer, employee, pbx=pbx)
    [challenge] = customer.received(status=407)
    assert "algorithm=MD5" in challenge.text, challenge.text
    [record] = pbx.calls(1)
    assert (record["direction"], record["status"]) == ("incoming", "answered"), record
    assert record["caller_raw"] == CUSTOMER, record


def test_a_line_with_incoming_auth_refuses_a_wrong_signature(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(BOB)
    external_line(pbx, free_port(host=PROVIDER), incoming_auth=True)
    route_incoming_to(pbx, BOB.number)
    device_port = free_port()
    pbx.register(BOB, device_port)
    with silent_peer("127.0.0.1", device_port) as device:
        # Without credentials: challenged, never rung.
        assert _raw_invite(pbx, transport="udp", caller=CUSTOMER).startswith("SIP/2.0 407")
        # With the wrong password: challenged again (SIPp's call_uac.xml
        # expects a 200 after its signed INVITE, so it fails here).
        customer = provider_call(pbx, password="not-the-secret", recv_timeout=3)
        assert customer.wait(15).successful == 0
        assert len(customer.received(status=407)) >= 2, pbx.explain()
        assert not customer.received(status=200), pbx.explain()
        assert_heard_nothing(device, "Bob's device", pbx.explain())


def test_strangers_guessing_at_the_lines_login_do_not_cut_off_its_provider(
    pbx: Pbx,  # noqa: F811
) -> None:
    # The login is no secret (a provider's INVITEs carry it): guesses at it
    # from other addresses refuse the account for a while, but never to the
    # provider's own address, which the guard does not block.
    pbx.line(BOB)
    external_line(pbx, free_port(host=PROVIDER), incoming_auth=True)
    route_incoming_to(pbx, BOB.number)
    answers = [
        register_with_password(pbx.server, f"127.0.8.{n}", LOGIN, "guess") for n in range(1, 13)
    ]
    assert status_of(answers[-1]) == 503, answers[-1]
    assert [b["source"] for b in blocks(pbx, "account")] == [LOGIN]
    employee = pbx.device(BOB, "call_uas_answer.xml")
    customer = provider_call(pbx)
    _assert_succeeded(customer, employee, pbx=pbx)


# ---------------------------------------------------------------- patterns and numbers

CATASTROPHIC = r"(\d+)+x"


def test_a_catastrophic_pattern_on_a_long_caller_does_not_stall_the_server(
    pbx: Pbx,  # noqa: F811
) -> None:
    line_id = external_line(pbx, free_port(host=PROVIDER))
    rule(
        pbx,
        "/api/v1/normalization-rules",
        {
            "name": "backtracks on Python's re",
            "direction": "incoming",
            "external_line_id": line_id,
            "fields": ["from", "request_uri", "to"],
            "method": "pattern",
            "match": CATASTROPHIC,
            "replacement": "X",
        },
    )
    for digits in (26, 30, MAX_NUMBER_LENGTH):
        with _udp(PROVIDER) as provider, _udp("127.0.0.1") as prober:
            provider.sendto(_invite(pbx, "udp", "1" * digits), (pbx.server.host, pbx.server.port))
            # The INVITE is read first; an OPTIONS right behind it must be
            # answered as quickly as on an idle server.
            time.sleep(0.02)
            started = time.monotonic()
            prober.sendto(_options(pbx, prober), (pbx.server.host, pbx.server.port))
            answer = prober.recv(65535).decode()
            round_trip = time.monotonic() - started
            invite_answer = _final(provider)
        assert answer.startswith("SIP/2.0 200"), answer
        assert round_trip < 0.5, f"OPTIONS took {round_trip:.3f} s beside a {digits}-digit caller"
        assert invite_answer.startswith("SIP/2.0 480"), invite_answer  # the line has no route


@pytest.mark.parametrize(("where", "status"), [("ruri", "414 Request-URI"), ("to", "400 To")])
def test_a_number_longer_than_the_bound_is_refused_before_any_rule(
    pbx: Pbx,  # noqa: F811
    where: str,
    status: str,
) -> None:
    external_line(pbx, free_port(host=PROVIDER))
    numbers = {"caller": CUSTOMER, "ruri": DID, "to": DID}
    numbers[where] = "7" * (MAX_NUMBER_LENGTH + 1)
    answer = _raw_invite(pbx, transport="udp", **numbers)
    assert answer == f"SIP/2.0 {status} Number Too Long", answer


def test_a_caller_number_longer_than_the_bound_is_a_call_from_anonymous(
    pbx: Pbx,  # noqa: F811
) -> None:
    # A garbled caller id must not cost the customer's call: it goes on as
    # anonymous (RFC 3323), and no rule sees the over-long number.
    external_line(pbx, free_port(host=PROVIDER))
    answer = _raw_invite(
        pbx, transport="udp", caller="7" * (MAX_NUMBER_LENGTH + 1), ruri=DID, to=DID
    )
    assert answer.startswith("SIP/2.0 480"), answer  # routed: the default rule has no line yet


# ---------------------------------------------------------------- raw SIP


def _udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(10)
    return sock


def _invite(
    pbx: Pbx,  # noqa: F811 - the fixture's name
    transport: str,
    caller: str,
    *,
    local: tuple[str, int] = (PROVIDER, 5060),
    ruri: str = DID,
    to: str = DID,
) -> bytes:
    host, port = pbx.server.host, pbx.server.port
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {PROVIDER}\r\ns=-\r\nc=IN IP4 {PROVIDER}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    return (
        f"INVITE sip:{ruri}@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {local[0]}:{local[1]};"
        f"branch=z9hG4bK-{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@{PROVIDER}>;tag={uuid.uuid4().hex[:10]}\r\n"
        f"To: <sip:{to}@{host}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@{PROVIDER}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{caller}@{local[0]}:{local[1]};transport={transport}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def _options(pbx: Pbx, sock: socket.socket) -> bytes:  # noqa: F811 - the fixture's name
    host, port = sock.getsockname()
    server = f"{pbx.server.host}:{pbx.server.port}"
    return (
        f"OPTIONS sip:{server} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag={uuid.uuid4().hex[:10]}\r\n"
        f"To: <sip:{server}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _final(sock: socket.socket) -> str:
    """The first final response read from `sock` (100 Trying skipped)."""
    while True:
        text = sock.recv(65535).decode()
        if not text.startswith("SIP/2.0 1"):
            return text


def _raw_invite(
    pbx: Pbx,  # noqa: F811 - the fixture's name
    *,
    transport: str,
    caller: str,
    ruri: str = DID,
    to: str = DID,
) -> str:
    """Send one INVITE from PROVIDER over `transport` and return the first
    line of the final answer."""
    where = {"ruri": ruri, "to": to}
    if transport == "udp":
        with _udp(PROVIDER) as sock:
            sock.sendto(
                _invite(pbx, "udp", caller, local=sock.getsockname(), **where),
                (pbx.server.host, pbx.server.port),
            )
            return _final(sock).split("\r\n", 1)[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((PROVIDER, 0))
        sock.settimeout(10)
        sock.connect((pbx.server.host, pbx.server.port))
        sock.sendall(_invite(pbx, "tcp", caller, local=sock.getsockname(), **where))
        data = b""
        while True:
            data += sock.recv(65535)
            for head in data.decode(errors="replace").split("\r\n\r\n"):
                if head.startswith("SIP/2.0 ") and not head.startswith("SIP/2.0 1"):
                    return head.split("\r\n", 1)[0]


def test_a_registered_lines_long_login_in_the_request_uri_is_no_number_too_long(
    pbx: Pbx,  # noqa: F811
) -> None:
    # A registered line's provider calls the Contact it registered, the
    # line's own user (here its login: no username is set), with the DID in
    # To; a login longer than any number is still not a dialled number.
    login = "office-line-" + "x" * MAX_NUMBER_LENGTH
    external_line(pbx, free_port(host=PROVIDER), username="", login=login)
    answer = _raw_invite(pbx, transport="udp", caller=CUSTOMER, ruri=login, to=DID)
    assert answer.startswith("SIP/2.0 480"), answer  # routed: the default rule has no line yet
