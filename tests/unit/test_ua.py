"""What the edge user agent answers, method by method."""

from __future__ import annotations

import pytest

from callbridge.pbx.auth import DROP, Authenticator
from callbridge.pbx.guard import FloodGuard, GuardPolicy
from callbridge.pbx.lines import Line, Lines
from callbridge.pbx.registrar import MemoryLocation, Registrar
from callbridge.pbx.ua import UserAgent
from callbridge.sip import Request, Response, parse
from callbridge.sip.digest import (
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_challenge,
    select_challenge,
)


def request(method: str, uri: str = "sip:100@127.0.0.1", extra: str = "") -> Request:
    message = parse(
        (
            f"{method} {uri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-ua-1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:alice@127.0.0.2>;tag=a1\r\n"
            "To: <sip:100@127.0.0.1>\r\n"
            "Call-ID: ua-test@127.0.0.2\r\n"
            f"CSeq: 7 {method}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("method", "status"),
    [
        ("OPTIONS", 200),
        ("INVITE", 501),
        ("REGISTER", 501),
        ("SUBSCRIBE", 501),
        ("MESSAGE", 501),
        ("FROBNICATE", 501),
        ("BYE", 481),
        ("INFO", 481),
        ("UPDATE", 481),
        ("PRACK", 481),
        ("NOTIFY", 481),
        ("CANCEL", 481),
    ],
)
def test_each_method_gets_the_status_rfc_3261_asks_for(method: str, status: int) -> None:
    response = UserAgent().answer(request(method))
    assert response is not None
    assert response.status == status
    assert response.cseq.method == method
    assert response.call_id == "ua-test@127.0.0.2"
    assert response.to.tag  # every final answer from a UAS carries a To tag


def test_ack_is_never_answered() -> None:
    assert UserAgent().answer(request("ACK")) is None


def test_options_advertises_allow_accept_and_names_the_server() -> None:
    response = UserAgent(user_agent="callbridge-test").answer(request("OPTIONS"))
    assert response is not None
    allow = {m.strip() for m in response.headers.get_all("Allow")}
    assert {"OPTIONS", "ACK", "CANCEL", "BYE"} <= allow
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") == "path"  # RFC 3327, for the registrar
    assert response.headers.get("Server") == "callbridge-test"


def test_not_implemented_lists_what_is_allowed() -> None:
    response = UserAgent().answer(request("INVITE"))
    assert response is not None
    assert "OPTIONS" in (response.headers.get("Allow") or "")


def test_unknown_uri_scheme_gets_416() -> None:
    response = UserAgent().answer(request("OPTIONS", uri="mailto:someone@example.com"))
    assert response is not None
    assert response.status == 416


def test_required_extension_we_lack_gets_420_naming_it() -> None:
    response = UserAgent().answer(request("OPTIONS", extra="Require: 100rel, foo\r\n"))
    assert response is not None
    assert response.status == 420
    assert response.headers.get_all("Unsupported") == ["100rel", "foo"]


def test_cancel_ignores_require() -> None:
    # RFC 3261 §8.2.2.3: Require is not checked for CANCEL (nor ACK).
    response = UserAgent().answer(request("CANCEL", extra="Require: foo\r\n"))
    assert response is not None
    assert response.status == 481


# --- REGISTER through digest and the registrar -------------------------------

REALM = "callbridge"


def line(number: str, username: str, password: str, max_devices: int = 1) -> Line:
    ha1 = {alg: compute_ha1(username, REALM, password, alg) for alg in ("MD5", "SHA-256")}
    return Line(number=number, username=username, ha1=ha1, max_devices=max_devices)


def pbx(max_failures: int = 10) -> UserAgent:
    return UserAgent(
        lines=Lines.of([line("101", "alice", "alice-secret"), line("102", "bob", "bob-secret")]),
        authenticator=Authenticator(
            DigestServer(REALM),
            FloodGuard(GuardPolicy(max_failures=max_failures)),
            server_name="callbridge",
        ),
        registrar=Registrar(MemoryLocation()),
    )


def _register(to_user: str, auth: str, cseq: int) -> Request:
    message = parse(
        (
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK-r{cseq}\r\n"
            f"From: <sip:{to_user}@127.0.0.1>;tag=f\r\n"
            f"To: <sip:{to_user}@127.0.0.1>\r\n"
            "Call-ID: reg@127.0.0.2\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{to_user}@127.0.0.2:5062>;expires=600\r\n"
            f"{auth}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def authorized(challenge: Response, username: str, password: str) -> str:
    chosen = select_challenge(
        [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    )
    creds = answer_challenge(
        chosen, method="REGISTER", uri="sip:127.0.0.1", username=username, password=password
    )
    return f"Authorization: {creds.to_header_value()}\r\n"


def test_register_is_challenged_then_bound_to_the_line() -> None:
    ua = pbx()
    challenge = ua.answer(_register("101", "", 1), source="127.0.0.2", now=0.0)
    assert isinstance(challenge, Response) and challenge.status == 401
    auth = authorized(challenge, "alice", "alice-secret")
    ok = ua.answer(_register("101", auth, 2), source="127.0.0.2", peer="flow-1", now=1.0)
    assert isinstance(ok, Response) and ok.status == 200
    assert [str(c.uri) for c in ok.contacts] == ["sip:101@127.0.0.2:5062"]
    assert ua.registrar is not None
    [binding] = ua.registrar.location.bindings("101", now=2.0)
    assert binding.source == "flow-1"


def test_register_for_another_line_is_forbidden() -> None:
    ua = pbx()
    challenge = ua.answer(_register("102", "", 1), source="127.0.0.2", now=0.0)
    assert isinstance(challenge, Response)
    auth = authorized(challenge, "alice", "alice-secret")
    refused = ua.answer(_register("102", auth, 2), source="127.0.0.2", now=1.0)
    assert isinstance(refused, Response) and refused.status == 403


def test_register_with_a_wrong_password_is_challenged_again_then_dropped() -> None:
    ua = pbx(max_failures=1)
    challenge = ua.answer(_register("101", "", 1), source="127.0.0.66", now=0.0)
    assert isinstance(challenge, Response)
    auth = authorized(challenge, "alice", "guess")
    first = ua.answer(_register("101", auth, 2), source="127.0.0.66", now=1.0)
    assert isinstance(first, Response) and first.status == 401
    assert ua.answer(_register("101", auth, 3), source="127.0.0.66", now=2.0) is DROP


def test_options_allows_register_once_the_registrar_is_there() -> None:
    response = pbx().answer(request("OPTIONS"))
    assert isinstance(response, Response)
    assert "REGISTER" in (response.headers.get("Allow") or "")


@pytest.mark.parametrize("call_id", ["c" * 256, "bad\udcffbyte", "nul\x00id", "two words"])
@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "REGISTER"])
def test_a_call_id_the_store_cannot_keep_is_refused_400(method: str, call_id: str) -> None:
    hostile = request(method)
    hostile.headers.set("Call-ID", call_id)
    response = UserAgent().answer(hostile)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (400, "Bad Call-ID")
