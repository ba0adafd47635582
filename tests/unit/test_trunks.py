"""Registering an external line with its provider: the sans-IO
`Registration` against the project's own digest server playing the
provider's registrar, with the clock passed in."""

from __future__ import annotations

import pytest

from callbridge.pbx.trunks import Registration, State, Trunk
from callbridge.sip import Request, Response, make_response
from callbridge.sip.digest import AuthStatus, DigestServer, parse_credentials

PASSWORD = "provider-secret"
TRUNK = Trunk(
    id=7,
    code="ringostat",
    host="127.0.0.2",
    port=5080,
    register=True,
    username="380441234567",
    login="acc-42",
    password=PASSWORD,
)


class Provider:
    """A registrar that challenges with digest and grants `expires`."""

    def __init__(
        self, *, password: str = PASSWORD, expires: int = 120, proxy: bool = False
    ) -> None:
        self.digest = DigestServer("provider.example", algorithms=["MD5"])
        self.password = password
        self.expires = expires
        self.proxy = proxy

    def answer(self, request: Request, now: float) -> Response:
        value = request.headers.get("Proxy-Authorization" if self.proxy else "Authorization")
        if value is not None:
            credentials = parse_credentials(value)
            result = self.digest.verify(
                credentials, method="REGISTER", password=self.password, now=now
            )
            if result.status is AuthStatus.OK:
                contact = request.headers.get("Contact")
                return make_response(
                    request,
                    200,
                    to_tag="prov",
                    headers=[("Contact", f"{contact};expires={self.expires}")],
                )
        challenge = self.digest.challenge(now)[0]
        return make_response(
            request,
            407 if self.proxy else 401,
            to_tag="prov",
            headers=[
                (
                    "Proxy-Authenticate" if self.proxy else "WWW-Authenticate",
                    challenge.to_header_value(),
                )
            ],
        )


def register(registration: Registration, provider: Provider, now: float) -> None:
    request: Request | None = registration.start(now)
    while request is not None:
        request = registration.response(provider.answer(request, now), now)


def new_registration() -> Registration:
    return Registration(TRUNK, local_host="127.0.0.1", local_port=5060)


def test_registers_by_answering_the_digest_challenge_with_the_login() -> None:
    registration, provider = new_registration(), Provider()
    first = registration.start(0.0)
    assert first.uri.host == "127.0.0.2" and first.uri.port == 5080  # type: ignore[union-attr]
    assert "sip:380441234567@127.0.0.2:5080" in (first.headers.get("To") or "")
    challenged = provider.answer(first, 0.0)
    second = registration.response(challenged, 0.0)
    assert second is not None
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert 'username="acc-42"' in (second.headers.get("Authorization") or "")
    assert PASSWORD not in bytes(second).decode()
    assert registration.response(provider.answer(second, 0.0), 0.0) is None
    assert (registration.state, registration.reason, registration.granted) == (
        State.REGISTERED,
        None,
        120,
    )


def test_refreshes_before_the_binding_expires() -> None:
    registration = new_registration()
    register(registration, Provider(expires=100), now=10.0)
    assert registration.deadline == pytest.approx(90.0)  # 80% of the granted 100 s
    assert registration.timer(89.0) is None
    refresh = registration.timer(90.0)
    assert refresh is not None and refresh.headers.get("Expires") == "3600"


def test_a_2xx_with_an_unreadable_contact_still_registers_and_refreshes() -> None:
    # The parser lets a response through without reading its Contact: one
    # that cannot be read must not leave the line registering forever.
    registration = new_registration()
    first = registration.start(0.0)
    second = registration.response(Provider().answer(first, 0.0), 0.0)
    assert second is not None
    ok = make_response(
        second, 200, to_tag="prov", headers=[("Contact", "<sip:bad"), ("Expires", "100")]
    )
    assert registration.response(ok, 0.0) is None
    assert (registration.state, registration.granted) == (State.REGISTERED, 100)
    assert registration.timer(80.0) is not None


def test_a_wrong_password_fails_with_a_reason_and_backs_off() -> None:
    registration = new_registration()
    provider = Provider(password="the-real-one")
    register(registration, provider, now=0.0)
    assert (registration.state, registration.reason) == (State.FAILED, "wrong login or password")
    assert registration.deadline == 5.0
    retry = registration.timer(5.0)
    assert retry is not None and registration.state is State.REGISTERING
    request: Request | None = retry
    while request is not None:
        request = registration.response(provider.answer(request, 5.0), 5.0)
    assert registration.deadline == 15.0  # the pause doubled


def test_no_answer_is_a_failure_retried_later() -> None:
    registration = new_registration()
    request = registration.start(0.0)
    assert registration.response(make_response(request, 408), 0.0) is None
    assert (registration.state, registration.reason) == (
        State.FAILED,
        "no answer from the server",
    )
    assert registration.timer(5.0) is not None


def test_interval_too_brief_asks_again_with_the_minimum() -> None:
    registration = new_registration()
    request = registration.start(0.0)
    too_brief = make_response(request, 423, headers=[("Min-Expires", "7200")])
    again = registration.response(too_brief, 0.0)
    assert again is not None and again.headers.get("Expires") == "7200"


def test_a_refusal_is_shown_with_its_status() -> None:
    registration = new_registration()
    request = registration.start(0.0)
    registration.response(make_response(request, 403, "Account Suspended"), 0.0)
    assert (registration.state, registration.reason) == (State.FAILED, "403 Account Suspended")


def test_stopping_unregisters_a_bound_line_only() -> None:
    registration = new_registration()
    assert registration.stop() is None  # never registered: nothing to remove
    registration = new_registration()
    register(registration, Provider(), now=0.0)
    goodbye = registration.stop()
    assert goodbye is not None and goodbye.headers.get("Expires") == "0"
    assert registration.state is State.UNREGISTERED and registration.deadline is None


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("sip.example.com", ("sip.example.com", 5060)),
        ("sip.example.com:5080", ("sip.example.com", 5080)),
        ("127.0.0.2", ("127.0.0.2", 5060)),
        ("[::1]:5070", ("::1", 5070)),
        ("[::1]", ("::1", 5060)),
    ],
)
def test_server_addresses_are_read_with_their_port(server: str, expected: tuple[str, int]) -> None:
    assert Trunk.parse_server(server) == expected


def test_a_provider_may_send_from_its_server_or_its_alternative_networks() -> None:
    trunk = Trunk(id=1, code="p", host="127.0.0.2", alt_addresses=("127.0.1.0/24", "127.0.0.9"))
    assert trunk.sends_from("127.0.0.2")
    assert trunk.sends_from("127.0.1.77")
    assert trunk.sends_from("127.0.0.9")
    assert not trunk.sends_from("127.0.0.3")
    assert not trunk.sends_from("not-an-address")


def test_a_proxy_challenge_is_answered_with_proxy_authorization() -> None:
    registration = new_registration()
    register(registration, Provider(proxy=True), now=0.0)
    assert registration.state is State.REGISTERED
