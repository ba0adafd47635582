"""Browser SIP credentials (pbx/browser_credentials.py): what is issued, and
what the registrar's digest accepts of them, over which transport, until when."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from callbridge.pbx.auth import Authenticator
from callbridge.pbx.browser_credentials import (
    SECRET_FILE,
    Accounts,
    BrowserCredentials,
    Refused,
    load_secret,
)
from callbridge.pbx.guard import FloodGuard, GuardPolicy
from callbridge.pbx.lines import Lines
from callbridge.pbx.registrar import MemoryLocation, Registrar
from callbridge.pbx.ua import UserAgent
from callbridge.sip import Response
from callbridge.sip.digest import DigestServer, compute_ha1

from .test_ua import REALM, _register, authorized, line

SECRET = b"sixteen bytes at least, here"
NOW = 1_800_000_000.0
TAG = "0123456789abcdef" * 2  # a token's tag


def lines(*, disabled: bool = False, bob_employee: int = 7) -> Lines:
    alice = replace(line("101", "alice", "alice-secret"), employee_id=6)
    bob = replace(
        line("102", "bob", "bob-secret", max_devices=2), employee_id=bob_employee, disabled=disabled
    )
    return Lines.of([alice, bob])


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def credentials(running: Lines | None = None, clock: Clock | None = None) -> BrowserCredentials:
    snapshot = running or lines()
    return BrowserCredentials(SECRET, lines=lambda: snapshot, ttl=3600, clock=clock or Clock())


def test_a_credential_names_employee_line_and_expiry_and_is_no_line_password() -> None:
    issued = credentials().issue(7, token_tag=TAG)
    assert issued is not None
    assert issued.username == f"web/7/102/{int(NOW) + 3600}/{TAG}"
    assert issued.line_number == "102" and issued.expires_at == NOW + 3600
    assert issued.password != "bob-secret" and len(issued.password) == 43


def test_a_credential_never_outlives_the_token_it_was_asked_with() -> None:
    issued = credentials().issue(7, token_tag=TAG, not_after=NOW + 60)
    assert issued is not None and issued.expires_at == NOW + 60


def test_no_credential_without_an_enabled_line_of_ones_own() -> None:
    assert credentials().issue(99, token_tag=TAG) is None
    assert credentials(lines(disabled=True)).issue(7, token_tag=TAG) is None


def test_another_secret_makes_other_passwords() -> None:
    other = BrowserCredentials(b"another secret of sixteen+", lines=lines, ttl=3600, clock=Clock())
    mine, theirs = credentials().issue(7, token_tag=TAG), other.issue(7, token_tag=TAG)
    assert mine is not None and theirs is not None
    assert mine.username == theirs.username and mine.password != theirs.password


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        BrowserCredentials(b"short", lines=lines, ttl=60, clock=Clock())


@pytest.mark.parametrize("transport", ["ws", "WSS"])
def test_over_a_websocket_the_credential_has_the_ha1_of_its_password(transport: str) -> None:
    browser = credentials()
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    accounts = Accounts(lines(), browser, transport=transport, realm=REALM)
    assert accounts.ha1_of(issued.username, "MD5") == compute_ha1(
        issued.username, REALM, issued.password, "MD5"
    )
    assert accounts.line_of(issued.username).number == "102"
    # The line's own account still signs over a WebSocket.
    assert accounts.ha1_of("bob", "MD5") == lines().ha1_of("bob", "MD5")


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_over_any_other_transport_the_credential_is_nobodys(transport: str) -> None:
    browser = credentials()
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    accounts = Accounts(lines(), browser, transport=transport, realm=REALM)
    assert accounts.ha1_of(issued.username, "MD5") is None


def test_a_tampered_username_has_another_password() -> None:
    browser = credentials()
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    tampered = issued.username.replace("/102/", "/101/")
    accounts = Accounts(lines(), browser, transport="ws", realm=REALM)
    assert accounts.ha1_of(tampered, "MD5") != compute_ha1(tampered, REALM, issued.password, "MD5")
    for malformed in (
        "web/7/102/1",
        f"web/07/102/1/{TAG}",
        f"web/7/1/1/{TAG}",
        f"web/7/102/1/{TAG}/2",
        f"web/x/102/1/{TAG}",
        f"web/7/102/1/{TAG.upper()}",
        f"web/7/102/1/{TAG[:-1]}",
    ):
        assert accounts.ha1_of(malformed, "MD5") is None


def test_an_expired_credential_or_a_line_given_to_another_employee_signs_nothing() -> None:
    clock = Clock()
    browser = credentials(clock=clock)
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    clock.now = issued.expires_at
    with pytest.raises(Refused, match="Credential Expired"):
        browser.line_for(issued.username, lines())
    clock.now = NOW
    with pytest.raises(Refused, match="Not Your Line"):
        browser.line_for(issued.username, lines(bob_employee=8))


def browser_ua(browser: BrowserCredentials, running: Lines) -> UserAgent:
    return UserAgent(
        lines=running,
        authenticator=Authenticator(
            DigestServer(REALM), FloodGuard(GuardPolicy()), server_name="callbridge"
        ),
        registrar=Registrar(MemoryLocation()),
        browser_credentials=browser,
    )


def register(
    ua: UserAgent,
    username: str,
    password: str,
    transport: str,
    to: str = "102",
    peer: str = "ws-flow",
) -> int:
    challenge = ua.answer(_register(to, "", 1), source="127.0.0.2", transport=transport)
    assert isinstance(challenge, Response) and challenge.status == 401
    auth = authorized(challenge, username, password)
    request = _register(to, auth, 2)
    # Each device its own Contact and Call-ID.
    request.headers.set("Contact", f"<sip:{peer}@127.0.0.2:5062>;expires=600")
    request.headers.set("Call-ID", f"reg-{peer}@127.0.0.2")
    answer = ua.answer(request, source="127.0.0.2", peer=peer, now=1.0, transport=transport)
    assert isinstance(answer, Response)
    return answer.status


def test_the_registrar_binds_a_browser_over_ws_and_refuses_it_elsewhere() -> None:
    browser = credentials()
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    assert register(browser_ua(browser, lines()), issued.username, issued.password, "udp") == 401
    assert register(browser_ua(browser, lines()), issued.username, issued.password, "ws") == 200
    other_line = browser_ua(browser, lines())
    assert register(other_line, issued.username, issued.password, "ws", to="101") == 403
    disabled = browser_ua(browser, lines(disabled=True))
    assert register(disabled, issued.username, issued.password, "ws") == 403


def test_the_secret_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    first = load_secret(None, tmp_path)
    assert len(first) == 32
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert load_secret(None, tmp_path) == first
    assert load_secret("configured-secret-value", tmp_path) == b"configured-secret-value"


def test_a_browsers_binding_ends_with_its_credential() -> None:
    clock = Clock()
    browser = credentials(clock=clock)
    issued = browser.issue(7, token_tag=TAG, not_after=NOW + 120)
    assert issued is not None
    ua = browser_ua(browser, lines())
    assert register(ua, issued.username, issued.password, "ws") == 200
    assert ua.registrar is not None
    [binding] = ua.registrar.location.bindings("102", now=1.0)
    # Asked for 600 s (the REGISTER's expires), bound for the 120 s left.
    assert binding.expires_at == 1.0 + 120


def test_a_credential_of_a_revoked_token_signs_nothing_until_it_would_have_expired() -> None:
    clock = Clock()
    browser = credentials(clock=clock)
    issued = browser.issue(7, token_tag=TAG)
    other = browser.issue(7, token_tag="f" * 32)
    assert issued is not None and other is not None
    browser.revoke({TAG: issued.expires_at})
    with pytest.raises(Refused, match="Credential Revoked"):
        browser.line_for(issued.username, lines())
    assert browser.line_for(other.username, lines()).number == "102"  # another sign-in
    clock.now = issued.expires_at + 1
    browser.revoke({})  # forgets what has expired anyway
    assert not browser.is_revoked(TAG)


def test_a_browsers_binding_names_the_credential_it_was_signed_with() -> None:
    browser = credentials()
    issued = browser.issue(7, token_tag=TAG)
    assert issued is not None
    ua = browser_ua(browser, lines())
    assert register(ua, issued.username, issued.password, "ws") == 200
    assert register(ua, "alice", "alice-secret", "ws", to="101") == 200
    assert ua.registrar is not None
    [browser_binding] = ua.registrar.location.bindings("102", now=1.0)
    [desk_binding] = ua.registrar.location.bindings("101", now=1.0)
    assert browser_binding.signed_by == issued.username
    assert desk_binding.signed_by is None
