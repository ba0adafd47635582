"""Dialogs (RFC 3261 §12): creation on both sides, in-dialog requests, CSeq
ordering, target refresh and loose versus strict routing."""

from __future__ import annotations

import pytest

from callbridge.sip import Request, Response, SipURI, make_response, parse, parse_uri
from callbridge.sip.dialog import Dialog, DialogError, DialogState

CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
ALICE_TAG = "1928301774"
BOB_TAG = "a6c85cf"
VIA = ("Via", "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8")

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bK2d4790.1\r\n"
    b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK4b43c2ff8.1\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 68\r\n"
    b"Record-Route: <sip:p2.example.com;lr>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def response(status: int, reason: str, *, record_route: str = "", contact: str = "") -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n"
        f"{record_route}"
        f"To: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}\r\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        "CSeq: 314159 INVITE\r\n"
        f"{contact or 'Contact: <sip:bob@192.0.2.4>'}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


OK = response(
    200,
    "OK",
    record_route="Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n",
)


def from_bob(method: str, cseq: int, *, contact: str = "", to_tag: str = ALICE_TAG) -> bytes:
    """An in-dialog request Bob sends Alice (on the UAC side, Alice is local)."""
    return (
        f"{method} sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds10\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}\r\n"
        f"To: Alice <sip:alice@atlanta.example.com>;tag={to_tag}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{contact}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def from_alice(method: str, cseq: int, *, contact: str = "") -> bytes:
    """An in-dialog request Alice sends Bob (on the UAS side, Bob is local)."""
    return (
        f"{method} sip:bob@192.0.2.4 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8\r\n"
        "Max-Forwards: 70\r\n"
        f"From: Alice <sip:alice@atlanta.example.com>;tag={ALICE_TAG}\r\n"
        f"To: Bob <sip:bob@biloxi.example.com>;tag={BOB_TAG}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{contact}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def req(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def resp(data: bytes) -> Response:
    message = parse(data)
    assert isinstance(message, Response)
    return message


def uac_dialog(answer: bytes = OK) -> Dialog:
    return Dialog.from_uac(req(INVITE), resp(answer))


def uas_dialog() -> Dialog:
    return Dialog.from_uas(req(INVITE), BOB_TAG, parse_uri("sip:bob@192.0.2.4"))


# --- Creation -------------------------------------------------------------------


def test_uac_dialog_takes_tags_uris_and_the_reversed_record_route() -> None:
    dialog = uac_dialog()
    assert dialog.id == (CALL_ID, ALICE_TAG, BOB_TAG)
    assert str(dialog.local_uri) == "sip:alice@atlanta.example.com"
    assert str(dialog.remote_uri) == "sip:bob@biloxi.example.com"
    assert (dialog.local_seq, dialog.remote_seq) == (314159, None)
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert str(dialog.local_contact) == "sip:alice@pc33.atlanta.example.com"
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.secure is False


def test_uas_dialog_takes_the_record_route_in_order_and_the_remote_cseq() -> None:
    dialog = uas_dialog()
    assert dialog.id == (CALL_ID, BOB_TAG, ALICE_TAG)
    assert str(dialog.local_uri) == "sip:bob@biloxi.example.com"
    assert str(dialog.remote_uri) == "sip:alice@atlanta.example.com"
    assert (dialog.local_seq, dialog.remote_seq) == (None, 314159)
    assert str(dialog.remote_target) == "sip:alice@pc33.atlanta.example.com"
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]


def test_provisional_with_to_tag_creates_an_early_dialog() -> None:
    dialog = uac_dialog(response(180, "Ringing"))
    assert dialog.state is DialogState.EARLY
    assert dialog.route_set == []


def test_sips_request_uri_makes_the_dialog_secure() -> None:
    invite = req(INVITE.replace(b"INVITE sip:bob@", b"INVITE sips:bob@"))
    assert Dialog.from_uas(invite, BOB_TAG, parse_uri("sips:bob@192.0.2.4")).secure


@pytest.mark.parametrize(
    "answer",
    [
        response(100, "Trying"),
        response(486, "Busy Here"),
        response(200, "OK").replace(f";tag={BOB_TAG}".encode(), b""),
        response(200, "OK", contact="Subject: no contact"),
        # The parser reads neither before the TU does: unreadable, they must
        # still be a DialogError the B2BUA acts on, not a ParseError it misses.
        response(200, "OK", contact="Contact: <sip:bob@192.0.2.4"),
        response(200, "OK", record_route="Record-Route: <sip:p2.example.com;lr\r\n"),
    ],
    ids=["100", "486", "no-to-tag", "no-contact", "bad-contact", "bad-record-route"],
)
def test_responses_that_cannot_create_a_dialog_raise_dialog_error(answer: bytes) -> None:
    with pytest.raises(DialogError):
        uac_dialog(answer)


# --- Requests we send ---------------------------------------------------------------


def test_in_dialog_request_increments_cseq_and_routes_loosely() -> None:
    dialog = uac_dialog()
    bye = dialog.create_request("BYE", headers=[VIA])
    assert bye.to_bytes() == (
        b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314160 BYE\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds8\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert dialog.local_seq == 314160
    assert dialog.create_request("INFO").cseq.seq == 314161


def test_ack_reuses_the_cseq_number_of_the_invite_it_acknowledges() -> None:
    dialog = uac_dialog()
    ack = dialog.create_request("ACK")
    assert (ack.cseq.seq, ack.cseq.method, dialog.local_seq) == (314159, "ACK", 314159)
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n")
    assert reinvite.cseq.seq == 314160
    assert reinvite.headers.get("Contact") == "<sip:alice@pc33.atlanta.example.com>"
    assert dialog.create_request("ACK").cseq.seq == 314160


def test_target_refresh_request_keeps_a_contact_the_caller_gives() -> None:
    dialog = uac_dialog()
    update = dialog.create_request("UPDATE", headers=[("Contact", "<sip:alice@192.0.2.99>")])
    assert update.headers.get_all("Contact") == ["<sip:alice@192.0.2.99>"]
    assert "Contact" not in dialog.create_request("BYE").headers


def test_strict_router_gets_the_request_uri_and_the_target_goes_last_in_route() -> None:
    strict_first = "Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;method=INVITE>\r\n"
    dialog = uac_dialog(response(200, "OK", record_route=strict_first))
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:p1.example.com"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4>"]
    # The dialog's own route set keeps the parameter the Request-URI dropped.
    first = dialog.route_set[0].uri
    assert isinstance(first, SipURI) and first.params.get("method") == "INVITE"


def test_uas_first_request_starts_the_local_cseq_at_1() -> None:
    dialog = uas_dialog()
    bye = dialog.create_request("BYE")
    assert bye.cseq.seq == 1 and dialog.local_seq == 1
    assert str(bye.uri) == "sip:alice@pc33.atlanta.example.com"
    assert bye.to.tag == ALICE_TAG and bye.from_.tag == BOB_TAG
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]


