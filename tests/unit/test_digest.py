"""Digest authentication: RFC vectors, server/client round trips, nonces, header syntax."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.sip.digest import (
    MAX_HEADER_LENGTH,
    MAX_PARAMS,
    AuthStatus,
    Challenge,
    Credentials,
    DigestError,
    DigestServer,
    answer_challenge,
    compute_ha1,
    compute_response,
    parse_algorithm_list,
    parse_challenge,
    parse_credentials,
    select_challenge,
)

REALM = "pbx.example.com"
URI = "sip:pbx.example.com"
T0 = 1000.0

RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa",\r\n'
    '     realm="testrealm@host.com",\r\n'
    '     nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n'
    '     uri="/dir/index.html",\r\n'
    "     qop=auth,\r\n"
    "     nc=00000001,\r\n"
    '     cnonce="0a4f113b",\r\n'
    '     response="6629fae49393a05397450978507c4ef1",\r\n'
    '     opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def rfc7616_authorization(algorithm: str, response: str) -> str:
    return (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f"algorithm={algorithm}, "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        f'response="{response}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )


def expected_response(credentials: Credentials, password: str, method: str = "GET") -> str:
    algorithm = credentials.effective_algorithm
    return compute_response(
        ha1=compute_ha1(credentials.username, credentials.realm, password, algorithm),
        algorithm=algorithm,
        method=method,
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
    )


def answer(
    server: DigestServer,
    *,
    now: float = T0,
    algorithm: str = "SHA-256",
    username: str = "alice",
    password: str = "s3cret",
    nc: int = 1,
    method: str = "REGISTER",
    body: bytes = b"",
) -> Credentials:
    challenge = next(c for c in server.challenge(now) if c.algorithm == algorithm)
    return answer_challenge(
        challenge,
        method=method,
        uri=URI,
        username=username,
        password=password,
        nc=nc,
        body=body,
    )


# --- RFC vectors ----------------------------------------------------------------------------


def test_rfc2617_worked_example_verifies() -> None:
    credentials = parse_credentials(RFC2617_AUTHORIZATION)

    assert compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )
    assert expected_response(credentials, "Circle Of Life") == credentials.response
    assert credentials.response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples_verify(algorithm: str, response: str) -> None:
    credentials = parse_credentials(rfc7616_authorization(algorithm, response))

    assert credentials.algorithm == algorithm
    assert expected_response(credentials, "Circle of Life") == response


def test_rfc2617_challenge_parses() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )

    assert challenge == Challenge(
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
        qop=("auth", "auth-int"),
    )


# --- server / client round trips ------------------------------------------------------------


ALL_ALGORITHMS = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_client_answer_verifies_on_server(algorithm: str) -> None:
    server = DigestServer(REALM, algorithms=ALL_ALGORITHMS)
    credentials = answer(server, algorithm=algorithm)

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0 + 1)

    assert result.status is AuthStatus.OK
    assert result.ok


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_answer_survives_the_wire_and_verifies_with_stored_ha1(algorithm: str) -> None:
    server = DigestServer(REALM, algorithms=ALL_ALGORITHMS)
    sent = answer(server, algorithm=algorithm)
    received = parse_credentials(sent.to_header_value())
    ha1 = compute_ha1("alice", REALM, "s3cret", received.effective_algorithm)

    result = server.verify(received, method="REGISTER", ha1=ha1, now=T0 + 1)

    assert received == sent
    assert result.status is AuthStatus.OK


@pytest.mark.parametrize("order", [("MD5", "SHA-256"), ("SHA-256", "MD5")])
def test_challenges_keep_the_order_given_and_share_one_nonce(order: tuple[str, str]) -> None:
    challenges = DigestServer(REALM, algorithms=order).challenge(T0)

    assert [c.algorithm for c in challenges] == list(order)
    assert len({c.nonce for c in challenges}) == 1
    assert all(c.qop == ("auth",) and c.realm == REALM for c in challenges)
    assert challenges[0].to_header_value().endswith(f'algorithm={order[0]}, qop="auth"')


def test_a_challenge_for_one_account_offers_its_algorithms() -> None:
    server = DigestServer(REALM, algorithms=("SHA-256", "MD5"))

    assert [c.algorithm for c in server.challenge(T0, algorithms=["MD5"])] == ["MD5"]
    assert server.algorithms == ("SHA-256", "MD5")


def test_an_answer_outside_the_accounts_algorithms_fails() -> None:
    server = DigestServer(REALM, algorithms=("SHA-256", "MD5"))
    credentials = answer(server, algorithm="SHA-256")

    refused = server.verify(
        credentials, method="REGISTER", password="s3cret", now=T0 + 1, algorithms=["MD5"]
    )
    accepted = server.verify(
        credentials, method="REGISTER", password="s3cret", now=T0 + 1, algorithms=["SHA-256"]
    )

    assert (refused.status, refused.reason) == (AuthStatus.FAILED, "unsupported algorithm")
    assert accepted.ok


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("MD5", ("MD5",)),
        ("sha-256, md5", ("SHA-256", "MD5")),
        (" Md5 ,SHA-256 ", ("MD5", "SHA-256")),
    ],
)
def test_an_algorithm_list_is_read_as_people_type_it(text: str, names: tuple[str, ...]) -> None:
    assert parse_algorithm_list(text, ("SHA-256", "MD5")) == names


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("md4", "'md4' is not one of SHA-256, MD5 (comma separated, in order)"),
        ("MD5,", "an empty item is not one of SHA-256, MD5 (comma separated, in order)"),
        ("MD5-sess", "'MD5-sess' is not one of SHA-256, MD5 (comma separated, in order)"),
        ("md5,MD5", "MD5 is listed twice"),
    ],
)
def test_a_bad_algorithm_list_says_what_is_allowed(text: str, reason: str) -> None:
    with pytest.raises(DigestError) as refused:
        parse_algorithm_list(text, ("SHA-256", "MD5"))
    assert refused.value.reason == reason


def test_auth_int_protects_the_body() -> None:
    server = DigestServer(REALM)
    challenge = dataclasses.replace(server.challenge(T0)[0], qop=("auth-int",))
    credentials = answer_challenge(
        challenge, method="INVITE", uri=URI, username="alice", password="pw", body=b"v=0"
    )

    tampered = server.verify(credentials, method="INVITE", password="pw", now=T0, body=b"v=1")
    intact = server.verify(credentials, method="INVITE", password="pw", now=T0, body=b"v=0")

    assert credentials.qop == "auth-int"
    assert tampered.status is AuthStatus.FAILED
    assert intact.status is AuthStatus.OK


# --- failures -------------------------------------------------------------------------------


def test_wrong_password_fails() -> None:
    server = DigestServer(REALM)
    credentials = answer(server, password="guess")

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0)

    assert result.status is AuthStatus.FAILED


def test_unknown_user_fails_exactly_like_wrong_password() -> None:
    server = DigestServer(REALM)
    wrong = server.verify(answer(server, password="x"), method="REGISTER", password="y", now=T0)
    unknown = server.verify(answer(server, username="mallory"), method="REGISTER", now=T0)

    assert unknown == wrong
    assert unknown.status is AuthStatus.FAILED


def test_wrong_method_fails() -> None:
    server = DigestServer(REALM)
    credentials = answer(server, method="REGISTER")

    result = server.verify(credentials, method="INVITE", password="s3cret", now=T0)

    assert result.status is AuthStatus.FAILED


def test_expired_nonce_with_right_password_is_stale() -> None:
    server = DigestServer(REALM, nonce_ttl=300)
    credentials = answer(server, now=T0)

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0 + 301)

    assert result.status is AuthStatus.STALE


def test_expired_nonce_with_wrong_password_fails_not_stale() -> None:
    server = DigestServer(REALM, nonce_ttl=300)
    credentials = answer(server, now=T0, password="guess")

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0 + 301)

    assert result.status is AuthStatus.FAILED


def test_stale_challenge_says_so_on_the_wire() -> None:
    challenge = DigestServer(REALM).challenge(T0, stale=True)[0]

    assert challenge.stale
    assert "stale=true" in challenge.to_header_value()
    assert parse_challenge(challenge.to_header_value()).stale


def flip_char(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda nonce: flip_char(nonce, 0), id="altered-timestamp"),
        pytest.param(lambda nonce: flip_char(nonce, 12), id="altered-random"),
        pytest.param(lambda nonce: flip_char(nonce, -1), id="altered-mac"),
        pytest.param(lambda nonce: nonce[:-1], id="truncated"),
        pytest.param(lambda nonce: nonce + "A", id="extended"),
        pytest.param(lambda nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", id="foreign"),
        pytest.param(lambda nonce: "!" * len(nonce), id="not-base64"),
        pytest.param(lambda nonce: "é" * len(nonce), id="not-ascii"),
        pytest.param(
            lambda nonce: DigestServer(REALM, secret=b"other").challenge(T0)[0].nonce,
            id="other-secret",
        ),
    ],
)
def test_a_nonce_not_ours_fails_with_a_wrong_password(forge: Callable[[str], str]) -> None:
    server = DigestServer(REALM, secret=b"k" * 32)
    nonce = forge(server.challenge(T0)[0].nonce)
    challenge = Challenge(REALM, nonce, algorithm="SHA-256", qop=("auth",))
    credentials = answer_challenge(
        challenge, method="REGISTER", uri=URI, username="alice", password="guess"
    )

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0)

    assert result.status is AuthStatus.FAILED
    assert result.reason == "unknown nonce"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda nonce: flip_char(nonce, -1), id="altered-mac"),
        pytest.param(lambda nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", id="foreign"),
        pytest.param(
            lambda nonce: DigestServer(REALM, secret=b"other").challenge(T0)[0].nonce,
            id="before-a-restart",
        ),
    ],
)
def test_a_nonce_not_ours_with_the_right_password_is_stale(forge: Callable[[str], str]) -> None:
    # After a restart the nonce key is new: a phone re-registering with the
    # nonce it had is told to take a fresh one, not counted as failing. No
    # access is given: the answer must be made again over our nonce.
    server = DigestServer(REALM, secret=b"k" * 32)
    nonce = forge(server.challenge(T0)[0].nonce)
    challenge = Challenge(REALM, nonce, algorithm="SHA-256", qop=("auth",))
    credentials = answer_challenge(
        challenge, method="REGISTER", uri=URI, username="alice", password="s3cret"
    )

    result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0)

    assert (result.status, result.reason) == (AuthStatus.STALE, "nonce not ours")


def test_nonce_from_other_realm_with_same_secret_is_not_accepted() -> None:
    other = DigestServer("other.example.com", secret=b"k" * 32)
    server = DigestServer(REALM, secret=b"k" * 32)
    challenge = dataclasses.replace(other.challenge(T0)[0], realm=REALM)
    credentials = answer_challenge(
        challenge, method="REGISTER", uri=URI, username="a", password="p"
    )

    result = server.verify(credentials, method="REGISTER", password="p", now=T0)

    assert result.status is not AuthStatus.OK


def test_realm_mismatch_fails() -> None:
    server = DigestServer(REALM)
    challenge = dataclasses.replace(server.challenge(T0)[0], realm="evil.example.com")
    credentials = answer_challenge(
        challenge, method="REGISTER", uri=URI, username="a", password="p"
    )

    result = server.verify(credentials, method="REGISTER", password="p", now=T0)

    assert result.status is AuthStatus.FAILED
    assert result.reason == "realm mismatch"


def test_algorithm_the_server_does_not_offer_fails() -> None:
    md5_server = DigestServer(REALM, secret=b"k" * 32, algorithms=("MD5",))
    sha_server = DigestServer(REALM, secret=b"k" * 32, algorithms=("SHA-256",))
    credentials = answer(md5_server, algorithm="MD5")

    result = sha_server.verify(credentials, method="REGISTER", password="s3cret", now=T0)

    assert result.status is AuthStatus.FAILED
    assert result.reason == "unsupported algorithm"


def test_password_and_ha1_together_is_a_caller_bug() -> None:
    server = DigestServer(REALM)
    with pytest.raises(ValueError, match="not both"):
        server.verify(answer(server), method="REGISTER", password="p", ha1="00", now=T0)


def test_unknown_algorithm_in_config_is_rejected() -> None:
    with pytest.raises(DigestError, match="unsupported algorithm"):
        DigestServer(REALM, algorithms=("SHA-512-256",))


# --- replay ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([1, 2, 3], [AuthStatus.OK, AuthStatus.OK, AuthStatus.OK]),
        ([1, 1], [AuthStatus.OK, AuthStatus.FAILED]),
        ([1, 5, 3], [AuthStatus.OK, AuthStatus.OK, AuthStatus.FAILED]),
        ([2, 1], [AuthStatus.OK, AuthStatus.FAILED]),
        ([1, 0xFFFFFFFF], [AuthStatus.OK, AuthStatus.OK]),
    ],
)
def test_nonce_count_must_grow(counts: list[int], expected: list[AuthStatus]) -> None:
    server = DigestServer(REALM)
    challenge = server.challenge(T0)[0]

    statuses = [
        server.verify(
            answer_challenge(
                challenge, method="REGISTER", uri=URI, username="a", password="p", nc=nc
            ),
            method="REGISTER",
            password="p",
            now=T0 + attempt,
        ).status
        for attempt, nc in enumerate(counts)
    ]

    assert statuses == expected


def test_failed_attempt_does_not_burn_the_nonce_count() -> None:
    server = DigestServer(REALM)
    challenge = server.challenge(T0)[0]
    bad = answer_challenge(challenge, method="REGISTER", uri=URI, username="a", password="x", nc=5)
    good = answer_challenge(challenge, method="REGISTER", uri=URI, username="a", password="p", nc=1)

    server.verify(bad, method="REGISTER", password="p", now=T0)

    assert server.verify(good, method="REGISTER", password="p", now=T0).status is AuthStatus.OK
    assert server.tracked_nonce_count == 1


# --- legacy RFC 2069 answers ----------------------------------------------------------------


def legacy_answer(server: DigestServer, password: str = "p") -> Credentials:
    challenge = dataclasses.replace(server.challenge(T0)[-1], qop=())
    return answer_challenge(challenge, method="REGISTER", uri=URI, username="a", password=password)


def test_answer_without_qop_is_refused_by_default() -> None:
    server = DigestServer(REALM)
    credentials = legacy_answer(server)

    result = server.verify(credentials, method="REGISTER", password="p", now=T0)

    assert credentials.qop is None and credentials.cnonce is None and credentials.nc is None
    assert result.status is AuthStatus.FAILED
    assert result.reason == "qop required"


def test_legacy_answer_is_accepted_once_when_allowed() -> None:
    server = DigestServer(REALM, allow_legacy=True)
    credentials = legacy_answer(server)

    first = server.verify(credentials, method="REGISTER", password="p", now=T0)
    replay = server.verify(credentials, method="REGISTER", password="p", now=T0 + 1)

    assert first.status is AuthStatus.OK
    assert replay.status is AuthStatus.FAILED


def test_legacy_answer_with_wrong_password_fails() -> None:
    server = DigestServer(REALM, allow_legacy=True)

    result = server.verify(legacy_answer(server, "x"), method="REGISTER", password="p", now=T0)

    assert result.status is AuthStatus.FAILED


# --- bounded nonce table --------------------------------------------------------------------


def test_nonce_table_stays_bounded_under_a_flood() -> None:
    server = DigestServer(REALM, max_tracked_nonces=8)

    for i in range(200):
        credentials = answer(server, now=T0 + i / 1000)
        result = server.verify(credentials, method="REGISTER", password="s3cret", now=T0 + 0.5)
        assert result.status is AuthStatus.OK
        assert server.tracked_nonce_count <= 8


def test_evicted_nonce_cannot_be_replayed() -> None:
    server = DigestServer(REALM, max_tracked_nonces=2)
    first = answer(server, now=T0)
    server.verify(first, method="REGISTER", password="s3cret", now=T0)
    for i in range(1, 4):
        later = answer(server, now=T0 + i)
        server.verify(later, method="REGISTER", password="s3cret", now=T0 + i)

    replay = server.verify(first, method="REGISTER", password="s3cret", now=T0 + 5)

    assert replay.status is AuthStatus.STALE


def test_expired_nonces_are_purged() -> None:
    server = DigestServer(REALM, nonce_ttl=300)
    for i in range(50):
        credentials = answer(server, now=T0 + i)
        server.verify(credentials, method="REGISTER", password="s3cret", now=T0 + i)

    fresh = answer(server, now=T0 + 1000)
    server.verify(fresh, method="REGISTER", password="s3cret", now=T0 + 1000)

    assert server.tracked_nonce_count == 1


# --- client side ----------------------------------------------------------------------------


def chal(algorithm: str | None, qop: tuple[str, ...] = ("auth",)) -> Challenge:
    return Challenge(REALM, f"nonce-{algorithm}", algorithm=algorithm, qop=qop)


@pytest.mark.parametrize(
    ("challenges", "chosen"),
    [
        ([chal("MD5"), chal("SHA-256")], chal("SHA-256")),
        ([chal("SHA-256"), chal("MD5")], chal("SHA-256")),
        ([chal("AKAv1-MD5"), chal("MD5")], chal("MD5")),
        ([chal("SHA-512-256"), chal(None)], chal(None)),
        ([chal("SHA-256", ("auth-unknown",)), chal("MD5")], chal("MD5")),
        ([chal("SHA-256", ("auth-int",)), chal("MD5")], chal("SHA-256", ("auth-int",))),
        ([chal("MD5-sess"), chal("MD5")], chal("MD5")),
    ],
)
def test_select_challenge_prefers_sha256_and_skips_unsupported(
    challenges: list[Challenge], chosen: Challenge
) -> None:
    assert select_challenge(challenges) == chosen


@pytest.mark.parametrize("challenges", [[], [chal("AKAv1-MD5")], [chal("MD5", ("bogus",))]])
def test_select_challenge_without_a_usable_one_raises(challenges: list[Challenge]) -> None:
    with pytest.raises(DigestError, match="no supported challenge"):
        select_challenge(challenges)


def test_answer_echoes_opaque_and_uses_given_cnonce_and_nc() -> None:
    challenge = Challenge(REALM, "n", opaque="op", algorithm="MD5", qop=("auth-int", "auth"))

    credentials = answer_challenge(
        challenge, method="REGISTER", uri=URI, username="a", password="p", nc=7, cnonce="c"
    )

    assert (credentials.opaque, credentials.qop, credentials.nc, credentials.cnonce) == (
        "op",
        "auth",
        7,
        "c",
    )
    assert credentials.to_header_value() == (
        f'Digest username="a", realm="{REALM}", nonce="n", uri="{URI}", '
        f'response="{credentials.response}", algorithm=MD5, cnonce="c", opaque="op", '
        "qop=auth, nc=00000007"
    )


@pytest.mark.parametrize(
    ("challenge", "nc", "reason"),
    [
        (chal("SHA-512-256"), 1, "unsupported algorithm"),
        (chal("MD5", ("bogus",)), 1, "no supported qop"),
        (chal("MD5-sess", ()), 1, "without qop"),
        (chal("MD5"), 0x1_0000_0000, "nc out of range"),
        (chal("MD5"), -1, "nc out of range"),
    ],
)
def test_answer_challenge_rejects_what_it_cannot_answer(
    challenge: Challenge, nc: int, reason: str
) -> None:
    with pytest.raises(DigestError, match=reason):
        answer_challenge(challenge, method="REGISTER", uri=URI, username="a", password="p", nc=nc)


# --- header syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'Digest realm="r", nonce="n"',
            Challenge("r", "n"),
        ),
        (
            '  dIgEsT   REALM = "r" ,NONCE=n,  Stale=TRUE , Algorithm=md5 , qop="auth, auth-int"',
            Challenge("r", "n", stale=True, algorithm="MD5", qop=("auth", "auth-int")),
        ),
        (
            'Digest realm="a \\"quoted\\" \\\\ realm", nonce="n", stale=maybe',
            Challenge('a "quoted" \\ realm', "n"),
        ),
        (
            'Digest realm="r",\r\n\tnonce="abc/def==", opaque="", domain="sip:a sip:b"',
            Challenge("r", "abc/def==", opaque="", domain=("sip:a", "sip:b")),
        ),
        (
            'Digest realm="r", nonce=abc/def==, algorithm=AKAv1-MD5, x-unknown="ignored"',
            Challenge("r", "abc/def==", algorithm="AKAv1-MD5"),
        ),
        (
            'Digest realm="réalm", nonce="n", qop=""',
            Challenge("réalm", "n"),
        ),
    ],
)
def test_parse_challenge(value: str, expected: Challenge) -> None:
    assert parse_challenge(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'Digest username="a", realm="r", nonce="n", uri="sip:x", response="f00"',
            Credentials("a", "r", "n", "sip:x", "f00"),
        ),
        (
            # Many phones quote qop and algorithm; accept it.
            'Digest username="bob \\"the\\" builder", realm="r", nonce="n", uri="sip:x", '
            'response="f00", algorithm="sha-256", qop="auth", nc=0000000A, cnonce="c"',
            Credentials(
                'bob "the" builder',
                "r",
                "n",
                "sip:x",
                "f00",
                algorithm="SHA-256",
                qop="auth",
                nc=10,
                cnonce="c",
            ),
        ),
    ],
)
def test_parse_credentials(value: str, expected: Credentials) -> None:
    assert parse_credentials(value) == expected


def test_serialized_challenge_quotes_per_rfc() -> None:
    challenge = Challenge(
        'r"1', "n", opaque="o", stale=True, algorithm="SHA-256", qop=("auth",), domain=("sip:a",)
    )

    assert challenge.to_header_value() == (
        'Digest realm="r\\"1", domain="sip:a", nonce="n", opaque="o", stale=true, '
        'algorithm=SHA-256, qop="auth"'
    )


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("alice\r\nVia: SIP/2.0/UDP evil", id="crlf-injection"),
        pytest.param("alice\x00", id="nul"),
    ],
)
def test_serializers_refuse_control_characters(username: str) -> None:
    with pytest.raises(DigestError, match="control character"):
        Credentials(username, "r", "n", "u", "x").to_header_value()


CREDENTIALS_REQUIRED = 'username="a", realm="r", nonce="n", uri="u", response="x"'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "expected auth scheme"),
        ("   ", "expected auth scheme"),
        ('Basic realm="r"', "unsupported auth scheme"),
        ("Digest", "expected parameters"),
        ("Digest ", "expected parameters"),
        ("Digest realm", "expected '='"),
        ("Digest realm=", "expected a parameter value"),
        ('Digest realm="r", nonce="n', "unterminated"),
        ('Digest realm="r", nonce="n\\', "unterminated"),
        ('Digest realm="r",, nonce="n"', "expected parameter name"),
        ('Digest realm="r", nonce="n",', "expected parameter name"),
        ('Digest realm="r" nonce="n"', "expected ','"),
        ('Digest realm="r", REALM="s", nonce="n"', "duplicate parameter"),
        ('Digest realm="r", nonce=ñ', "expected a parameter value"),
        ('Digest realm="r\nVia: evil", nonce="n"', "control character"),
        ('Digest realm="r"', "missing parameter: nonce"),
        ('Digest nonce="n"', "missing parameter: realm"),
        ("Digest " + ", ".join(f"p{i}=v" for i in range(MAX_PARAMS + 1)), "too many"),
        ('Digest realm="' + "r" * MAX_HEADER_LENGTH + '", nonce="n"', "too long"),
    ],
)
def test_malformed_challenge_raises(value: str, reason: str) -> None:
    with pytest.raises(DigestError, match=reason):
        parse_challenge(value)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ('realm="r", nonce="n", uri="u", response="x"', "missing parameter: username"),
        ('username="a", realm="r", nonce="n", uri="u"', "missing parameter: response"),
        (CREDENTIALS_REQUIRED + ", qop=auth, nc=00000001", "qop needs cnonce and nc"),
        (CREDENTIALS_REQUIRED + ', qop=auth, cnonce="c"', "qop needs cnonce and nc"),
        (CREDENTIALS_REQUIRED + ', qop=auth, cnonce="c", nc=1', "nc must be 8 hex"),
        (CREDENTIALS_REQUIRED + ', qop=auth, cnonce="c", nc=0000000g', "nc must be 8 hex"),
    ],
)
def test_malformed_credentials_raise(params: str, reason: str) -> None:
    with pytest.raises(DigestError, match=reason):
        parse_credentials("Digest " + params)


def test_digest_error_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError) as caught:
        parse_challenge("Basic x=y")

    assert isinstance(caught.value, DigestError)
    assert caught.value.reason == "unsupported auth scheme: Basic"


# --- properties -----------------------------------------------------------------------------

wire_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")),
    max_size=40,
)
token = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"),
    min_size=1,
    max_size=12,
)
algorithms = st.one_of(st.none(), st.sampled_from(ALL_ALGORITHMS), token)


@st.composite
def credentials_strategy(draw: st.DrawFn) -> Credentials:
    qop = draw(st.one_of(st.none(), st.sampled_from(["auth", "auth-int"]), wire_text))
    needs_counter = qop is not None
    cnonce = draw(wire_text if needs_counter else st.one_of(st.none(), wire_text))
    nc_values = st.integers(0, 0xFFFFFFFF)
    nc = draw(nc_values if needs_counter else st.one_of(st.none(), nc_values))
    return Credentials(
        username=draw(wire_text),
        realm=draw(wire_text),
        nonce=draw(wire_text),
        uri=draw(wire_text),
        response=draw(wire_text),
        algorithm=draw(algorithms),
        cnonce=cnonce,
        opaque=draw(st.one_of(st.none(), wire_text)),
        qop=qop,
        nc=nc,
    )


@given(credentials_strategy())
def test_credentials_round_trip_through_the_wire(credentials: Credentials) -> None:
    assert parse_credentials(credentials.to_header_value()) == credentials


@given(
    realm=wire_text,
    nonce=wire_text,
    opaque=st.one_of(st.none(), wire_text),
    stale=st.booleans(),
    algorithm=algorithms,
    qop=st.lists(token, max_size=3).map(tuple),
)
def test_challenge_round_trips_through_the_wire(
    realm: str,
    nonce: str,
    opaque: str | None,
    stale: bool,
    algorithm: str | None,
    qop: tuple[str, ...],
) -> None:
    challenge = Challenge(realm, nonce, opaque, stale, algorithm, qop)

    assert parse_challenge(challenge.to_header_value()) == challenge


header_like = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda body: "Digest " + body,
        st.text(st.sampled_from('abnrealmoncuri="\\, =\t\r\n\x00é/'), max_size=120),
    ),
)


@given(header_like)
def test_parsers_only_ever_raise_digest_error(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(DigestError):
            parse(value)


@given(credentials_strategy(), st.text(max_size=20))
def test_server_never_raises_on_arbitrary_credentials(
    credentials: Credentials, password: str
) -> None:
    server = DigestServer(REALM, allow_legacy=True, algorithms=ALL_ALGORITHMS)

    result = server.verify(credentials, method="REGISTER", password=password, now=T0)

    assert result.status is AuthStatus.FAILED
