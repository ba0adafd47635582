"""SIP transactions (RFC 3261 §17, with the Accepted states of RFC 6026): the
four state machines that retransmit, absorb and time out messages, and the
`TransactionLayer` that matches incoming messages to them.

Sans-IO in the aioquic manner: every input takes `now` and returns effects
(`Send` for the transport; `Deliver`, `NewRequest`, `TimedOut`, ... for the
transaction user, the TU); `next_deadline()` says when to call
`handle_timer(now)`. Each machine is one table `(state, input) -> (actions,
next state)`; an input the table lacks raises `TransactionError`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Generic, Self, TypeVar

from .message import Headers, Message, Request, Response, make_response, parse

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: a branch made by an RFC 3261 element


class _RandomHex:
    """Hex strings from the kernel's CSPRNG, read 4 KiB at a time: tags,
    branches and Call-IDs must be unguessable (RFC 3261 §19.3), and one
    getrandom() call per response costs more than the rest of the tag."""

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self.reset()

    def reset(self) -> None:
        self._pool = ""
        self._at = 0

    def take(self, nbytes: int) -> str:
        end = self._at + 2 * nbytes
        if end > len(self._pool):
            self._pool = secrets.token_hex(self._chunk)
            self._at, end = 0, 2 * nbytes
        text = self._pool[self._at : end]
        self._at = end
        return text


_random_hex = _RandomHex()
# A forked child must not hand out the parent's remaining pool again.
os.register_at_fork(after_in_child=_random_hex.reset)


def new_branch() -> str:
    return MAGIC_COOKIE + _random_hex.take(12)


def new_tag() -> str:
    return _random_hex.take(8)


def new_call_id() -> str:
    return _random_hex.take(16)


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 Table 4. A, E and G are initial intervals (they back off);
    the others are durations. D, I, J and K are the values for unreliable
    transports: the machines use 0 on reliable ones, as the RFC says."""

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0
    # §17.2.1: the server INVITE transaction sends 100 (Trying) itself when
    # the TU has not answered within 200 ms.
    trying_delay: float = 0.2

    @property
    def A(self) -> float:
        return self.T1

    @property
    def B(self) -> float:
        return 64 * self.T1

    @property
    def D(self) -> float:
        # "At least 32 s": long enough to absorb the server's retransmissions,
        # which last 64*T1 (Timer H), so a larger T1 stretches D with it.
        return max(32.0, 64 * self.T1)

    @property
    def E(self) -> float:
        return self.T1

    @property
    def F(self) -> float:
        return 64 * self.T1

    @property
    def G(self) -> float:
        return self.T1

    @property
    def H(self) -> float:
        return 64 * self.T1

    @property
    def I(self) -> float:  # noqa: E743 - the RFC's name
        return self.T4

    @property
    def J(self) -> float:
        return 64 * self.T1

    @property
    def K(self) -> float:
        return self.T4

    @property
    def L(self) -> float:  # RFC 6026
        return 64 * self.T1

    @property
    def M(self) -> float:  # RFC 6026
        return 64 * self.T1


DEFAULT_TIMERS = Timers()


