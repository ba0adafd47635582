"""Digest authentication of internal lines, with the flood guard."""

from __future__ import annotations

import ipaddress

import pytest

from callbridge.pbx.auth import DROP, Authenticated, Authenticator
from callbridge.pbx.guard import FloodGuard, GuardPolicy
from callbridge.sip import Request, Response, parse
from callbridge.sip.digest import (
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    select_challenge,
)

REALM = "callbridge"
SOURCE = "127.0.0.2"
HA1 = {("101", alg): compute_ha1("101", REALM, "correct horse", alg) for alg in ("MD5", "SHA-256")}


def ha1_of(username: str, algorithm: str) -> str | None:
    return HA1.get((username, algorithm))


def request(method: str = "REGISTER", *, extra: str = "", agent: str = "desk-phone/1") -> Request:
    message = parse(
        (
            f"{method} sip:127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-auth\r\n"
            "From: <sip:101@127.0.0.1>;tag=a\r\n"
            "To: <sip:101@127.0.0.1>\r\n"
            "Call-ID: auth@127.0.0.2\r\n"
            f"CSeq: 2 {method}\r\n"
            f"User-Agent: {agent}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def authenticator(**policy: float) -> Authenticator:
    guard = FloodGuard(GuardPolicy(**policy))  # type: ignore[arg-type]
    return Authenticator(DigestServer(REALM, nonce_ttl=300), guard, server_name="callbridge")


def answered(
    auth: Authenticator, challenge: Response, *, password: str, user: str = "101", nc: int = 1
) -> Request:
    header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
    name = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
    chosen = select_challenge([parse_challenge(v) for v in challenge.headers.get_all(header)])
    method = challenge.cseq.method
    creds = answer_challenge(
        chosen, method=method, uri="sip:127.0.0.1", username=user, password=password, nc=nc
    )
    return request(method, extra=f"{name}: {creds.to_header_value()}\r\n")


def check(auth: Authenticator, req: Request, now: float = 0.0) -> object:
    return auth.check(req, source=SOURCE, ha1_of=ha1_of, now=now, to_tag="t")


@pytest.mark.parametrize(("method", "status"), [("REGISTER", 401), ("INVITE", 407)])
def test_first_request_is_challenged_sha256_first(method: str, status: int) -> None:
    auth = authenticator()
    challenge = check(auth, request(method))
    assert isinstance(challenge, Response) and challenge.status == status
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    algorithms = [parse_challenge(v).algorithm for v in challenge.headers.get_all(header)]
    assert algorithms == ["SHA-256", "MD5"]


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_right_password_authenticates_the_line(method: str) -> None:
    auth = authenticator()
    challenge = check(auth, request(method))
    assert isinstance(challenge, Response)
    outcome = check(auth, answered(auth, challenge, password="correct horse"))
    assert outcome == Authenticated("101")


def test_wrong_password_and_unknown_user_get_the_same_answer() -> None:
    auth = authenticator()
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    wrong = check(auth, answered(auth, challenge, password="wrong"))
    unknown = check(auth, answered(auth, challenge, password="correct horse", user="999"))
    assert isinstance(wrong, Response) and isinstance(unknown, Response)
    assert (wrong.status, wrong.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")


def test_expired_nonce_gets_stale_challenge_not_a_failure() -> None:
    auth = authenticator(max_failures=0)
    challenge = check(auth, request(), now=0.0)
    assert isinstance(challenge, Response)
    again = check(auth, answered(auth, challenge, password="correct horse"), now=1000.0)
    assert isinstance(again, Response) and again.status == 401
    assert parse_challenge(again.headers.get_all("WWW-Authenticate")[0]).stale
    assert not auth.guard.is_blocked(SOURCE, 1000.0)


def test_repeated_failures_block_the_source_and_then_nothing_is_answered() -> None:
    auth = authenticator(max_failures=3, window=60, block_for=3600)
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    bad = answered(auth, challenge, password="guess")
    outcomes = [check(auth, bad, now=float(i)) for i in range(5)]
    assert [isinstance(o, Response) for o in outcomes] == [True, True, True, False, False]
    assert outcomes[3] is DROP
    # Even the right password is not heard while blocked.
    good = answered(auth, challenge, password="correct horse", nc=2)
    assert check(auth, good, now=10.0) is DROP
    # Once the block ends the source is answered again (its old nonce is stale).
    after = check(auth, good, now=3700.0)
    assert isinstance(after, Response) and after.status == 401


def test_scanners_are_dropped_and_blocked_at_once() -> None:
    auth = authenticator()
    assert check(auth, request(agent="friendly-scanner")) is DROP
    assert check(auth, request()) is DROP
    assert auth.guard.blocks(now=1.0)[0].reason == "scanner User-Agent"


def test_credentials_for_another_uri_do_not_authenticate() -> None:
    auth = authenticator()
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    good = answered(auth, challenge, password="correct horse")
    moved = parse(good.to_bytes().replace(b"REGISTER sip:127.0.0.1 ", b"REGISTER sip:127.0.0.9 "))
    assert isinstance(moved, Request)
    outcome = check(auth, moved)
    assert isinstance(outcome, Response) and outcome.status == 401


def test_an_account_guessed_at_too_often_is_answered_503_from_every_source() -> None:
    auth = authenticator(max_failures=100, account_max_failures=3, account_block_for=100)
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    bad = answered(auth, challenge, password="guess")
    outcomes = [
        auth.check(bad, source=f"127.0.5.{n}", ha1_of=ha1_of, now=float(n), to_tag="t")
        for n in range(5)
    ]
    statuses = [o.status for o in outcomes if isinstance(o, Response)]
    assert statuses == [401, 401, 401, 503, 503]
    refused = outcomes[-1]
    assert isinstance(refused, Response) and refused.headers.get("Retry-After") == "99"
    # Its owner waits too, but no address is blocked for it.
    good = answered(auth, challenge, password="correct horse", nc=2)
    owner = auth.check(good, source=SOURCE, ha1_of=ha1_of, now=10.0, to_tag="t")
    assert isinstance(owner, Response) and owner.status == 503
    assert auth.guard.blocks(now=10.0) == []
    assert isinstance(
        auth.check(good, source=SOURCE, ha1_of=ha1_of, now=104.0, to_tag="t"), Authenticated
    )


def test_a_scanner_from_a_trusted_provider_is_dropped_but_never_blocked() -> None:
    auth = authenticator()
    auth.guard.trust([ipaddress.ip_network(SOURCE)])
    assert check(auth, request(agent="friendly-scanner")) is DROP
    assert not auth.guard.is_blocked(SOURCE, 1.0)
    assert isinstance(check(auth, request()), Response)
