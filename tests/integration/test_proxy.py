"""callbridge behind a proxy: Kamailio 5.6 in front (docs/PROXY.md's
configuration), real phones behind it on loopback addresses of their own.

- A call between two baresip phones that registered through the proxy: every
  request of both dialogs passes the proxy (its log says so), because our
  dialog-forming responses carry the Record-Route set (RFC 3261 §12.1.1) and
  our requests to a phone follow its Path (RFC 3327) and the route set.
- A phone whose Contact cannot be reached directly (the address it wrote is
  not where it is, as behind NAT) is still called, and hung up on, through
  the proxy.
- One phone behind the proxy guessing passwords is blocked by the address
  the proxy reports for it; the proxy and the other phones behind it, and a
  phone connected directly, go on being served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .baresip import Baresip
from .conftest import Server, run_sipp, start_server, start_sipp, stop_server
from .kamailio import Kamailio
from .linphone import Linphone
from .tones import CALLEE_TONE, CALLER_TONE, assert_hears, write_tone

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-proxy-tests"
ALICE = ("101", "alice", "alice-sip-password-for-proxy")
BOB = ("102", "bob", "bob-sip-password-for-proxy")
CAROL = ("103", "carol", "carol-sip-password-for-proxy")
DAVE = ("104", "dave", "dave-sip-password-for-proxy")
PROXY_HOST = "127.0.0.2"
ALICE_HOST, BOB_HOST, CAROL_HOST = "127.0.0.3", "127.0.0.4", "127.0.0.5"
# Where the SIPp phone says it is: nothing listens there.
UNREACHABLE = "127.0.0.99:9"
CALLBRIDGE_RTP_PORTS = (23000, 23999)
ALICE_RTP_PORTS = (24000, 24199)
BOB_RTP_PORTS = (24200, 24399)
LINPHONE_RTP_PORTS = (30400, 30599)
TALK = 3.0


def free_port_on(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((host, 0))
        return int(udp.getsockname()[1])


@dataclass
class Front:
    """callbridge with Kamailio in front of it."""

    server: Server
    proxy: Kamailio
    directory: Path

    def account(self, line: tuple[str, str, str], **params: str) -> str:
        """A baresip account registering through the proxy (its outbound proxy)."""
        _, username, password = line
        extra = "".join(f";{k}={v}" for k, v in params.items())
        return (
            f"<sip:{username}@{self.server.host}:{self.server.port};transport=udp>"
            f';auth_pass={password};regint=600;outbound="sip:{PROXY_HOST}:{self.proxy.port}"'
            f"{extra}"
        )

    def diagnostics(self, *phones: Baresip) -> str:
        parts = [
            f"--- callbridge ---\n{self.server.log()}",
            f"--- kamailio ---\n{self.proxy.log()}",
        ]
        parts += [f"--- {phone.directory.name} ---\n{phone.log()}" for phone in phones]
        return "\n".join(parts)

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """An API client signed in as the admin."""
        with httpx.Client(base_url=f"http://127.0.0.1:{self.server.http_port}", timeout=10) as api:
            login = api.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            login.raise_for_status()
            api.headers["Authorization"] = f"Bearer {login.json()['token']}"
            yield api


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    server = start_server(
        tmp_path,
        CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CALLBRIDGE_RTP_PORTS="{}-{}".format(*CALLBRIDGE_RTP_PORTS),
        CALLBRIDGE_LOG_SIP_MESSAGES="true",
        CALLBRIDGE_SIP_DIGEST_ALGORITHMS="MD5",
        CALLBRIDGE_SIP_TRUSTED_PROXIES=PROXY_HOST,
        # The phones' SIP comes from the proxy, and baresip on 127.0.0.3 sends
        # its RTP from 127.0.0.1, not the address its SDP names: as a phone
        # behind NAT whose SIP reaches us through a proxy, which is what the
        # setting is for (docs/PROXY.md).
        CALLBRIDGE_MEDIA_LATCH_SIGNALLING_HOST="false",
    )
    proxy = Kamailio(
        tmp_path / "kamailio",
        host=PROXY_HOST,
        port=free_port_on(PROXY_HOST),
        callbridge_host=server.host,
        callbridge_port=server.port,
    )
    front = Front(server, proxy, tmp_path)
    try:
        with front.api() as api:
            for number, username, password in (ALICE, BOB, CAROL, DAVE):
                api.post(
                    "/api/v1/internal-lines",
                    json={"number": number, "username": username, "password": password},
                ).raise_for_status()
            api.post("/api/v1/config/apply").raise_for_status()
        proxy.start()
        yield front
    finally:
        proxy.stop()
        stop_server(server.process)


def baresip_phone(
    front: Front,
    name: str,
    line: tuple[str, str, str],
    host: str,
    tone: float,
    ports: tuple[int, int],
) -> Baresip:
    directory = front.directory / name
    directory.mkdir()
    return Baresip(
        directory,
        account=front.account(line),
        source=write_tone(front.directory / f"{name}.wav", tone),
        rtp_ports=ports,
        auto_answer=name == "bob",
        host=host,
    )


def call_ids(text: str, method: str) -> list[str]:
    """The Call-IDs of the `method` requests a phone's SIP trace shows it sent."""
    found = []
    for block in text.split("\n\n"):
        if re.search(rf"^{method} sip:", block, re.M):
            match = re.search(r"^Call-ID: *(\S+)", block, re.M | re.I)
            if match:
                found.append(match.group(1))
    return found


