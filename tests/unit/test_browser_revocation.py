"""pbx/browser_revocation.py on a real store (SQLite and PostgreSQL): a
browser whose API token is revoked loses its binding and its credential,
another sign-in's browser keeps both."""

from __future__ import annotations

import time

import pytest

from callbridge.pbx.browser_credentials import TAG_LENGTH, BrowserCredentials, Refused
from callbridge.pbx.browser_revocation import FULL_RECHECK, RevocationWatch
from callbridge.store import Database, User
from callbridge.store.accounts import issue_token, revoke_token, token_hash

from .test_browser_credentials import browser_ua, lines, register


async def signed_in_twice(database: Database) -> tuple[str, str]:
    """Two tokens of one user (two browsers of the same employee)."""
    async with database.session() as session:
        user = User(username="bob", password_hash="x", role="operator", active=True)
        session.add(user)
        await session.commit()
        first = await issue_token(session, user, 600)
        second = await issue_token(session, user, 600)
    return first.token, second.token


async def test_a_revoked_tokens_browser_is_let_go_and_refused(database: Database) -> None:
    first, second = await signed_in_twice(database)
    browser = BrowserCredentials(
        b"sixteen bytes at least, here", lines=lines, ttl=3600, clock=time.time
    )
    issued = [
        browser.issue(7, token_tag=token_hash(token)[:TAG_LENGTH]) for token in (first, second)
    ]
    ua = browser_ua(browser, lines())
    for credential, flow in zip(issued, ("flow-1", "flow-2"), strict=True):
        assert credential is not None
        assert register(ua, credential.username, credential.password, "ws", peer=flow) == 200
    registrar = ua.registrar
    assert registrar is not None and len(registrar.location.bindings("102", 1.0)) == 2
    watch = RevocationWatch(database, browser, lambda: registrar, clock=lambda: 1.0)

    assert await watch.check() == 0  # both tokens live
    async with database.session() as session:
        await revoke_token(session, first)
    assert await watch.check() == 1
    [kept] = registrar.location.bindings("102", 1.0)
    assert kept.source == "flow-2"
    assert issued[0] is not None and issued[1] is not None
    with pytest.raises(Refused, match="Credential Revoked"):
        browser.line_for(issued[0].username, lines())
    assert browser.line_for(issued[1].username, lines()).number == "102"


def test_the_store_is_asked_after_a_revocation_here_and_every_half_minute() -> None:
    watch = RevocationWatch(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda: None,
        clock=lambda: 100.0,
    )
    assert not watch.due(101.0)
    assert watch.due(100.0 + FULL_RECHECK)