class TransactionError(Exception):
    """An input a transaction cannot take in its state, or a request the
    layer cannot start a transaction for. Through the layer, messages from the
    network never raise it: it always points at the caller (the TU)."""

    def __init__(
        self, reason: str, *, state: State | None = None, event: Input | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state
        self.event = event


# --- Effects ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Give `message` to the transport, for `peer`."""

    message: Message
    peer: object


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pass `message` up to the TU: a response to a client transaction's
    request, or an ACK that reused a 2xx-answered INVITE's branch."""

    message: Message
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F (the TU acts as on a 408) or Timer H (no ACK came)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not send for the transaction (§17.1.4, §17.2.4);
    the TU acts as on a 503 (§8.1.3.1)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; the layer has forgotten it."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A request that starts a server transaction; answer it with
    `TransactionLayer.respond(transaction, response, now)`."""

    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class StrayAck:
    """An ACK that matches no transaction: the ACK for a 2xx, for the dialog."""

    request: Request
    peer: object


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction, such as a 2xx
    retransmission that outlived Timer M: for the dialog (or to drop)."""

    response: Response
    peer: object


Effect = (
    Send | Deliver | TimedOut | TransportFailed | Terminated | NewRequest | StrayAck | StrayResponse
)


# --- States, inputs, tables ------------------------------------------------


class State(Enum):
    IDLE = auto()  # built, request not yet sent (client) or taken in (server)
    CALLING = auto()
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    CONFIRMED = auto()
    ACCEPTED = auto()
    TERMINATED = auto()


class Input(Enum):
    SEND_REQUEST = auto()  # client: the TU's request goes out
    RECV_1XX = auto()
    RECV_2XX = auto()
    RECV_300_699 = auto()
    RECV_REQUEST = auto()  # server: the request, then its retransmissions
    RECV_ACK = auto()
    SEND_1XX = auto()  # server: the TU's responses
    SEND_2XX = auto()
    SEND_300_699 = auto()
    TRANSPORT_ERROR = auto()  # the transport could not send
    TIMER_TRYING = auto()
    TIMER_A = auto()
    TIMER_B = auto()
    TIMER_D = auto()
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_G = auto()
    TIMER_H = auto()
    TIMER_I = auto()
    TIMER_J = auto()
    TIMER_K = auto()
    TIMER_L = auto()
    TIMER_M = auto()


# Inputs the network can cause; every live state of a machine must take them
# all, so that a confused or hostile peer never reaches a TransactionError.
CLIENT_NETWORK_INPUTS = frozenset(
    {Input.RECV_1XX, Input.RECV_2XX, Input.RECV_300_699, Input.TRANSPORT_ERROR}
)
SERVER_INVITE_NETWORK_INPUTS = frozenset(
    {Input.RECV_REQUEST, Input.RECV_ACK, Input.TRANSPORT_ERROR}
)
SERVER_NON_INVITE_NETWORK_INPUTS = frozenset({Input.RECV_REQUEST, Input.TRANSPORT_ERROR})

_T = TypeVar("_T", bound="Transaction")
Action = Callable[[_T, Message | None, float], list[Effect]]
Transition = tuple[tuple[Action[_T], ...], State]
Transitions = Mapping[tuple[State, Input], Transition[_T]]


def _response_input(status: int) -> Input:
    if status < 200:
        return Input.RECV_1XX
    return Input.RECV_2XX if status < 300 else Input.RECV_300_699


def _send_input(status: int) -> Input:
    if status < 200:
        return Input.SEND_1XX
    return Input.SEND_2XX if status < 300 else Input.SEND_300_699


def _present(message: Message | None) -> Message:
    if message is None:
        raise TransactionError("this action needs a message")
    return message


def _a_response(message: Message | None) -> Response:
    if not isinstance(message, Response):
        raise TransactionError("this action needs a response")
    return message


class Transaction:
    """What the four machines share: the request, the peer, the timers and
    the table-driven step. Drive one with `start`, `receive`, `respond`
    (server) and `handle_timer`; the layer does this for you."""

    def __init__(
        self,
        request: Request,
        peer: object,
        *,
        reliable: bool,
        timers: Timers = DEFAULT_TIMERS,
    ) -> None:
        self.request = request
        self.peer = peer
        self.reliable = reliable
        self.timers = timers
        self.state = State.IDLE
        # The layer's key for this transaction, fixed when it is created.
        self.key: tuple[str, ...] = ()
        self._deadlines: dict[Input, float] = {}
        self._intervals: dict[Input, float] = {}

    def _transitions(self) -> Transitions[Self]:
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> list[Effect]:
        """Fire every timer due at `now`, earliest first."""
        effects: list[Effect] = []
        while self._deadlines:
            timer = min(self._deadlines, key=self._deadlines.__getitem__)
            if self._deadlines[timer] > now:
                break
            del self._deadlines[timer]
            effects += self._input(timer, None, now)
        return effects

    def transport_failed(self, now: float) -> list[Effect]:
        """The transport could not send this transaction's message."""
        return self._step(Input.TRANSPORT_ERROR, None, now)

    def _step(self, event: Input, message: Message | None, now: float) -> list[Effect]:
        # Timers of zero length (D, I, J, K on reliable transports) fire in
        # the same step, so the caller sees Terminated without a timer call.
        return self._input(event, message, now) + self.handle_timer(now)

    def _input(self, event: Input, message: Message | None, now: float) -> list[Effect]:
        transition = self._transitions().get((self.state, event))
        if transition is None:
            raise TransactionError(
                f"{type(self).__name__}: {event.name} in {self.state.name}",
                state=self.state,
                event=event,
            )
        actions, next_state = transition
        effects: list[Effect] = []
        for action in actions:
            effects += action(self, message, now)
        self.state = next_state
        if next_state is State.TERMINATED:
            self._deadlines.clear()
            effects.append(Terminated(self))
        return effects

    def _start(self, timer: Input, duration: float, now: float) -> None:
        self._intervals[timer] = duration
        self._deadlines[timer] = now + duration

    def _stop(self, *timers: Input) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)

    def _back_off(self, timer: Input, now: float) -> None:
        """Double the retransmission interval of A, E or G; E and G stop at T2.

        Counted from `now`, not from the deadline: a late timer call then
        sends one retransmission, not a burst of the ones it missed."""
        interval = 2 * self._intervals[timer]
        if timer is not Input.TIMER_A:
            interval = min(interval, self.timers.T2)
        self._start(timer, interval, now)

    # Actions: (self, message of the input or None, now) -> effects.

    def _send_request(self, message: Message | None, now: float) -> list[Effect]:
        return [Send(self.request, self.peer)]

    def _deliver(self, message: Message | None, now: float) -> list[Effect]:
        return [Deliver(_present(message), self)]

    def _time_out(self, message: Message | None, now: float) -> list[Effect]:
        return [TimedOut(self)]

    def _fail(self, message: Message | None, now: float) -> list[Effect]:
        return [TransportFailed(self)]

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.request.method} "
            f"branch={self.request.top_via.branch!r} {self.state.name}>"
        )