def test_in_dialog_request_survives_a_parse_round_trip() -> None:
    dialog = uac_dialog()
    info = dialog.create_request(
        "INFO", headers=[VIA, ("Content-Type", "application/dtmf-relay")], body=b"Signal=5\r\n"
    )
    again = parse(info.to_bytes())
    assert isinstance(again, Request)
    assert (again.method, again.cseq.seq, again.body) == ("INFO", 314160, b"Signal=5\r\n")
    assert (again.from_.tag, again.to.tag, again.call_id) == (ALICE_TAG, BOB_TAG, CALL_ID)


def test_cancel_and_an_ack_without_invite_are_dialog_errors() -> None:
    dialog = uas_dialog()
    with pytest.raises(DialogError):
        dialog.create_request("ACK")
    with pytest.raises(DialogError):
        dialog.create_request("CANCEL")


# --- Requests we receive ----------------------------------------------------------


def test_lower_remote_cseq_is_rejected_with_500() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(req(from_alice("INFO", 314160))) is None
    assert dialog.remote_seq == 314160
    rejection = dialog.receive_request(req(from_alice("INFO", 314158)))
    assert rejection is not None and rejection.status == 500
    assert rejection.to.tag == BOB_TAG
    assert dialog.remote_seq == 314160


def test_ack_with_the_invite_cseq_is_not_out_of_order() -> None:
    dialog = uas_dialog()
    assert dialog.receive_request(req(from_alice("INFO", 314160))) is None
    assert dialog.receive_request(req(from_alice("ACK", 314159))) is None
    assert dialog.remote_seq == 314160


def test_first_request_from_the_remote_side_sets_the_empty_remote_cseq() -> None:
    dialog = uac_dialog()
    assert dialog.receive_request(req(from_bob("INFO", 5))) is None
    assert dialog.remote_seq == 5


def test_request_of_another_dialog_gets_481() -> None:
    dialog = uac_dialog()
    rejection = dialog.receive_request(req(from_bob("BYE", 6, to_tag="not-ours")))
    assert rejection is not None and rejection.status == 481


def test_reinvite_and_update_refresh_the_remote_target_but_info_does_not() -> None:
    dialog = uac_dialog()
    dialog.receive_request(req(from_bob("INFO", 1, contact="Contact: <sip:bob@192.0.2.7>\r\n")))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    dialog.receive_request(req(from_bob("INVITE", 2, contact="Contact: <sip:bob@192.0.2.8>\r\n")))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.8"
    dialog.receive_request(req(from_bob("UPDATE", 3, contact="Contact: <sip:bob@192.0.2.9>\r\n")))
    assert str(dialog.remote_target) == "sip:bob@192.0.2.9"


# --- Responses we receive -----------------------------------------------------------


def test_2xx_to_a_reinvite_refreshes_the_remote_target() -> None:
    dialog = uac_dialog()
    reinvite = dialog.create_request("INVITE", headers=[VIA])
    answer = make_response(reinvite, 200, headers=[("Contact", "<sip:bob@198.51.100.1>")])
    dialog.receive_response(answer)
    assert str(dialog.remote_target) == "sip:bob@198.51.100.1"
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:bob@198.51.100.1"


def test_2xx_confirms_an_early_dialog_and_fixes_its_route_set() -> None:
    dialog = uac_dialog(response(180, "Ringing"))
    dialog.receive_response(resp(OK))
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]


@pytest.mark.parametrize(
    "header",
    [("Contact", "<sip:bob@198.51.100.1"), ("Record-Route", '"p2 <sip:p2.example.com;lr>')],
)
def test_an_unreadable_2xx_is_a_dialog_error_that_leaves_the_dialog_as_it_was(
    header: tuple[str, str],
) -> None:
    dialog = uac_dialog(response(180, "Ringing"))
    answer = parse(
        OK.replace(b"Contact: <sip:bob@192.0.2.4>", f"{header[0]}: {header[1]}".encode())
    )
    assert isinstance(answer, Response)
    with pytest.raises(DialogError):
        dialog.receive_response(answer)
    if header[0] == "Record-Route":
        assert dialog.state is DialogState.EARLY
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"


def test_response_of_another_dialog_is_a_dialog_error() -> None:
    dialog = uac_dialog()
    other = response(200, "OK").replace(f"tag={BOB_TAG}".encode(), b"tag=other-fork")
    with pytest.raises(DialogError):
        dialog.receive_response(resp(other))
