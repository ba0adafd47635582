"""Attacks on the flood guard of a live `callbridge serve`, each from raw
sockets on loopback addresses: a forged scanner packet from a provider's
address, a spoofed-source flood of the block table, password guessing over
HTTP and SIP (in parallel, between valid logins, across many addresses), a
login flood while a call's audio is relayed, and TCP connections that hog
every slot or come from a blocked source."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from .conftest import Server, free_port
from .test_calls import (
    ADMIN_PASSWORD,
    ALICE,
    BOB,
    Pbx,
    _first,
    _wait_for,
    fresh_postgres,  # noqa: F401 - a fixture
    pbx,  # noqa: F401 - a fixture
    start_pbx,  # noqa: F401 - a fixture
)
from .test_trunk_calls import PROVIDER, customer_calls, external_line, route_incoming_to

pytestmark = pytest.mark.integration

STRANGER = "127.0.0.3"
_CHALLENGE_PARAM = re.compile(r'(\w+)="?([^",]*)"?')


# --- raw SIP ------------------------------------------------------------------


def sip_request(
    server: Server,
    method: str,
    sock: socket.socket,
    *,
    user: str = "probe",
    headers: tuple[str, ...] = (),
    call_id: str | None = None,
    cseq: int = 1,
) -> bytes:
    host, port = sock.getsockname()[:2]
    transport = "TCP" if sock.type == socket.SOCK_STREAM else "UDP"
    return (
        f"{method} sip:{server.host}:{server.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{server.host}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@{server.host}>\r\n"
        f"Call-ID: {call_id or secrets.token_hex(8)}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:{user}@{host}:{port}>\r\n"
        + "".join(f"{header}\r\n" for header in headers)
        + "Content-Length: 0\r\n\r\n"
    ).encode()


@contextmanager
def udp_from(host: str) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(2.0)
        yield sock


def answer_to(sock: socket.socket, server: Server, request: bytes) -> str | None:
    """The status line and headers of the final answer to `request`, or None."""
    sock.sendto(request, (server.host, server.port))
    try:
        while True:
            text = sock.recv(65535).decode()
            if not text.startswith("SIP/2.0 1"):
                return text
    except TimeoutError:
        return None


def status_of(answer: str | None) -> int | None:
    return None if answer is None else int(answer.split(" ", 2)[1])


def register_with_password(server: Server, host: str, user: str, password: str) -> str | None:
    """REGISTER `user` from `host`, answering the digest challenge (MD5) with
    `password`; the final answer."""
    call_id = secrets.token_hex(8)
    with udp_from(host) as sock:
        challenge = answer_to(sock, server, sip_request(server, "REGISTER", sock, user=user))
        assert challenge is not None and status_of(challenge) == 401, challenge
        line = next(h for h in challenge.split("\r\n") if h.startswith("WWW-Authenticate:"))
        params = dict(_CHALLENGE_PARAM.findall(line))
        uri = f"sip:{server.host}:{server.port}"
        ha1 = _md5(f"{user}:{params['realm']}:{password}")
        ha2 = _md5(f"REGISTER:{uri}")
        response = _md5(f"{ha1}:{params['nonce']}:00000001:abc:auth:{ha2}")
        authorization = (
            f'Authorization: Digest username="{user}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"'
        )
        request = sip_request(
            server, "REGISTER", sock, user=user, headers=(authorization,), call_id=call_id, cseq=2
        )
        return answer_to(sock, server, request)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def blocks(pbx: Pbx, kind: str = "source") -> list[dict[str, object]]:  # noqa: F811
    """The blocks of sources (or of accounts) the admin sees."""
    with pbx.api() as api:
        items: list[dict[str, object]] = api.get("/api/v1/security/blocks").json()["items"]
    return [item for item in items if item["kind"] == kind]


# --- provider addresses and the block table ---------------------------------


def _forged_scanner_packet(pbx: Pbx) -> None:  # noqa: F811
    with udp_from(PROVIDER) as sock:
        request = sip_request(pbx.server, "REGISTER", sock, headers=("User-Agent: sipvicious",))
        sock.sendto(request, (pbx.server.host, pbx.server.port))


def _wrong_passwords(pbx: Pbx) -> None:  # noqa: F811
    for _ in range(12):
        register_with_password(pbx.server, PROVIDER, ALICE.username, "guess")


@pytest.mark.parametrize(
    "attack", [_forged_scanner_packet, _wrong_passwords], ids=["scanner-agent", "failed-digest"]
)
def test_a_providers_address_is_never_blocked_and_its_calls_go_through(
    pbx: Pbx,  # noqa: F811
    attack: Callable[[Pbx], None],
) -> None:
    pbx.line(ALICE)
    pbx.line(BOB)
    provider_port = free_port(host=PROVIDER)
    external_line(pbx, provider_port)
    route_incoming_to(pbx, BOB.number)
    attack(pbx)
    assert blocks(pbx) == []
    employee = pbx.device(BOB, "call_uas_answer.xml")
    customer_calls(pbx, provider_port, employee)


@pytest.mark.parametrize("agent", ["friendly-scanner", "sipcli/v1.8", "SIPVicious 0.3"])
def test_one_scanner_packet_blocks_its_source_only_briefly(
    start_pbx: Callable[..., Pbx],  # noqa: F811
    agent: str,
) -> None:
    server_pbx = start_pbx(CALLBRIDGE_GUARD_SCANNER_BLOCK_FOR="120")
    with udp_from(STRANGER) as sock:
        request = sip_request(
            server_pbx.server, "REGISTER", sock, headers=(f"User-Agent: {agent}",)
        )
        assert answer_to(sock, server_pbx.server, request) is None
    [block] = blocks(server_pbx)
    assert block["source"] == STRANGER and 0 < int(str(block["expires_in"])) <= 120, block


def test_a_flood_of_forged_sources_keeps_the_block_table_bounded(
    start_pbx: Callable[..., Pbx],  # noqa: F811
) -> None:
    server_pbx = start_pbx(CALLBRIDGE_GUARD_MAX_BLOCKS="50")
    for n in range(1, 121):
        with udp_from(f"127.0.7.{n}") as sock:
            request = sip_request(
                server_pbx.server, "REGISTER", sock, headers=("User-Agent: sipsak",)
            )
            sock.sendto(request, (server_pbx.server.host, server_pbx.server.port))
    deadline = time.monotonic() + 5
    while "guard.block_evicted" not in server_pbx.server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = blocks(server_pbx)
    assert len(listed) == 50
    assert {b["source"] for b in listed} == {f"127.0.7.{n}" for n in range(71, 121)}
    assert "guard.block_evicted" in server_pbx.server.log()


# --- password guessing --------------------------------------------------------


def _login(client: httpx.Client, username: str, password: str) -> int:
    return client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    ).status_code


def _client(pbx: Pbx, host: str = "127.0.0.1") -> httpx.Client:  # noqa: F811
    return httpx.Client(
        base_url=f"http://127.0.0.1:{pbx.server.http_port}",
        transport=httpx.HTTPTransport(local_address=host),
        timeout=60,
    )


async def _parallel_logins(
    pbx: Pbx,  # noqa: F811
    attempts: list[tuple[str, str, str]],
) -> list[int]:
    """(source address, username, password) each sent at once; the statuses."""
    base_url = f"http://127.0.0.1:{pbx.server.http_port}"
    clients = {
        host: httpx.AsyncClient(
            base_url=base_url,
            transport=httpx.AsyncHTTPTransport(local_address=host),
            timeout=120,
            limits=httpx.Limits(max_connections=100),
        )
        for host in {host for host, _, _ in attempts}
    }
    try:
        answers = await asyncio.gather(
            *(
                clients[host].post(
                    "/api/v1/auth/login", json={"username": user, "password": password}
                )
                for host, user, password in attempts
            )
        )
    finally:
        for client in clients.values():
            await client.aclose()
    return [answer.status_code for answer in answers]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_pbx(request: pytest.FixtureRequest, start_pbx: Callable[..., Pbx]) -> Pbx:  # noqa: F811
    """A callbridge on the embedded SQLite, or on a PostgreSQL of its own."""
    if request.param == "sqlite":
        return start_pbx()
    return start_pbx(CALLBRIDGE_DATABASE_URL=request.getfixturevalue("fresh_postgres"))


def test_parallel_wrong_logins_meet_the_limit(store_pbx: Pbx) -> None:
    attempts = [("127.0.0.1", f"guess{n}", "wrong-password") for n in range(30)]
    statuses = asyncio.run(_parallel_logins(store_pbx, attempts))
    assert set(statuses) <= {401, 429}, statuses
    # Eleven may be verified (the eleventh failure is the one that blocks).
    assert statuses.count(401) <= 11 and statuses.count(429) >= 19, statuses


def test_a_valid_login_between_guesses_does_not_reset_their_count(store_pbx: Pbx) -> None:
    with _client(store_pbx) as client:
        statuses = []
        for n in range(14):
            statuses.append(_login(client, f"someone-else{n}", "guess"))
            if n % 3 == 0:
                assert _login(client, "admin", ADMIN_PASSWORD) in (200, 429)
    assert 429 in statuses, statuses
    assert statuses[:10] == [401] * 10, statuses


def test_one_account_guessed_from_many_addresses_is_refused_for_a_while(
    store_pbx: Pbx,
) -> None:
    statuses = []
    for n in range(1, 13):
        with _client(store_pbx, f"127.0.4.{n}") as client:
            statuses.append(_login(client, "admin", f"guess-{n}"))
    assert statuses[:11] == [401] * 11 and statuses[11] == 429, statuses
    with _client(store_pbx, "127.0.4.99") as client:
        refused = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    # The trade-off: its owner too waits out the short block.
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 300
    assert "account" in refused.json()["detail"]


def test_a_sip_account_guessed_from_many_addresses_is_refused_for_a_while_but_not_at_home(
    pbx: Pbx,  # noqa: F811
) -> None:
    pbx.line(ALICE, max_devices=2)
    pbx.line(BOB)
    # Alice's phone signed in from 127.0.5.100 before the guessing began.
    home = register_with_password(pbx.server, "127.0.5.100", ALICE.username, ALICE.password)
    assert status_of(home) == 200, home
    answers = [
        register_with_password(pbx.server, f"127.0.5.{n}", ALICE.username, "guess")
        for n in range(1, 13)
    ]
    statuses = [status_of(answer) for answer in answers]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [503, 503], statuses
    assert "Retry-After:" in str(answers[-1])
    right = register_with_password(pbx.server, "127.0.5.99", ALICE.username, ALICE.password)
    assert status_of(right) == 503, right  # the trade-off: a short wait from a new place
    # Where her phone signed in before, the guessers cannot hold her back.
    again = register_with_password(pbx.server, "127.0.5.100", ALICE.username, ALICE.password)
    assert status_of(again) == 200, again
    other = register_with_password(pbx.server, "127.0.5.12", BOB.username, BOB.password)
    assert status_of(other) == 200, other
    assert blocks(pbx) == []  # no address was blocked for it
    assert [b["source"] for b in blocks(pbx, "account")] == [ALICE.username]


# --- a login flood must not move SIP or audio --------------------------------


class OptionsProbe(threading.Thread):
    """Sends OPTIONS one after the other and keeps each round trip."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.round_trips: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with udp_from("127.0.0.1") as sock:
            while not self.stop.is_set():
                request = sip_request(self.server, "OPTIONS", sock)
                sent = time.perf_counter()
                assert status_of(answer_to(sock, self.server, request)) == 200
                self.round_trips.append(time.perf_counter() - sent)
                time.sleep(0.02)