class ClientTransaction(Transaction):
    """A request we send; responses come in through `receive`."""

    def start(self, now: float) -> list[Effect]:
        """Send the request and start the timers."""
        return self._step(Input.SEND_REQUEST, self.request, now)

    def receive(self, response: Response, now: float) -> list[Effect]:
        if response.cseq.method != self.request.method:
            raise TransactionError("the response's CSeq method is not this transaction's")
        return self._step(_response_input(response.status), response, now)


class ClientInviteTransaction(ClientTransaction):
    """§17.1.1 with RFC 6026: a 2xx moves to Accepted, where later 2xx
    responses (retransmissions, other forks) still go up until Timer M."""

    ack: Request | None = None

    def _transitions(self) -> Transitions[ClientInviteTransaction]:
        return CLIENT_INVITE_TRANSITIONS

    def _start_timers_a_b(self, message: Message | None, now: float) -> list[Effect]:
        if not self.reliable:
            self._start(Input.TIMER_A, self.timers.A, now)
        self._start(Input.TIMER_B, self.timers.B, now)
        return []

    def _back_off_timer_a(self, message: Message | None, now: float) -> list[Effect]:
        self._back_off(Input.TIMER_A, now)
        return []

    def _stop_timers_a_b(self, message: Message | None, now: float) -> list[Effect]:
        self._stop(Input.TIMER_A, Input.TIMER_B)
        return []

    def _send_ack(self, message: Message | None, now: float) -> list[Effect]:
        # The first final response fixes the ACK; its retransmissions get the same one.
        if self.ack is None:
            self.ack = make_ack(self.request, _a_response(message))
        return [Send(self.ack, self.peer)]

    def _start_timer_d(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_D, 0.0 if self.reliable else self.timers.D, now)
        return []

    def _start_timer_m(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_M, self.timers.M, now)
        return []


_CIT = ClientInviteTransaction
_S, _I = State, Input

