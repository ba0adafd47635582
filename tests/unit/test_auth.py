"""Digest authentication of internal lines, with the flood guard."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging

import pytest

from callbridge.pbx.auth import DROP, Authenticated, Authenticator
from callbridge.pbx.guard import FloodGuard, GuardPolicy
from callbridge.sip import Request, Response, parse
from callbridge.sip.digest import (
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    parse_credentials,
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


def offered(challenge: object) -> list[str | None]:
    assert isinstance(challenge, Response) and challenge.status in (401, 407)
    header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
    return [parse_challenge(v).algorithm for v in challenge.headers.get_all(header)]


@pytest.mark.parametrize(("method", "status"), [("REGISTER", 401), ("INVITE", 407)])
@pytest.mark.parametrize("order", [("MD5", "SHA-256"), ("SHA-256", "MD5")])
def test_first_request_is_challenged_in_the_order_given(
    method: str, status: int, order: tuple[str, str]
) -> None:
    guard = FloodGuard(GuardPolicy())
    auth = Authenticator(DigestServer(REALM, algorithms=order), guard, server_name="callbridge")
    challenge = check(auth, request(method))
    assert isinstance(challenge, Response) and challenge.status == status
    assert offered(challenge) == list(order)


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


# --- a line's own digest algorithms ------------------------------------------


def md5_only(user: str) -> tuple[str, ...] | None:
    """101 (by username or number) chose MD5 alone; everyone else: the server's."""
    return ("MD5",) if user == "101" else None


def sha256_first() -> Authenticator:
    guard = FloodGuard(GuardPolicy())
    digest = DigestServer(REALM, algorithms=("SHA-256", "MD5"))
    return Authenticator(digest, guard, server_name="callbridge")


def check_line(auth: Authenticator, req: Request, now: float = 0.0) -> object:
    return auth.check(
        req, source=SOURCE, ha1_of=ha1_of, algorithms_of=md5_only, now=now, to_tag="t"
    )


def answered_with(challenge: Response, algorithm: str, *, user: str = "101") -> Request:
    """The request answering `challenge`'s nonce with `algorithm`, offered or not."""
    header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
    first = parse_challenge(challenge.headers.get_all(header)[0])
    creds = answer_challenge(
        dataclasses.replace(first, algorithm=algorithm),
        method=challenge.cseq.method,
        uri="sip:127.0.0.1",
        username=user,
        password="correct horse",
    )
    name = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
    return request(challenge.cseq.method, extra=f"{name}: {creds.to_header_value()}\r\n")


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_a_line_is_challenged_with_its_own_algorithms(method: str) -> None:
    # REGISTER names the line in To, an INVITE in From: both are 101 here.
    assert offered(check_line(sha256_first(), request(method))) == ["MD5"]


def test_an_unknown_user_is_challenged_with_the_servers_algorithms() -> None:
    req = parse(request().to_bytes().replace(b"sip:101@", b"sip:999@"))
    assert isinstance(req, Request)
    assert offered(check_line(sha256_first(), req)) == ["SHA-256", "MD5"]


def test_a_line_accepts_its_algorithm_and_refuses_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = sha256_first()
    challenge = check_line(auth, request())
    assert isinstance(challenge, Response)
    # SHA-256 is the server's first choice, but not this line's.
    refused = check_line(auth, answered_with(challenge, "SHA-256"))
    assert offered(refused) == ["MD5"]
    assert [fields(r)["reason"] for r in failures(caplog)] == ["algorithm not allowed"]
    assert check_line(auth, answered_with(challenge, "MD5")) == Authenticated("101")


def test_a_line_may_use_an_algorithm_the_server_does_not_offer() -> None:
    guard = FloodGuard(GuardPolicy())
    auth = Authenticator(DigestServer(REALM, algorithms=("SHA-256",)), guard, server_name="cb")
    challenge = check_line(auth, request())
    assert isinstance(challenge, Response)
    assert check_line(auth, answered_with(challenge, "MD5")) == Authenticated("101")


# --- failures in the log -----------------------------------------------------


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="callbridge")


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "auth.failed"]


def fields(record: logging.LogRecord) -> dict[str, object]:
    found: dict[str, object] = getattr(record, "callbridge_fields")  # noqa: B009
    return found


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [("101", "battery staple", "wrong password"), ("999", "correct horse", "unknown user")],
)
def test_a_failure_is_logged_once_at_info_with_account_source_and_reason(
    caplog: pytest.LogCaptureFixture, user: str, password: str, reason: str
) -> None:
    auth = authenticator()
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    assert failures(caplog) == []  # the challenge alone is no failure
    creds = answered(auth, challenge, password=password, user=user)
    check(auth, creds)
    [record] = failures(caplog)
    assert record.levelno == logging.INFO
    assert fields(record) == {
        "account": user,
        "src": SOURCE,
        "method": "REGISTER",
        "reason": reason,
    }
    response = parse_credentials(creds.headers.get("Authorization") or "").response
    logged = " ".join(f"{r.getMessage()} {fields(r)}" for r in caplog.records)
    assert response not in logged
    assert all(ha1 not in logged for ha1 in HA1.values())
    assert password not in logged


def test_credentials_for_another_uri_are_logged_as_a_digest_uri_mismatch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = authenticator()
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    good = answered(auth, challenge, password="correct horse")
    moved = parse(good.to_bytes().replace(b"REGISTER sip:127.0.0.1 ", b"REGISTER sip:127.0.0.9 "))
    assert isinstance(moved, Request)
    check(auth, moved)
    assert [fields(r)["reason"] for r in failures(caplog)] == ["digest URI mismatch"]


def test_a_register_for_another_realm_is_a_wrong_realm(caplog: pytest.LogCaptureFixture) -> None:
    auth = authenticator(max_failures=0)
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    good = answered(auth, challenge, password="correct horse")
    elsewhere = parse(good.to_bytes().replace(b'realm="callbridge"', b'realm="elsewhere"'))
    assert isinstance(elsewhere, Request)
    assert check(auth, elsewhere) is DROP  # counted: a guesser cannot loop on it
    assert [fields(r)["reason"] for r in failures(caplog)] == ["wrong realm"]


def test_a_stale_nonce_is_no_failure_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    auth = authenticator()
    challenge = check(auth, request(), now=0.0)
    assert isinstance(challenge, Response)
    check(auth, answered(auth, challenge, password="correct horse"), now=1000.0)
    assert failures(caplog) == []


def test_a_long_account_is_logged_cut_short(caplog: pytest.LogCaptureFixture) -> None:
    auth = authenticator()
    challenge = check(auth, request())
    assert isinstance(challenge, Response)
    check(auth, answered(auth, challenge, password="x", user="u" * 500))
    [record] = failures(caplog)
    assert fields(record)["account"] == "u" * 64 + "..."