def test_every_request_of_a_call_between_two_phones_passes_the_proxy(front: Front) -> None:
    alice = baresip_phone(front, "alice", ALICE, ALICE_HOST, CALLER_TONE, ALICE_RTP_PORTS)
    bob = baresip_phone(front, "bob", BOB, BOB_HOST, CALLEE_TONE, BOB_RTP_PORTS)
    with ExitStack() as running:
        running.enter_context(bob)
        running.enter_context(alice)
        try:
            bob.wait_registered()
            alice.wait_registered()
            alice.dial(f"sip:{BOB[0]}@{front.server.host}:{front.server.port}")
            for phone in (alice, bob):
                phone.wait_event("CALL_ESTABLISHED", timeout=10)
            time.sleep(TALK)
            alice.hangup()
            for phone in (alice, bob):
                phone.wait_event("CALL_CLOSED", timeout=10)
            time.sleep(0.5)  # the proxy logs the last ACK or 200 a moment later
        except Exception as error:
            raise AssertionError(f"{error}\n{front.diagnostics(alice, bob)}") from error
    diagnostics = front.diagnostics(alice, bob)
    passed = front.proxy.passed()
    # Alice's dialog with callbridge: her INVITE, ACK and BYE all came through the proxy.
    from_alice = [p for p in passed if p.host == ALICE_HOST]
    caller_call_id = next((p.call_id for p in from_alice if p.method == "INVITE"), None)
    assert caller_call_id is not None, diagnostics
    methods = [p.method for p in from_alice if p.call_id == caller_call_id]
    assert {"INVITE", "ACK", "BYE"} <= set(methods), (methods, diagnostics)
    # Bob's dialog: callbridge's INVITE (by bob's Path), ACK and BYE (by the
    # route set bob's 200 brought) came through it too.
    from_callbridge = [p for p in passed if p.host == front.server.host]
    callee_call_id = next((p.call_id for p in from_callbridge if p.method == "INVITE"), None)
    assert callee_call_id is not None, diagnostics
    methods = [p.method for p in from_callbridge if p.call_id == callee_call_id]
    assert {"INVITE", "ACK", "BYE"} <= set(methods), (methods, diagnostics)
    # Nothing of either call went around the proxy: the phones' SIP reached
    # callbridge only from the proxy's address.
    log = front.server.log()
    assert f"src={ALICE_HOST}" not in log and f"src={BOB_HOST}" not in log
    assert_hears(bob, CALLER_TONE, diagnostics)
    assert_hears(alice, CALLEE_TONE, diagnostics)


def test_a_phone_reachable_only_through_the_proxy_is_called_and_hung_up_on(
    front: Front,
) -> None:
    """Carol's phone (SIPp) writes an address nothing listens on in its
    Contact: callbridge reaches it only by the Path it registered through
    and the route set its answer brought."""
    through_proxy = dataclasses.replace(front.server, host=PROXY_HOST, port=front.proxy.port)
    _, username, password = CAROL
    port = free_port_on(CAROL_HOST)
    registered = start_sipp(
        "proxy_register.xml",
        through_proxy,
        front.directory,
        port=port,
        local_ip=CAROL_HOST,
        extra=[
            *("-s", username, "-au", username, "-ap", password),
            *("-key", "registrar", f"{front.server.host}:{front.server.port}"),
            # The digest uri is the Request-URI, callbridge's, not where SIPp sends.
            *("-auth_uri", f"{front.server.host}:{front.server.port}"),
            *("-key", "contact", UNREACHABLE),
        ],
    ).wait()
    assert registered.successful == 1, front.diagnostics()
    carol = start_sipp(
        "proxy_phone_answer.xml",
        through_proxy,
        front.directory,
        port=port,
        local_ip=CAROL_HOST,
        timeout=40,
        recv_timeout=25,
        extra=["-s", username, "-key", "contact", UNREACHABLE],
    )
    alice = baresip_phone(front, "alice", ALICE, ALICE_HOST, CALLER_TONE, ALICE_RTP_PORTS)
    try:
        with alice:
            alice.wait_registered()
            device = _wait_for_binding(front, CAROL[0])
            # Kept with the binding: the proxy's entry, with where Carol really is.
            assert [f"received=sip:{CAROL_HOST}" in entry for entry in device["path"]] == [True]
            alice.dial(f"sip:{CAROL[0]}@{front.server.host}:{front.server.port}")
            alice.wait_event("CALL_ESTABLISHED", timeout=10)
            time.sleep(1)
            alice.hangup()
            alice.wait_event("CALL_CLOSED", timeout=5)
        result = carol.wait(timeout=10)
    except Exception as error:
        carol.stop()
        raise AssertionError(f"{error}\n{front.diagnostics(alice)}") from error
    diagnostics = f"{carol.output()}\n{front.diagnostics(alice)}"
    assert result.successful == 1, diagnostics
    to_carol = [p for p in front.proxy.passed() if p.host == front.server.host]
    # In order, each once or more (UDP retransmits when the machine is slow).
    assert list(dict.fromkeys(p.method for p in to_carol)) == ["INVITE", "ACK", "BYE"], diagnostics