# In every table, the last entry ends any live transaction on a transport
# error (§17.1.4, §17.2.4): nothing can be retransmitted to a dead flow.
CLIENT_INVITE_TRANSITIONS: Transitions[ClientInviteTransaction] = {
    (_S.IDLE, _I.SEND_REQUEST): ((_CIT._send_request, _CIT._start_timers_a_b), _S.CALLING),
    (_S.CALLING, _I.TIMER_A): ((_CIT._send_request, _CIT._back_off_timer_a), _S.CALLING),
    (_S.CALLING, _I.TIMER_B): ((_CIT._time_out,), _S.TERMINATED),
    (_S.CALLING, _I.RECV_1XX): ((_CIT._stop_timers_a_b, _CIT._deliver), _S.PROCEEDING),
    (_S.CALLING, _I.RECV_2XX): (
        (_CIT._stop_timers_a_b, _CIT._deliver, _CIT._start_timer_m),
        _S.ACCEPTED,
    ),
    (_S.CALLING, _I.RECV_300_699): (
        (_CIT._stop_timers_a_b, _CIT._send_ack, _CIT._deliver, _CIT._start_timer_d),
        _S.COMPLETED,
    ),
    (_S.PROCEEDING, _I.RECV_1XX): ((_CIT._deliver,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.RECV_2XX): ((_CIT._deliver, _CIT._start_timer_m), _S.ACCEPTED),
    (_S.PROCEEDING, _I.RECV_300_699): (
        (_CIT._send_ack, _CIT._deliver, _CIT._start_timer_d),
        _S.COMPLETED,
    ),
    (_S.COMPLETED, _I.RECV_1XX): ((), _S.COMPLETED),
    # A fork may answer 2xx after another fork's final (§16.7 forwards every
    # 2xx): the TU must still ACK and BYE it.
    (_S.COMPLETED, _I.RECV_2XX): ((_CIT._deliver,), _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_300_699): ((_CIT._send_ack,), _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_D): ((), _S.TERMINATED),
    (_S.ACCEPTED, _I.RECV_1XX): ((), _S.ACCEPTED),
    (_S.ACCEPTED, _I.RECV_2XX): ((_CIT._deliver,), _S.ACCEPTED),
    (_S.ACCEPTED, _I.RECV_300_699): ((), _S.ACCEPTED),
    (_S.ACCEPTED, _I.TIMER_M): ((), _S.TERMINATED),
    **{
        (state, _I.TRANSPORT_ERROR): ((_CIT._fail,), _S.TERMINATED)
        for state in (_S.CALLING, _S.PROCEEDING, _S.COMPLETED, _S.ACCEPTED)
    },
}


class ClientNonInviteTransaction(ClientTransaction):
    """§17.1.2."""

    def _transitions(self) -> Transitions[ClientNonInviteTransaction]:
        return CLIENT_NON_INVITE_TRANSITIONS

    def _start_timers_e_f(self, message: Message | None, now: float) -> list[Effect]:
        if not self.reliable:
            self._start(Input.TIMER_E, self.timers.E, now)
        self._start(Input.TIMER_F, self.timers.F, now)
        return []

    def _back_off_timer_e(self, message: Message | None, now: float) -> list[Effect]:
        self._back_off(Input.TIMER_E, now)
        return []

    def _restart_timer_e_at_t2(self, message: Message | None, now: float) -> list[Effect]:
        # §17.1.2.2: once a provisional came, the request is known to have
        # arrived; retransmit slowly only to keep the server's state alive.
        self._start(Input.TIMER_E, self.timers.T2, now)
        return []

    def _stop_timers_e_f(self, message: Message | None, now: float) -> list[Effect]:
        self._stop(Input.TIMER_E, Input.TIMER_F)
        return []

    def _start_timer_k(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_K, 0.0 if self.reliable else self.timers.K, now)
        return []


_CNT = ClientNonInviteTransaction
_CNT_FINAL = (_CNT._stop_timers_e_f, _CNT._deliver, _CNT._start_timer_k)

CLIENT_NON_INVITE_TRANSITIONS: Transitions[ClientNonInviteTransaction] = {
    (_S.IDLE, _I.SEND_REQUEST): ((_CNT._send_request, _CNT._start_timers_e_f), _S.TRYING),
    (_S.TRYING, _I.TIMER_E): ((_CNT._send_request, _CNT._back_off_timer_e), _S.TRYING),
    (_S.TRYING, _I.TIMER_F): ((_CNT._time_out,), _S.TERMINATED),
    (_S.TRYING, _I.RECV_1XX): ((_CNT._deliver,), _S.PROCEEDING),
    (_S.TRYING, _I.RECV_2XX): (_CNT_FINAL, _S.COMPLETED),
    (_S.TRYING, _I.RECV_300_699): (_CNT_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _I.TIMER_E): (
        (_CNT._send_request, _CNT._restart_timer_e_at_t2),
        _S.PROCEEDING,
    ),
    (_S.PROCEEDING, _I.TIMER_F): ((_CNT._time_out,), _S.TERMINATED),
    (_S.PROCEEDING, _I.RECV_1XX): ((_CNT._deliver,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.RECV_2XX): (_CNT_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _I.RECV_300_699): (_CNT_FINAL, _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_1XX): ((), _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_2XX): ((), _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_300_699): ((), _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_K): ((), _S.TERMINATED),
    **{
        (state, _I.TRANSPORT_ERROR): ((_CNT._fail,), _S.TERMINATED)
        for state in (_S.TRYING, _S.PROCEEDING, _S.COMPLETED)
    },
}


class ServerTransaction(Transaction):
    """A request we received; the TU answers through `respond`."""

    last_response: Response | None = None

    def start(self, now: float) -> list[Effect]:
        """Take in the request that created the transaction."""
        return self._step(Input.RECV_REQUEST, self.request, now)

    def receive(self, request: Request, now: float) -> list[Effect]:
        """A retransmission of the request, or the ACK of an INVITE."""
        event = Input.RECV_ACK if request.method == "ACK" else Input.RECV_REQUEST
        return self._step(event, request, now)

    def respond(self, response: Response, now: float) -> list[Effect]:
        """Send the TU's response."""
        if response.cseq != self.request.cseq:
            raise TransactionError("the response's CSeq is not the request's")
        return self._step(_send_input(response.status), response, now)

    def _send_response(self, message: Message | None, now: float) -> list[Effect]:
        self.last_response = _a_response(message)
        return [Send(self.last_response, self.peer)]

    def _resend_response(self, message: Message | None, now: float) -> list[Effect]:
        if self.last_response is None:
            return []
        return [Send(self.last_response, self.peer)]


class ServerInviteTransaction(ServerTransaction):
    """§17.2.1 with RFC 6026: a 2xx moves to Accepted, which absorbs INVITE
    retransmissions, sends the TU's 2xx retransmissions and passes up an ACK
    that reused the INVITE's branch, until Timer L."""

    def _transitions(self) -> Transitions[ServerInviteTransaction]:
        return SERVER_INVITE_TRANSITIONS

    def _start_timer_trying(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_TRYING, self.timers.trying_delay, now)
        return []

    def _stop_timer_trying(self, message: Message | None, now: float) -> list[Effect]:
        self._stop(Input.TIMER_TRYING)
        return []

    def _send_trying(self, message: Message | None, now: float) -> list[Effect]:
        # §8.2.6.1: a 100 echoes the request's Timestamp.
        timestamp = self.request.headers.get("Timestamp")
        extra = [("Timestamp", timestamp)] if timestamp is not None else None
        return self._send_response(make_response(self.request, 100, headers=extra), now)

    def _answer_retransmission(self, message: Message | None, now: float) -> list[Effect]:
        # A retransmitted INVITE shows the peer heard nothing yet: answer it
        # now rather than when the 200 ms are up.
        if self.last_response is None:
            self._stop(Input.TIMER_TRYING)
            return self._send_trying(message, now)
        return self._resend_response(message, now)

    def _start_timers_g_h(self, message: Message | None, now: float) -> list[Effect]:
        if not self.reliable:
            self._start(Input.TIMER_G, self.timers.G, now)
        self._start(Input.TIMER_H, self.timers.H, now)
        return []

    def _back_off_timer_g(self, message: Message | None, now: float) -> list[Effect]:
        self._back_off(Input.TIMER_G, now)
        return []

    def _stop_timers_g_h(self, message: Message | None, now: float) -> list[Effect]:
        self._stop(Input.TIMER_G, Input.TIMER_H)
        return []

    def _start_timer_i(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_I, 0.0 if self.reliable else self.timers.I, now)
        return []

    def _start_timer_l(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_L, self.timers.L, now)
        return []


_SIT = ServerInviteTransaction

SERVER_INVITE_TRANSITIONS: Transitions[ServerInviteTransaction] = {
    (_S.IDLE, _I.RECV_REQUEST): ((_SIT._start_timer_trying,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.RECV_REQUEST): ((_SIT._answer_retransmission,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.RECV_ACK): ((), _S.PROCEEDING),  # nothing final to acknowledge yet
    (_S.PROCEEDING, _I.TIMER_TRYING): ((_SIT._send_trying,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_1XX): ((_SIT._stop_timer_trying, _SIT._send_response), _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_2XX): (
        (_SIT._stop_timer_trying, _SIT._send_response, _SIT._start_timer_l),
        _S.ACCEPTED,
    ),
    (_S.PROCEEDING, _I.SEND_300_699): (
        (_SIT._stop_timer_trying, _SIT._send_response, _SIT._start_timers_g_h),
        _S.COMPLETED,
    ),
    (_S.COMPLETED, _I.RECV_REQUEST): ((_SIT._resend_response,), _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_ACK): ((_SIT._stop_timers_g_h, _SIT._start_timer_i), _S.CONFIRMED),
    (_S.COMPLETED, _I.TIMER_G): ((_SIT._resend_response, _SIT._back_off_timer_g), _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_H): ((_SIT._time_out,), _S.TERMINATED),
    (_S.CONFIRMED, _I.RECV_REQUEST): ((), _S.CONFIRMED),
    (_S.CONFIRMED, _I.RECV_ACK): ((), _S.CONFIRMED),
    (_S.CONFIRMED, _I.TIMER_I): ((), _S.TERMINATED),
    # The TU retransmits its 2xx itself (§13.3.1.4); the UAC's ACK for a 2xx
    # normally carries a new branch and comes out of the layer as StrayAck.
    (_S.ACCEPTED, _I.RECV_REQUEST): ((), _S.ACCEPTED),
    (_S.ACCEPTED, _I.RECV_ACK): ((_SIT._deliver,), _S.ACCEPTED),
    (_S.ACCEPTED, _I.SEND_2XX): ((_SIT._send_response,), _S.ACCEPTED),
    (_S.ACCEPTED, _I.TIMER_L): ((), _S.TERMINATED),
    **{
        (state, _I.TRANSPORT_ERROR): ((_SIT._fail,), _S.TERMINATED)
        for state in (_S.PROCEEDING, _S.COMPLETED, _S.CONFIRMED, _S.ACCEPTED)
    },
}


class ServerNonInviteTransaction(ServerTransaction):
    """§17.2.2."""

    def _transitions(self) -> Transitions[ServerNonInviteTransaction]:
        return SERVER_NON_INVITE_TRANSITIONS

    def _start_timer_j(self, message: Message | None, now: float) -> list[Effect]:
        self._start(Input.TIMER_J, 0.0 if self.reliable else self.timers.J, now)
        return []


_SNT = ServerNonInviteTransaction
_SNT_FINAL = (_SNT._send_response, _SNT._start_timer_j)

SERVER_NON_INVITE_TRANSITIONS: Transitions[ServerNonInviteTransaction] = {
    (_S.IDLE, _I.RECV_REQUEST): ((), _S.TRYING),
    (_S.TRYING, _I.RECV_REQUEST): ((), _S.TRYING),  # nothing to resend yet
    (_S.TRYING, _I.SEND_1XX): ((_SNT._send_response,), _S.PROCEEDING),
    (_S.TRYING, _I.SEND_2XX): (_SNT_FINAL, _S.COMPLETED),
    (_S.TRYING, _I.SEND_300_699): (_SNT_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _I.RECV_REQUEST): ((_SNT._resend_response,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_1XX): ((_SNT._send_response,), _S.PROCEEDING),
    (_S.PROCEEDING, _I.SEND_2XX): (_SNT_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _I.SEND_300_699): (_SNT_FINAL, _S.COMPLETED),
    (_S.COMPLETED, _I.RECV_REQUEST): ((_SNT._resend_response,), _S.COMPLETED),
    (_S.COMPLETED, _I.TIMER_J): ((), _S.TERMINATED),
    **{
        (state, _I.TRANSPORT_ERROR): ((_SNT._fail,), _S.TERMINATED)
        for state in (_S.TRYING, _S.PROCEEDING, _S.COMPLETED)
    },
}

# --- Requests a transaction builds -----------------------------------------


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): the INVITE's
    Request-URI, top Via, Route, From, Call-ID and CSeq number, and the To of
    the response (with its tag)."""
    return _same_hop_request("ACK", invite, response.headers.get("To") or "")


def make_cancel(request: Request) -> Request:
    """The CANCEL of `request` (§9.1): same Request-URI, top Via (so the same
    branch), Route, From, To, Call-ID and CSeq number."""
    return _same_hop_request("CANCEL", request, request.headers.get("To") or "")


def _same_hop_request(method: str, request: Request, to: str) -> Request:
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} {method}")
    return Request(method, request.uri.copy(), headers)


# --- The layer --------------------------------------------------------------

_UNRELIABLE_TRANSPORTS = frozenset({"UDP"})


def _client_key(message: Message) -> tuple[str, str]:
    """§17.1.3: the top Via branch and the CSeq method (a CANCEL shares its
    INVITE's branch but is a transaction of its own)."""
    return (message.top_via.branch or "", message.cseq.method)


def _server_key(request: Request, method: str | None = None) -> tuple[str, ...]:
    """§17.2.3. An ACK looks for its INVITE; a CANCEL finds its INVITE with
    method="INVITE"."""
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    if _is_rfc3261(request):
        return (via.branch or "", via.sent_by.lower(), method)
    # RFC 2543 peers have no unique branch: Request-URI, From tag, Call-ID,
    # CSeq number and top Via name the transaction. The To tag is checked
    # after the lookup (see TransactionLayer._match_server).
    return (
        str(request.uri),
        request.from_.tag or "",
        request.call_id,
        str(request.cseq.seq),
        method,
        str(via),
    )


def _is_rfc3261(request: Request) -> bool:
    branch = request.top_via.branch
    return branch is not None and branch.startswith(MAGIC_COOKIE)


@dataclass(frozen=True, slots=True)
class _Remembered:
    """A transaction with nothing left to do but meet retransmissions until
    its last timer, reduced to what that takes: the bytes a retransmission
    gets (None: it is absorbed), where they go, and when it is forgotten.

    Under load tens of thousands of transactions wait out their 32 s at once.
    As whole machines they kept their messages and, through the TU's
    callbacks, whole calls in sight of the garbage collector, whose passes
    stalled the loop for long enough to lose requests; as bytes they cost it
    one object each."""

    reply: bytes | None
    peer: object
    until: float


_Key = TypeVar("_Key", bound=tuple[str, ...])


class _Records(Generic[_Key]):
    """The `_Remembered` of one kind of transaction, by key, with their expiry."""

    def __init__(self) -> None:
        self._by_key: dict[_Key, _Remembered] = {}
        self._expiry: list[tuple[float, int, _Key]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: _Key) -> _Remembered | None:
        return self._by_key.get(key)

    def add(self, key: _Key, record: _Remembered) -> None:
        self._by_key[key] = record
        heapq.heappush(self._expiry, (record.until, next(self._order), key))

    def next_deadline(self) -> float | None:
        expiry = self._expiry
        while expiry:
            until, _, key = expiry[0]
            record = self._by_key.get(key)
            if record is not None and record.until == until:
                return until
            heapq.heappop(expiry)  # replaced or gone
        return None

    def expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            until, _, key = heapq.heappop(expiry)
            record = self._by_key.get(key)
            if record is not None and record.until == until:
                del self._by_key[key]


class TransactionLayer:
    """Owns the live transactions: matches what arrives, starts client
    transactions, passes the TU's responses on, and forgets a transaction as
    soon as it is Terminated."""

    def __init__(self, timers: Timers = DEFAULT_TIMERS) -> None:
        self.timers = timers
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, ...], ServerTransaction] = {}
        # A heap with lazy deletion: an entry is live while _scheduled holds
        # the same deadline for its transaction.
        self._scheduled: dict[Transaction, float] = {}
        self._heap: list[tuple[float, int, Transaction]] = []
        self._order = itertools.count()
        # Transactions kept as compact records to their last timer (see
        # `_Remembered`): server ones in Completed (non-INVITE) and Accepted
        # (INVITE), client INVITEs in Completed and Accepted.
        self._server_records: _Records[tuple[str, ...]] = _Records()
        self._client_records: _Records[tuple[str, str]] = _Records()

    def __len__(self) -> int:
        return (
            len(self._clients)
            + len(self._servers)
            + len(self._server_records)
            + len(self._client_records)
        )

    def receive(
        self, message: Message, peer: object, now: float, *, reliable: bool | None = None
    ) -> list[Effect]:
        """A parsed message from `peer`.

        A new request comes out as `NewRequest` (a CANCEL too: the TU finds
        its INVITE with `find_invite_for_cancel`, or answers 481); responses
        of a server transaction go back to this `peer`, and the transport
        decides what that means (same connection, received/rport). `reliable`
        is how a new server transaction treats its transport; by default, UDP
        in the top Via means unreliable."""
        if isinstance(message, Response):
            client_key = _client_key(message)
            client = self._clients.get(client_key)
            if client is not None:
                return self._track(client, client.receive(message, now))
            remembered = self._client_records.get(client_key)
            if remembered is None or 200 <= message.status < 300:
                # A 2xx goes to the TU, which ACKs it (§13.2.2.4; RFC 6026 §8.4).
                return [StrayResponse(message, peer)]
            if message.status >= 300 and remembered.reply is not None:
                # §17.1.1.2: Completed ACKs a retransmitted final response.
                return [Send(parse(remembered.reply), remembered.peer)]
            return []
        key = _server_key(message)
        server = self._match_server(message, key)
        if server is not None:
            return self._track(server, server.receive(message, now))
        remembered = self._server_records.get(key)
        if remembered is not None:
            if message.method == "ACK":
                # An ACK that reused its INVITE's branch: Accepted passes it up.
                return [StrayAck(message, peer)]
            # §17.2.2: Completed answers a retransmission with its response;
            # RFC 6026's Accepted absorbs a retransmitted INVITE.
            return (
                [] if remembered.reply is None else [Send(parse(remembered.reply), remembered.peer)]
            )
        if message.method == "ACK":
            return [StrayAck(message, peer)]
        if reliable is None:
            reliable = message.top_via.transport not in _UNRELIABLE_TRANSPORTS
        kind = ServerInviteTransaction if message.method == "INVITE" else ServerNonInviteTransaction
        created = kind(message, peer, reliable=reliable, timers=self.timers)
        created.key = key
        self._servers[key] = created
        return [NewRequest(message, created), *self._track(created, created.start(now))]

    def send_request(
        self, request: Request, peer: object, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[Effect]]:
        """Start a client transaction. The request's top Via must carry a
        fresh `new_branch()`. An ACK is no transaction: send it as
        `Send(ack, peer)`."""
        if request.method == "ACK":
            raise TransactionError(
                "an ACK is not a transaction: give Send(ack, peer) to the transport"
            )
        branch = request.vias[0].branch if request.vias else None
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionError("a request needs a top Via with a z9hG4bK branch")
        key = _client_key(request)
        if key in self._clients:
            raise TransactionError(f"a {request.method} transaction with branch {branch} is live")
        kind = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        client = kind(request, peer, reliable=reliable, timers=self.timers)
        self._clients[key] = client
        return client, self._track(client, client.start(now))

    def respond(
        self, transaction: ServerTransaction, response: Response, now: float
    ) -> list[Effect]:
        if self._servers.get(transaction.key) is transaction:
            return self._track(transaction, transaction.respond(response, now))
        if (
            transaction.state is State.ACCEPTED
            and 200 <= response.status < 300
            and self._server_records.get(transaction.key) is not None
        ):
            # The TU's retransmission of its 2xx (§13.3.1.4) while the
            # transaction waits in Accepted as a record.
            return [Send(response, transaction.peer)]
        raise TransactionError("the transaction is terminated or not this layer's")

    def transport_failed(self, message: Message, now: float) -> list[Effect]:
        """The transport could not send `message`: its transaction ends with
        TransportFailed. A message no live transaction sent (an ACK for a
        2xx, a response of an RFC 2543 transaction) gives nothing."""
        transaction = self._sender_of(message)
        if transaction is None:
            return []
        return self._track(transaction, transaction.transport_failed(now))

    def discard(self, transaction: ServerTransaction) -> None:
        """Forget a server transaction the TU will never answer: a request
        dropped on purpose (a blocked source, a scanner). Its retransmissions
        then come up as new requests, to be dropped the same way."""
        self._forget(transaction)

    def knows(self, request: Request) -> bool:
        """Whether `request` belongs to a server transaction live or
        remembered (a retransmission): what a stateless answer must not
        pre-empt."""
        key = _server_key(request)
        return key in self._servers or self._server_records.get(key) is not None

    def find_invite_for_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """The server INVITE transaction a CANCEL targets (§9.2), if live."""
        found = self._servers.get(_server_key(cancel, "INVITE"))
        return found if isinstance(found, ServerInviteTransaction) else None

    def next_deadline(self) -> float | None:
        deadlines = [self._server_records.next_deadline(), self._client_records.next_deadline()]
        while self._heap:
            deadline, _, transaction = self._heap[0]
            if self._scheduled.get(transaction) == deadline:
                deadlines.append(deadline)
                break
            heapq.heappop(self._heap)
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timers(self, now: float) -> list[Effect]:
        self._server_records.expire(now)
        self._client_records.expire(now)
        effects: list[Effect] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, transaction = heapq.heappop(self._heap)
            if self._scheduled.get(transaction) != deadline:
                continue
            del self._scheduled[transaction]
            effects += self._track(transaction, transaction.handle_timer(now))
        return effects

    def _sender_of(self, message: Message) -> Transaction | None:
        via = message.top_via
        if via.branch is None:
            return None
        if isinstance(message, Request):
            method = "INVITE" if message.method == "ACK" else message.method
            return self._clients.get((via.branch, method))
        return self._servers.get((via.branch, via.sent_by.lower(), message.cseq.method))

    def _match_server(self, request: Request, key: tuple[str, ...]) -> ServerTransaction | None:
        found = self._servers.get(key)
        if found is None or _is_rfc3261(request) or request.method != "ACK":
            return found
        # RFC 2543: an ACK belongs to the INVITE whose response carried its To tag.
        sent = found.last_response
        return found if sent is not None and sent.to.tag == request.to.tag else None

    def _track(self, transaction: Transaction, effects: list[Effect]) -> list[Effect]:
        if transaction.state is State.TERMINATED:
            self._forget(transaction)
            return effects
        deadline = transaction.next_deadline()
        if deadline is not None and self._remember(transaction, deadline):
            self._forget(transaction)
            if isinstance(transaction, ClientTransaction):
                # Over for the TU: what comes now comes up as stray.
                effects.append(Terminated(transaction))
            return effects
        if deadline is None:
            self._scheduled.pop(transaction, None)
        elif self._scheduled.get(transaction) != deadline:
            self._scheduled[transaction] = deadline
            heapq.heappush(self._heap, (deadline, next(self._order), transaction))
        return effects

    def _remember(self, transaction: Transaction, until: float) -> bool:
        """Keep `transaction` as a `_Remembered` if all it has left to do is
        meet retransmissions until `until`; whether it was."""
        state = transaction.state
        if isinstance(transaction, ServerTransaction):
            if isinstance(transaction, ServerNonInviteTransaction):
                response = transaction.last_response
                if state is not State.COMPLETED or response is None:
                    return False
                reply: bytes | None = response.to_bytes()
            elif state is State.ACCEPTED and isinstance(transaction.request, Request):
                # RFC 2543 ACKs are matched by the To tag of the response,
                # which a record does not keep: such a transaction stays whole.
                if not _is_rfc3261(transaction.request):
                    return False
                reply = None
            else:
                return False
            self._server_records.add(transaction.key, _Remembered(reply, transaction.peer, until))
            return True
        if not isinstance(transaction, ClientInviteTransaction):
            return False
        if state is State.ACCEPTED:
            reply = None
        elif state is State.COMPLETED and transaction.ack is not None:
            reply = transaction.ack.to_bytes()
        else:
            return False
        key = _client_key(transaction.request)
        self._client_records.add(key, _Remembered(reply, transaction.peer, until))
        return True

    def _forget(self, transaction: Transaction) -> None:
        self._scheduled.pop(transaction, None)
        if isinstance(transaction, ClientTransaction):
            key = _client_key(transaction.request)
            if self._clients.get(key) is transaction:
                del self._clients[key]
        else:
            if self._servers.get(transaction.key) is transaction:
                del self._servers[transaction.key]
