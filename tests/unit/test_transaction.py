"""Transactions (RFC 3261 §17, RFC 6026): every timer path on a fake clock,
retransmissions, ACK generation and absorption, matching in the layer."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge.sip import Request, Response, make_response, parse
from callbridge.sip.transaction import (
    CLIENT_INVITE_TRANSITIONS,
    CLIENT_NETWORK_INPUTS,
    CLIENT_NON_INVITE_TRANSITIONS,
    MAGIC_COOKIE,
    SERVER_INVITE_NETWORK_INPUTS,
    SERVER_INVITE_TRANSITIONS,
    SERVER_NON_INVITE_NETWORK_INPUTS,
    SERVER_NON_INVITE_TRANSITIONS,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Deliver,
    Effect,
    Input,
    NewRequest,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    Timers,
    Transaction,
    TransactionError,
    TransactionLayer,
    Transitions,
    TransportFailed,
    make_ack,
    make_cancel,
    new_branch,
    new_call_id,
    new_tag,
)

PEER = ("192.0.2.10", 5060)
BRANCH = "z9hG4bK776asdhds"
SENT_BY = "pc33.atlanta.example.com:5060"
CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"
FROM = "Alice <sip:alice@atlanta.example.com>;tag=1928301774"
TO = "Bob <sip:bob@biloxi.example.com>"
TO_TAG = "a6c85cf"


def request_bytes(
    method: str = "INVITE",
    *,
    branch: str | None = BRANCH,
    sent_by: str = SENT_BY,
    transport: str = "UDP",
    cseq: int = 314159,
    to_tag: str | None = None,
    extra: str = "",
) -> bytes:
    via = f"SIP/2.0/{transport} {sent_by}" + (f";branch={branch}" if branch else "")
    to = TO + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "Route: <sip:p2.example.com;lr>\r\n"
        f"To: {to}\r\n"
        f"From: {FROM}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def response_bytes(
    status: int,
    reason: str,
    *,
    method: str = "INVITE",
    branch: str = BRANCH,
    to_tag: str | None = TO_TAG,
    cseq: int = 314159,
) -> bytes:
    to = TO + (f";tag={to_tag}" if to_tag else "")
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: SIP/2.0/UDP {SENT_BY};branch={branch};received=192.0.2.101\r\n"
        f"To: {to}\r\n"
        f"From: {FROM}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:bob@192.0.2.4>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def req(method: str = "INVITE", **kwargs: Any) -> Request:
    message = parse(request_bytes(method, **kwargs))
    assert isinstance(message, Request)
    return message


def resp(status: int, reason: str, **kwargs: Any) -> Response:
    message = parse(response_bytes(status, reason, **kwargs))
    assert isinstance(message, Response)
    return message


def kinds(effects: list[Effect]) -> list[type]:
    return [type(effect) for effect in effects]


def sent(effects: list[Effect]) -> list[Request | Response]:
    return [effect.message for effect in effects if isinstance(effect, Send)]


def run_timers(machine: Transaction | TransactionLayer) -> list[tuple[float, list[Effect]]]:
    """Fire every timer at its deadline until none is left."""
    fired = []
    while (deadline := machine.next_deadline()) is not None:
        if isinstance(machine, TransactionLayer):
            fired.append((deadline, machine.handle_timers(deadline)))
        else:
            fired.append((deadline, machine.handle_timer(deadline)))
    return fired


def send_times(fired: list[tuple[float, list[Effect]]]) -> list[float]:
    return [at for at, effects in fired if any(isinstance(e, Send) for e in effects)]


# --- Timers and helpers -----------------------------------------------------


def test_timers_derive_from_t1_t2_t4() -> None:
    timers = Timers()
    assert (timers.A, timers.B, timers.D, timers.E, timers.F) == (0.5, 32.0, 32.0, 0.5, 32.0)
    assert (timers.G, timers.H, timers.I, timers.J, timers.K) == (0.5, 32.0, 5.0, 32.0, 5.0)
    assert (timers.L, timers.M) == (32.0, 32.0)
    slow = Timers(T1=1.0, T4=10.0)
    assert (slow.B, slow.D, slow.H, slow.I, slow.K) == (64.0, 64.0, 64.0, 10.0, 10.0)


def test_new_branch_tag_and_call_id_are_random_tokens() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(b.startswith(MAGIC_COOKIE) for b in branches)
    assert new_tag() != new_tag()
    assert new_call_id() != new_call_id()
    assert new_tag().isalnum() and new_call_id().isalnum()


@pytest.mark.parametrize(
    ("transitions", "network_inputs"),
    [
        (CLIENT_INVITE_TRANSITIONS, CLIENT_NETWORK_INPUTS),
        (CLIENT_NON_INVITE_TRANSITIONS, CLIENT_NETWORK_INPUTS),
        (SERVER_INVITE_TRANSITIONS, SERVER_INVITE_NETWORK_INPUTS),
        (SERVER_NON_INVITE_TRANSITIONS, SERVER_NON_INVITE_NETWORK_INPUTS),
    ],
)
def test_every_live_state_takes_every_input_a_peer_can_cause(
    transitions: Transitions[Transaction], network_inputs: frozenset[Input]
) -> None:
    live = {state for state, _ in transitions} - {State.IDLE}
    missing = {
        (state, event)
        for state in live
        for event in network_inputs
        if (state, event) not in transitions
    }
    assert not missing


# --- Client INVITE ------------------------------------------------------------


def test_client_invite_sends_the_request_on_start() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    effects = txn.start(0.0)
    assert effects == [Send(txn.request, PEER)]
    assert txn.state is State.CALLING
    assert txn.next_deadline() == 0.5


def test_timer_a_doubles_until_timer_b_times_out() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    fired = run_timers(txn)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(sent(effects) == [txn.request] for _, effects in fired[:-1])
    assert fired[-1] == (32.0, [TimedOut(txn), Terminated(txn)])
    assert txn.state is State.TERMINATED


def test_client_invite_on_reliable_transport_never_retransmits() -> None:
    txn = ClientInviteTransaction(req(transport="TCP"), PEER, reliable=True)
    txn.start(0.0)
    assert run_timers(txn) == [(32.0, [TimedOut(txn), Terminated(txn)])]


def test_provisional_response_stops_timers_a_and_b_and_goes_up() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    ringing = resp(180, "Ringing")
    assert txn.receive(ringing, 0.2) == [Deliver(ringing, txn)]
    assert txn.state is State.PROCEEDING
    assert txn.next_deadline() is None


def test_non_2xx_final_response_generates_the_ack_inside_the_transaction() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    busy = resp(486, "Busy Here")
    effects = txn.receive(busy, 0.3)
    assert kinds(effects) == [Send, Deliver]
    assert effects[1] == Deliver(busy, txn)
    ack = sent(effects)[0]
    # §17.1.1.3: the INVITE's Request-URI, Via (not the response's, which
    # gained received=), Route, From, Call-ID, CSeq number; the response's To.
    assert ack.to_bytes() == (
        b"ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 ACK\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert txn.state is State.COMPLETED


def test_final_response_in_proceeding_is_acked_too() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    txn.receive(resp(180, "Ringing"), 0.1)
    effects = txn.receive(resp(603, "Decline"), 5.0)
    assert kinds(effects) == [Send, Deliver]
    assert isinstance(sent(effects)[0], Request) and txn.ack is sent(effects)[0]


def test_retransmitted_final_response_retriggers_the_same_ack_without_going_up() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    first = txn.receive(resp(486, "Busy Here"), 0.3)
    again = txn.receive(resp(486, "Busy Here"), 0.8)
    assert again == [Send(sent(first)[0], PEER)]


def test_timer_d_ends_completed_client_invite_after_32_seconds() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    txn.receive(resp(486, "Busy Here"), 1.0)
    assert run_timers(txn) == [(33.0, [Terminated(txn)])]


def test_timer_d_is_zero_on_reliable_transport() -> None:
    txn = ClientInviteTransaction(req(transport="TCP"), PEER, reliable=True)
    txn.start(0.0)
    busy = resp(486, "Busy Here")
    effects = txn.receive(busy, 1.0)
    assert kinds(effects) == [Send, Deliver, Terminated]
    assert txn.next_deadline() is None


def test_2xx_goes_up_and_accepted_passes_more_2xx_until_timer_m() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    ok = resp(200, "OK")
    assert txn.receive(ok, 0.4) == [Deliver(ok, txn)]
    assert txn.state is State.ACCEPTED
    # No ACK from the transaction: the TU acknowledges a 2xx (§13.2.2.4).
    other_fork = resp(200, "OK", to_tag="fork2")
    assert txn.receive(other_fork, 1.0) == [Deliver(other_fork, txn)]
    assert txn.receive(resp(180, "Ringing"), 1.1) == []
    assert run_timers(txn) == [(32.4, [Terminated(txn)])]


def test_2xx_after_a_non_2xx_final_still_goes_up() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    txn.receive(resp(487, "Request Terminated"), 0.3)
    ok = resp(200, "OK", to_tag="late-fork")
    assert txn.receive(ok, 0.4) == [Deliver(ok, txn)]


def test_response_before_start_is_a_transaction_error() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    with pytest.raises(TransactionError) as caught:
        txn.receive(resp(200, "OK"), 0.0)
    assert (caught.value.state, caught.value.event) == (State.IDLE, Input.RECV_2XX)


def test_response_of_another_method_is_a_transaction_error() -> None:
    txn = ClientInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    with pytest.raises(TransactionError):
        txn.receive(resp(200, "OK", method="CANCEL"), 0.1)


# --- Client non-INVITE -----------------------------------------------------------


def test_timer_e_doubles_capped_at_t2_then_timer_f_times_out() -> None:
    txn = ClientNonInviteTransaction(req("OPTIONS"), PEER, reliable=False)
    txn.start(0.0)
    fired = run_timers(txn)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (32.0, [TimedOut(txn), Terminated(txn)])


def test_timer_e_retransmits_every_t2_in_proceeding() -> None:
    txn = ClientNonInviteTransaction(req("BYE"), PEER, reliable=False)
    txn.start(0.0)
    trying = resp(100, "Trying", method="BYE")
    assert txn.receive(trying, 0.2) == [Deliver(trying, txn)]
    assert txn.state is State.PROCEEDING
    fired = run_timers(txn)
    assert send_times(fired) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert fired[-1] == (32.0, [TimedOut(txn), Terminated(txn)])


def test_timer_k_absorbs_final_retransmissions_then_ends() -> None:
    txn = ClientNonInviteTransaction(req("BYE"), PEER, reliable=False)
    txn.start(0.0)
    ok = resp(200, "OK", method="BYE")
    assert txn.receive(ok, 1.0) == [Deliver(ok, txn)]
    assert txn.state is State.COMPLETED
    assert txn.receive(resp(200, "OK", method="BYE"), 2.0) == []
    assert run_timers(txn) == [(6.0, [Terminated(txn)])]


def test_client_non_invite_on_reliable_transport_ends_with_the_final_response() -> None:
    txn = ClientNonInviteTransaction(req("BYE", transport="TCP"), PEER, reliable=True)
    txn.start(0.0)
    assert txn.next_deadline() == 32.0  # Timer F only: no Timer E on TCP
    ok = resp(200, "OK", method="BYE")
    assert txn.receive(ok, 1.0) == [Deliver(ok, txn), Terminated(txn)]


# --- Server INVITE ------------------------------------------------------------


def test_server_invite_sends_100_trying_when_the_tu_is_silent_for_200_ms() -> None:
    invite = req(extra="Timestamp: 54\r\n")
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    assert txn.start(0.0) == []
    assert txn.next_deadline() == 0.2
    [trying] = sent(txn.handle_timer(0.2))
    assert isinstance(trying, Response)
    assert (trying.status, trying.to.tag, trying.headers.get("Timestamp")) == (100, None, "54")
    assert txn.next_deadline() is None


def test_tu_response_within_200_ms_suppresses_the_100_trying() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    ringing = make_response(invite, 180, to_tag=TO_TAG)
    assert txn.respond(ringing, 0.05) == [Send(ringing, PEER)]
    assert txn.next_deadline() is None


def test_retransmitted_invite_resends_the_last_provisional() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    ringing = make_response(invite, 180, to_tag=TO_TAG)
    txn.respond(ringing, 0.1)
    assert txn.receive(req(), 0.5) == [Send(ringing, PEER)]


def test_retransmitted_invite_before_any_response_gets_100_at_once() -> None:
    txn = ServerInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    [trying] = sent(txn.receive(req(), 0.1))
    assert isinstance(trying, Response) and trying.status == 100
    assert txn.next_deadline() is None  # the 200 ms timer is spent


def test_timer_g_retransmits_the_final_response_until_the_ack() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    busy = make_response(invite, 486, to_tag=TO_TAG)
    txn.respond(busy, 0.0)
    for expected in (0.5, 1.5, 3.5, 7.5):
        assert txn.next_deadline() == expected
        assert txn.handle_timer(expected) == [Send(busy, PEER)]
    assert txn.receive(req("ACK", to_tag=TO_TAG), 8.0) == []
    assert txn.state is State.CONFIRMED
    assert run_timers(txn) == [(13.0, [Terminated(txn)])]  # Timer I = T4


def test_timer_g_backs_off_to_t2_and_timer_h_gives_up_without_ack() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    txn.respond(make_response(invite, 486, to_tag=TO_TAG), 0.0)
    fired = run_timers(txn)
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert fired[-1] == (32.0, [TimedOut(txn), Terminated(txn)])


def test_retransmitted_invite_in_completed_resends_the_final_response() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    busy = make_response(invite, 486, to_tag=TO_TAG)
    txn.respond(busy, 0.0)
    assert txn.receive(req(), 0.2) == [Send(busy, PEER)]


def test_acks_after_the_first_are_absorbed_in_confirmed() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    txn.respond(make_response(invite, 404, to_tag=TO_TAG), 0.0)
    txn.receive(req("ACK", to_tag=TO_TAG), 0.1)
    assert txn.receive(req("ACK", to_tag=TO_TAG), 0.6) == []
    assert txn.receive(req(), 0.7) == []


def test_server_invite_on_reliable_transport_skips_timer_g_and_timer_i() -> None:
    invite = req(transport="TCP")
    txn = ServerInviteTransaction(invite, PEER, reliable=True)
    txn.start(0.0)
    txn.respond(make_response(invite, 486, to_tag=TO_TAG), 0.1)
    assert txn.next_deadline() == pytest.approx(32.1)  # Timer H only
    effects = txn.receive(req("ACK", transport="TCP", to_tag=TO_TAG), 0.2)
    assert effects == [Terminated(txn)]


def test_server_invite_2xx_enters_accepted_until_timer_l() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    ok = make_response(invite, 200, to_tag=TO_TAG)
    assert txn.respond(ok, 0.1) == [Send(ok, PEER)]
    assert txn.state is State.ACCEPTED
    # RFC 6026: INVITE retransmissions are absorbed, not passed up again ...
    assert txn.receive(req(), 0.5) == []
    # ... and the TU's own 2xx retransmissions go out through the transaction.
    assert txn.respond(ok, 0.6) == [Send(ok, PEER)]
    assert run_timers(txn) == [(32.1, [Terminated(txn)])]


def test_ack_reusing_the_invite_branch_in_accepted_goes_up() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    txn.respond(make_response(invite, 200, to_tag=TO_TAG), 0.1)
    ack = req("ACK", to_tag=TO_TAG)
    assert txn.receive(ack, 0.2) == [Deliver(ack, txn)]


def test_second_final_response_is_a_transaction_error() -> None:
    invite = req()
    txn = ServerInviteTransaction(invite, PEER, reliable=False)
    txn.start(0.0)
    txn.respond(make_response(invite, 486, to_tag=TO_TAG), 0.1)
    with pytest.raises(TransactionError) as caught:
        txn.respond(make_response(invite, 200, to_tag=TO_TAG), 0.2)
    assert (caught.value.state, caught.value.event) == (State.COMPLETED, Input.SEND_2XX)


def test_response_with_another_cseq_is_a_transaction_error() -> None:
    txn = ServerInviteTransaction(req(), PEER, reliable=False)
    txn.start(0.0)
    with pytest.raises(TransactionError):
        txn.respond(make_response(req(cseq=1), 180), 0.1)


# --- Server non-INVITE ----------------------------------------------------------


def test_server_non_invite_absorbs_retransmissions_while_trying() -> None:
    txn = ServerNonInviteTransaction(req("BYE"), PEER, reliable=False)
    assert txn.start(0.0) == []
    assert txn.state is State.TRYING
    assert txn.receive(req("BYE"), 0.5) == []


def test_retransmitted_request_gets_the_last_response_again() -> None:
    bye = req("BYE")
    txn = ServerNonInviteTransaction(bye, PEER, reliable=False)
    txn.start(0.0)
    trying = make_response(bye, 100)
    txn.respond(trying, 0.1)
    assert txn.state is State.PROCEEDING
    assert txn.receive(req("BYE"), 0.5) == [Send(trying, PEER)]
    ok = make_response(bye, 200)
    txn.respond(ok, 0.6)
    assert txn.state is State.COMPLETED
    assert txn.receive(req("BYE"), 1.0) == [Send(ok, PEER)]


def test_timer_j_ends_completed_server_non_invite() -> None:
    bye = req("BYE")
    txn = ServerNonInviteTransaction(bye, PEER, reliable=False)
    txn.start(0.0)
    txn.respond(make_response(bye, 200), 1.0)
    assert run_timers(txn) == [(33.0, [Terminated(txn)])]


def test_timer_j_is_zero_on_reliable_transport() -> None:
    bye = req("BYE", transport="TCP")
    txn = ServerNonInviteTransaction(bye, PEER, reliable=True)
    txn.start(0.0)
    ok = make_response(bye, 200)
    assert txn.respond(ok, 1.0) == [Send(ok, PEER), Terminated(txn)]


# --- ACK and CANCEL builders --------------------------------------------------


def test_make_cancel_copies_the_request_line_and_branch() -> None:
    cancel = make_cancel(req())
    assert cancel.to_bytes() == (
        b"CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        b"CSeq: 314159 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_make_ack_survives_a_parse_round_trip() -> None:
    ack = make_ack(req(), resp(486, "Busy Here"))
    again = parse(ack.to_bytes())
    assert isinstance(again, Request)
    assert (again.method, again.cseq.seq, again.to.tag) == ("ACK", 314159, TO_TAG)


# --- The layer ------------------------------------------------------------------


def test_layer_turns_a_new_request_into_new_request_with_its_transaction() -> None:
    layer = TransactionLayer()
    invite = req()
    [new] = layer.receive(invite, PEER, 0.0)
    assert isinstance(new, NewRequest) and new.request is invite
    assert isinstance(new.transaction, ServerInviteTransaction)
    assert new.transaction.peer == PEER
    assert len(layer) == 1


def test_layer_answers_retransmitted_requests_from_the_transaction() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req("OPTIONS"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    ok = make_response(new.request, 200, to_tag=TO_TAG)
    assert layer.respond(new.transaction, ok, 0.1) == [Send(ok, PEER)]
    [again] = layer.receive(req("OPTIONS"), PEER, 0.6)
    assert isinstance(again, Send)
    assert (again.message.to_bytes(), again.peer) == (ok.to_bytes(), PEER)
    assert len(layer) == 1


def test_completed_non_invite_server_transaction_absorbs_until_timer_j_then_is_gone() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req("OPTIONS"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    ok = make_response(new.request, 200, to_tag=TO_TAG)
    layer.respond(new.transaction, ok, 1.0)
    assert layer.next_deadline() == 1.0 + 32.0  # Timer J = 64*T1 on UDP
    assert layer.handle_timers(32.9) == []
    assert [type(e) for e in layer.receive(req("OPTIONS"), PEER, 32.9)] == [Send]
    assert layer.handle_timers(33.0) == []
    assert len(layer) == 0
    assert layer.next_deadline() is None
    # After Timer J the same request is new again: the TU sees it.
    assert [type(e) for e in layer.receive(req("OPTIONS"), PEER, 33.1)] == [NewRequest]


def test_layer_knows_a_request_while_its_transaction_lives_or_is_remembered() -> None:
    # What a stateless 503 (overload) must not pre-empt: a retransmission.
    layer = TransactionLayer()
    assert not layer.knows(req("OPTIONS"))
    [new] = layer.receive(req("OPTIONS"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    assert layer.knows(req("OPTIONS"))
    assert not layer.knows(req("OPTIONS", branch="z9hG4bKother"))
    layer.respond(new.transaction, make_response(new.request, 200, to_tag=TO_TAG), 1.0)
    assert layer.knows(req("OPTIONS"))  # Completed: remembered until Timer J
    layer.handle_timers(33.0)
    assert not layer.knows(req("OPTIONS"))


def test_layer_reads_reliability_from_the_top_via_by_default() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(transport="TCP"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    layer.respond(new.transaction, make_response(new.request, 486, to_tag=TO_TAG), 0.0)
    assert layer.next_deadline() == 32.0  # Timer H, no Timer G


def test_layer_absorbs_the_ack_for_a_non_2xx() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(), PEER, 0.0)
    assert isinstance(new, NewRequest)
    layer.respond(new.transaction, make_response(new.request, 486, to_tag=TO_TAG), 0.1)
    assert layer.receive(req("ACK", to_tag=TO_TAG), PEER, 0.2) == []
    assert new.transaction.state is State.CONFIRMED


def test_layer_passes_the_ack_for_a_2xx_up_as_stray_ack() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(), PEER, 0.0)
    assert isinstance(new, NewRequest)
    layer.respond(new.transaction, make_response(new.request, 200, to_tag=TO_TAG), 0.1)
    ack = req("ACK", branch="z9hG4bKnew-for-ack", to_tag=TO_TAG)
    assert layer.receive(ack, PEER, 0.2) == [StrayAck(ack, PEER)]


def test_layer_matches_cancel_to_its_own_transaction_and_finds_the_invite() -> None:
    layer = TransactionLayer()
    [invite_new] = layer.receive(req(), PEER, 0.0)
    cancel = req("CANCEL")
    [cancel_new] = layer.receive(cancel, PEER, 0.1)
    assert isinstance(invite_new, NewRequest) and isinstance(cancel_new, NewRequest)
    assert isinstance(cancel_new.transaction, ServerNonInviteTransaction)
    assert layer.find_invite_for_cancel(cancel) is invite_new.transaction
    assert layer.find_invite_for_cancel(req("CANCEL", branch="z9hG4bKother")) is None
    cancelled = make_response(cancel, 200, to_tag=TO_TAG)
    terminated = make_response(invite_new.request, 487, to_tag=TO_TAG)
    assert layer.respond(cancel_new.transaction, cancelled, 0.1) == [Send(cancelled, PEER)]
    assert layer.respond(invite_new.transaction, terminated, 0.1) == [Send(terminated, PEER)]


def test_layer_keeps_same_branch_from_different_sent_by_apart() -> None:
    layer = TransactionLayer()
    first = layer.receive(req(), PEER, 0.0)
    second = layer.receive(req(sent_by="other.example.com"), PEER, 0.0)
    assert kinds(first) == kinds(second) == [NewRequest]
    assert len(layer) == 2


def test_layer_matches_responses_by_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite_txn, _ = layer.send_request(req(), PEER, False, 0.0)
    cancel_txn, effects = layer.send_request(make_cancel(req()), PEER, False, 1.0)
    assert kinds(effects) == [Send]
    cancel_ok = resp(200, "OK", method="CANCEL")
    assert layer.receive(cancel_ok, PEER, 1.1) == [Deliver(cancel_ok, cancel_txn)]
    assert invite_txn.state is State.CALLING
    terminated = resp(487, "Request Terminated")
    # Completed now waits out Timer D as a record: over for the TU.
    assert kinds(layer.receive(terminated, PEER, 1.2)) == [Send, Deliver, Terminated]
    assert invite_txn.state is State.COMPLETED


def test_layer_reports_a_2xx_without_transaction_as_stray_response() -> None:
    layer = TransactionLayer()
    unknown = resp(200, "OK", branch="z9hG4bKnobody")
    assert layer.receive(unknown, PEER, 0.0) == [StrayResponse(unknown, PEER)]


def test_layer_keeps_an_accepted_client_invite_as_a_record_and_passes_2xx_up_as_stray() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(req(), PEER, False, 0.0)
    ok = resp(200, "OK")
    # The first 2xx goes to the transaction's TU; the transaction is then
    # over for it, and Accepted lives on as a record until Timer M.
    assert layer.receive(ok, PEER, 0.1) == [Deliver(ok, txn), Terminated(txn)]
    assert len(layer) == 1
    # A retransmitted 2xx (or one of another fork) is the TU core's to ACK.
    assert layer.receive(ok, PEER, 0.6) == [StrayResponse(ok, PEER)]
    # RFC 6026 §7.2: Accepted absorbs anything else.
    assert layer.receive(resp(180, "Ringing"), PEER, 0.7) == []
    assert layer.receive(resp(486, "Busy Here"), PEER, 0.8) == []
    assert layer.next_deadline() == pytest.approx(32.1)
    assert layer.handle_timers(32.1) == []
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.receive(ok, PEER, 40.0) == [StrayResponse(ok, PEER)]
    busy = resp(486, "Busy Here")
    assert layer.receive(busy, PEER, 40.0) == [StrayResponse(busy, PEER)]


def test_layer_keeps_a_completed_client_invite_as_a_record_that_acks_again() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(req(), PEER, False, 0.0)
    busy = resp(486, "Busy Here")
    send, deliver, terminated = layer.receive(busy, PEER, 0.1)
    assert isinstance(send, Send) and send.message.method == "ACK"  # type: ignore[union-attr]
    assert (deliver, terminated) == (Deliver(busy, txn), Terminated(txn))
    # §17.1.1.2: a retransmitted final response gets the same ACK again.
    [again] = layer.receive(busy, PEER, 1.0)
    assert isinstance(again, Send) and again.peer == PEER
    assert again.message.to_bytes() == send.message.to_bytes()
    assert layer.receive(resp(180, "Ringing"), PEER, 1.1) == []
    late = resp(200, "OK")  # a downstream fork's 2xx: the TU ACKs and BYEs it
    assert layer.receive(late, PEER, 1.2) == [StrayResponse(late, PEER)]
    assert layer.next_deadline() == pytest.approx(32.1)  # Timer D
    layer.handle_timers(32.1)
    assert len(layer) == 0


def test_layer_keeps_an_accepted_server_invite_as_a_record() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(), PEER, 0.0)
    assert isinstance(new, NewRequest)
    ok = make_response(new.request, 200, to_tag=TO_TAG)
    assert layer.respond(new.transaction, ok, 0.1) == [Send(ok, PEER)]
    assert len(layer) == 1
    # The TU retransmits its 2xx itself until the ACK (§13.3.1.4).
    assert layer.respond(new.transaction, ok, 0.6) == [Send(ok, PEER)]
    assert layer.receive(req(), PEER, 0.7) == []  # a retransmitted INVITE is absorbed
    same_branch_ack = req("ACK", to_tag=TO_TAG)
    assert layer.receive(same_branch_ack, PEER, 0.8) == [StrayAck(same_branch_ack, PEER)]
    with pytest.raises(TransactionError):  # only a 2xx may follow a 2xx
        layer.respond(new.transaction, make_response(new.request, 500, to_tag=TO_TAG), 0.9)
    layer.handle_timers(32.1)  # Timer L
    assert len(layer) == 0
    with pytest.raises(TransactionError):
        layer.respond(new.transaction, ok, 32.2)
    assert kinds(layer.receive(req(), PEER, 32.3)) == [NewRequest]


def test_layer_matches_rfc_2543_requests_without_branch() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(branch=None), PEER, 0.0)
    assert isinstance(new, NewRequest)
    ringing = make_response(new.request, 180, to_tag=TO_TAG)
    layer.respond(new.transaction, ringing, 0.05)
    assert layer.receive(req(branch=None), PEER, 0.5) == [Send(ringing, PEER)]
    layer.respond(new.transaction, make_response(new.request, 486, to_tag=TO_TAG), 1.0)
    stranger = req("ACK", branch=None, to_tag="someone-else")
    assert layer.receive(stranger, PEER, 1.1) == [StrayAck(stranger, PEER)]
    assert layer.receive(req("ACK", branch=None, to_tag=TO_TAG), PEER, 1.2) == []
    assert new.transaction.state is State.CONFIRMED


def test_layer_next_deadline_is_the_earliest_of_all_transactions() -> None:
    layer = TransactionLayer()
    layer.send_request(req("OPTIONS", branch="z9hG4bKa"), PEER, True, 0.0)  # F at 32
    layer.send_request(req(branch="z9hG4bKb"), PEER, False, 1.0)  # A at 1.5
    layer.receive(req(branch="z9hG4bKc"), PEER, 1.2)  # 100 Trying at 1.4
    assert layer.next_deadline() == pytest.approx(1.4)


def test_layer_forgets_every_transaction_once_its_timers_have_fired() -> None:
    layer = TransactionLayer()
    layer.send_request(req(branch="z9hG4bKb"), PEER, False, 0.0)  # Timer B
    layer.send_request(req("OPTIONS", branch="z9hG4bKk"), PEER, False, 0.0)
    layer.receive(resp(200, "OK", method="OPTIONS", branch="z9hG4bKk"), PEER, 0.1)  # Timer K
    layer.send_request(req(branch="z9hG4bKm"), PEER, False, 0.0)
    layer.receive(resp(200, "OK", branch="z9hG4bKm"), PEER, 0.1)  # Timer M
    acked, accepted, unacked = (
        layer.receive(req(branch=b), PEER, 0.0)[0] for b in ("z9hG4bKi", "z9hG4bKl", "z9hG4bKh")
    )
    assert isinstance(acked, NewRequest)
    assert isinstance(accepted, NewRequest)
    assert isinstance(unacked, NewRequest)
    layer.respond(acked.transaction, make_response(acked.request, 486, to_tag="x"), 0.1)
    layer.receive(req("ACK", branch="z9hG4bKi", to_tag="x"), PEER, 0.2)  # Timer I
    layer.respond(accepted.transaction, make_response(accepted.request, 200, to_tag="y"), 0.1)
    layer.respond(unacked.transaction, make_response(unacked.request, 480, to_tag="z"), 0.1)
    [bye] = layer.receive(req("BYE", branch="z9hG4bKj"), PEER, 0.0)
    assert isinstance(bye, NewRequest)
    layer.respond(bye.transaction, make_response(bye.request, 200), 0.3)  # Timer J
    assert len(layer) == 7

    fired = run_timers(layer)

    ended = [e.transaction for _, effects in fired for e in effects if isinstance(e, Terminated)]
    # Four machines end with Terminated from a timer. The others were kept as
    # compact records when they had only retransmissions left to meet (the
    # BYE's Completed, both Accepted), and their timers simply drop them.
    assert len({id(txn) for txn in ended}) == 4
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert not layer._heap and not layer._scheduled
    assert not len(layer._server_records) and not len(layer._client_records)


def test_layer_respond_after_termination_is_a_transaction_error() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req("BYE", transport="TCP"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    layer.respond(new.transaction, make_response(new.request, 200), 0.1)
    assert len(layer) == 0
    with pytest.raises(TransactionError):
        layer.respond(new.transaction, make_response(new.request, 200), 0.2)


def test_transport_failure_ends_a_client_transaction_with_transport_failed() -> None:
    layer = TransactionLayer()
    txn, [send] = layer.send_request(req("OPTIONS"), PEER, False, 0.0)
    assert isinstance(send, Send)
    assert layer.transport_failed(send.message, 0.1) == [TransportFailed(txn), Terminated(txn)]
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_transport_failure_of_a_response_ends_its_server_transaction() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req(), PEER, 0.0)
    assert isinstance(new, NewRequest)
    [send] = layer.respond(new.transaction, make_response(new.request, 486, to_tag=TO_TAG), 0.1)
    assert isinstance(send, Send)
    effects = layer.transport_failed(send.message, 0.6)
    assert effects == [TransportFailed(new.transaction), Terminated(new.transaction)]
    assert len(layer) == 0


def test_transport_failure_of_a_message_without_transaction_changes_nothing() -> None:
    layer = TransactionLayer()
    layer.send_request(req(), PEER, False, 0.0)
    ack_for_2xx = req("ACK", branch="z9hG4bKown", to_tag=TO_TAG)
    assert layer.transport_failed(ack_for_2xx, 0.1) == []
    assert len(layer) == 1


def test_layer_refuses_ack_missing_branch_and_duplicate_client_requests() -> None:
    layer = TransactionLayer()
    with pytest.raises(TransactionError):
        layer.send_request(req("ACK"), PEER, False, 0.0)
    with pytest.raises(TransactionError):
        layer.send_request(req(branch="1234"), PEER, False, 0.0)
    layer.send_request(req(), PEER, False, 0.0)
    with pytest.raises(TransactionError):
        layer.send_request(req(), PEER, False, 0.0)


def test_a_discarded_server_transaction_leaves_nothing_behind() -> None:
    layer = TransactionLayer()
    [new] = layer.receive(req("OPTIONS"), PEER, 0.0)
    assert isinstance(new, NewRequest)
    layer.discard(new.transaction)
    assert len(layer) == 0
    assert layer.next_deadline() is None
    # The retransmission is a new request again.
    assert [type(e) for e in layer.receive(req("OPTIONS"), PEER, 0.5)] == [NewRequest]