class RelayProbe(threading.Thread):
    """Both legs' RTP, every 20 ms each way, each packet stamped with the
    time it left; keeps how long each took through the relay."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sockets: list[socket.socket] = []
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.sockets.append(sock)
        self.targets: list[tuple[str, int] | None] = [None, None]
        self.delays: list[float] = []
        self.stop = threading.Event()

    @property
    def ports(self) -> tuple[int, int]:
        return self.sockets[0].getsockname()[1], self.sockets[1].getsockname()[1]

    def run(self) -> None:
        sequence, next_send = 0, time.perf_counter()
        while not self.stop.is_set():
            readable, _, _ = select.select(self.sockets, [], [], 0.005)
            for sock in readable:
                data = sock.recv(2048)
                if len(data) >= 20:
                    (sent,) = struct.unpack("!d", data[12:20])
                    self.delays.append(time.perf_counter() - sent)
            if time.perf_counter() >= next_send:
                next_send += 0.02
                sequence = (sequence + 1) & 0xFFFF
                for sock, target in zip(self.sockets, self.targets, strict=True):
                    if target is not None:
                        header = struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, 7)
                        stamp = struct.pack("!d", time.perf_counter())
                        sock.sendto(header + stamp + bytes(152), target)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=2)
        for sock in self.sockets:
            sock.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def test_a_login_flood_moves_neither_sip_nor_the_relayed_audio(pbx: Pbx) -> None:  # noqa: F811
    pbx.line(ALICE)
    pbx.line(BOB)
    relay = RelayProbe()
    alice_port, bob_port = relay.ports
    callee = pbx.device(BOB, "call_uas_answer.xml", rtp_port=bob_port)
    caller = pbx.call(ALICE, BOB.number, "call_uac.xml", rtp_port=alice_port, talk_ms=60_000)
    offer = _wait_for(callee, _first("received", method="INVITE"), "callbridge's INVITE")
    answer = _wait_for(caller, _first("received", method="INVITE", status=200), "the 200")
    relay.targets = [answer.sdp_media(), offer.sdp_media()]
    options = OptionsProbe(pbx.server)
    relay.start()
    options.start()
    try:
        time.sleep(1.0)
        quiet_options, quiet_relay = len(options.round_trips), len(relay.delays)
        # Forty wrong logins at once, from forty addresses against eight
        # accounts: under every limit, so each costs an argon2 verification.
        attempts = [(f"127.0.6.{n}", f"user{n % 8}", "wrong-password") for n in range(1, 41)]
        started = time.perf_counter()
        statuses = asyncio.run(_parallel_logins(pbx, attempts))
        flood_seconds = time.perf_counter() - started
    finally:
        options.stop.set()
        options.join(timeout=5)
        relay.close()
    assert statuses == [401] * 40, statuses
    during_options = options.round_trips[quiet_options:]
    during_relay = relay.delays[quiet_relay:]
    report = (
        f"flood of 40 logins took {flood_seconds:.2f} s; OPTIONS round trip "
        f"p50 {_percentile(during_options, 0.5) * 1000:.1f} ms, "
        f"p95 {_percentile(during_options, 0.95) * 1000:.1f} ms, "
        f"max {max(during_options) * 1000:.1f} ms over {len(during_options)}; "
        f"RTP relay p50 {_percentile(during_relay, 0.5) * 1000:.1f} ms, "
        f"p95 {_percentile(during_relay, 0.95) * 1000:.1f} ms, "
        f"max {max(during_relay) * 1000:.1f} ms over {len(during_relay)}"
    )
    print(report)
    assert len(during_options) >= 10 and len(during_relay) >= 100, report
    # argon2 on the loop held both for a verification at a time (0.5 s here).
    assert _percentile(during_options, 0.95) < 0.1, report
    assert _percentile(during_relay, 0.95) < 0.1, report
    assert max(during_options) < 0.3 and max(during_relay) < 0.3, report


# --- TCP ------------------------------------------------------------------------


def _tcp_from(host: str, server: Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=2, source_address=(host, 0))
    return sock


def _closed_by_server(sock: socket.socket, wait: float = 2.0) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _options_over_tcp(sock: socket.socket, server: Server) -> bool:
    try:
        sock.sendall(sip_request(server, "OPTIONS", sock))
        sock.settimeout(2.0)
        return sock.recv(65535).startswith(b"SIP/2.0 200 ")
    except (OSError, TimeoutError):
        return False


def test_one_host_cannot_take_every_tcp_slot(start_pbx: Callable[..., Pbx]) -> None:  # noqa: F811
    server_pbx = start_pbx(
        CALLBRIDGE_TCP_MAX_CONNECTIONS="8", CALLBRIDGE_TCP_MAX_CONNECTIONS_PER_ADDRESS="4"
    )
    hog = [_tcp_from(STRANGER, server_pbx.server) for _ in range(8)]
    other = None
    try:
        closed = [_closed_by_server(sock, wait=0.5) for sock in hog]
        assert closed.count(False) == 4, closed
        other = _tcp_from("127.0.0.4", server_pbx.server)
        assert _options_over_tcp(other, server_pbx.server)
    finally:
        for sock in [*hog, *([other] if other else [])]:
            sock.close()


def test_a_blocked_source_is_refused_at_accept(pbx: Pbx) -> None:  # noqa: F811
    with udp_from(STRANGER) as udp:
        udp.sendto(
            sip_request(pbx.server, "REGISTER", udp, headers=("User-Agent: friendly-scanner",)),
            (pbx.server.host, pbx.server.port),
        )
    deadline = time.monotonic() + 2
    while not blocks(pbx) and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = [_tcp_from(STRANGER, pbx.server) for _ in range(3)]
    try:
        assert all(_closed_by_server(sock) for sock in refused)
    finally:
        for sock in refused:
            sock.close()
    assert pbx.server.log().count("source refused") >= 3
    with _tcp_from("127.0.0.1", pbx.server) as welcome:
        assert _options_over_tcp(welcome, pbx.server)
