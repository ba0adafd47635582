"""What the edge user agent answers, method by method."""

from __future__ import annotations

import pytest

from callbridge.pbx.ua import UserAgent
from callbridge.sip import Request, parse


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
    assert response.headers.get("Supported") == ""  # no option tags yet, but said
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