def _wait_for_binding(front: Front, number: str, timeout: float = 10) -> dict[str, object]:
    """The line's first registered device, once it has one (the API's view)."""
    deadline = time.monotonic() + timeout
    with front.api() as api:
        lines = api.get("/api/v1/internal-lines").json()["items"]
        line_id = next(line["id"] for line in lines if line["number"] == number)
        while time.monotonic() < deadline:
            items = api.get(f"/api/v1/internal-lines/{line_id}/registrations").json()["items"]
            if items:
                return dict(items[0])
            time.sleep(0.1)
    raise AssertionError(f"line {number} never registered\n{front.server.log()}")


def test_a_phone_guessing_passwords_behind_the_proxy_blocks_only_itself(front: Front) -> None:
    """Eleven wrong passwords from Carol's phone behind the proxy: the guard
    blocks Carol's address, as the proxy reports it, and never the proxy;
    Alice's phone behind the same proxy and Dave's, connected directly
    from the address the proxy's own would share on one host, are served."""
    through_proxy = dataclasses.replace(front.server, host=PROXY_HOST, port=front.proxy.port)
    guessing = start_sipp(
        "proxy_register.xml",
        through_proxy,
        front.directory,
        local_ip=CAROL_HOST,
        calls=11,
        recv_timeout=3,
        extra=[
            *("-s", CAROL[1], "-au", CAROL[1], "-ap", "not-carols-password"),
            *("-key", "registrar", f"{front.server.host}:{front.server.port}"),
            *("-auth_uri", f"{front.server.host}:{front.server.port}"),
            *("-key", "contact", f"{CAROL_HOST}:5060"),
        ],
    ).wait(timeout=60)
    assert guessing.successful == 0, front.diagnostics()
    with front.api() as api:
        blocks = api.get("/api/v1/security/blocks").json()["items"]
    sources = {item["source"] for item in blocks if item["kind"] == "source"}
    assert CAROL_HOST in sources and PROXY_HOST not in sources, (blocks, front.diagnostics())
    # The log says which account failed, from where the proxy says it came.
    log = front.server.log()
    failed = f'auth.failed account=carol src={CAROL_HOST} method=REGISTER reason="wrong password"'
    assert failed in log, front.diagnostics()
    assert f"guard.blocked kind=source source={CAROL_HOST} " in log, front.diagnostics()

    alice = baresip_phone(front, "alice", ALICE, ALICE_HOST, CALLER_TONE, ALICE_RTP_PORTS)
    with alice:
        try:
            alice.wait_registered()
        except Exception as error:
            raise AssertionError(f"{error}\n{front.diagnostics(alice)}") from error
    _, username, password = DAVE
    direct = run_sipp(
        "register.xml",
        front.server,
        front.directory,
        extra=["-s", username, "-au", username, "-ap", password],
    )
    assert direct.successful == 1, f"{direct.output}\n{front.diagnostics()}"


def test_linphone_behind_the_proxy_is_called_through_it(front: Front) -> None:
    """linphone registers through the proxy (as its outbound proxy) and
    answers a call from baresip behind the same proxy; callbridge's INVITE,
    ACK and BYE to linphone pass the proxy."""
    _, username, password = DAVE
    dave = Linphone(
        front.directory / "dave",
        username=username,
        password=password,
        registrar=f"{front.server.host}:{front.server.port}",
        proxy=f"{PROXY_HOST}:{front.proxy.port}",
        rtp_ports=LINPHONE_RTP_PORTS,
    )
    alice = baresip_phone(front, "alice", ALICE, ALICE_HOST, CALLER_TONE, ALICE_RTP_PORTS)
    with dave, alice:
        try:
            device = _wait_for_binding(front, DAVE[0])
            assert len(device["path"]) == 1, device
            alice.wait_registered()
            alice.dial(f"sip:{DAVE[0]}@{front.server.host}:{front.server.port}")
            alice.wait_event("CALL_ESTABLISHED", timeout=10)
            time.sleep(1)
            alice.hangup()
            alice.wait_event("CALL_CLOSED", timeout=5)
            time.sleep(0.5)
        except Exception as error:
            raise AssertionError(f"{error}\n{front.diagnostics(alice)}\n{dave.log()}") from error
    to_dave = [
        p.method for p in front.proxy.passed() if p.host == front.server.host and "dave" in p.uri
    ]
    assert list(dict.fromkeys(to_dave)) == ["INVITE", "ACK", "BYE"], front.diagnostics(alice)
