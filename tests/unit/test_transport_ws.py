"""The WebSocket transport (transport/ws.py) under the transport layer, fed
frames as the HTTP endpoint feeds them: messages in, answers out over the
same flow, and the limits that close a flow."""

from __future__ import annotations

import asyncio

from callbridge.sip import Message, Request, make_response
from callbridge.transport import Address, Transport, TransportLayer, WsFlow
from callbridge.transport.ws import CLOSE_TOO_BIG, CLOSE_TRY_LATER

OPTIONS = (
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bK1\r\n"
    b"From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
)


class Answering:
    """A handler that answers every request 200 and keeps what came."""

    def __init__(self) -> None:
        self.layer: TransportLayer | None = None
        self.got: list[tuple[Message, Address]] = []

    def __call__(self, message: Message, source: Address, transport: Transport, _: float) -> None:
        self.got.append((message, source))
        assert self.layer is not None and isinstance(message, Request)
        self.layer.send_response(make_response(message, 200), source, transport)


def layer_with(handler: Answering, **limits: int) -> tuple[TransportLayer, WsFlow]:
    layer = TransportLayer(handler)
    handler.layer = layer
    ws = layer.open_websocket("127.0.0.1", 8000, **limits)
    flow = ws.accept("127.0.0.1", 40000)
    assert isinstance(flow, WsFlow)
    return layer, flow


async def test_a_frame_is_a_message_and_its_answer_goes_back_over_the_flow() -> None:
    handler = Answering()
    layer, flow = layer_with(handler)
    flow.receive(OPTIONS)
    [(message, source)] = handler.got
    assert source == Address("ws", "127.0.0.1", 40000)
    assert isinstance(message, Request) and message.top_via.params.get("received") == "127.0.0.1"
    answer = await asyncio.wait_for(flow.outgoing(), 1)
    assert answer is not None and answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert layer.stats.received == 1 and layer.stats.sent == 1


async def test_a_request_to_a_browser_without_a_socket_is_reported_not_sent() -> None:
    layer, _ = layer_with(Answering())
    errors: list[str] = []
    layer.on_transport_error = lambda error: errors.append(error.reason)
    ws = layer.transport_for("ws")
    ws.send(b"OPTIONS ...", Address("ws", "127.0.0.1", 1))
    assert errors == ["no connection from this browser"]


async def test_an_oversized_frame_closes_the_flow_with_1009_before_it_is_parsed() -> None:
    handler = Answering()
    layer, flow = layer_with(handler)
    flow.receive(b"x" * (layer.limits.max_message_size + 1))
    assert not flow.is_open and flow.close_code == CLOSE_TOO_BIG
    assert await flow.outgoing() is None
    assert handler.got == [] and layer.stats.dropped == 1
    assert layer.transport_for("ws").flow(flow.remote) is None


async def test_garbage_is_counted_and_the_flow_stays_open() -> None:
    layer, flow = layer_with(Answering())
    flow.receive(b"\x00\xffnot sip")
    flow.receive(b"\r\n\r\n")  # a keep-alive: nothing at all
    assert flow.is_open and layer.stats.parse_errors == 1 and layer.stats.dropped == 1


async def test_a_browser_that_does_not_read_is_cut_off() -> None:
    layer = TransportLayer(Answering())
    ws = layer.open_websocket("127.0.0.1", 8000)
    ws.max_write_buffer = 1000
    flow = ws.accept("127.0.0.1", 40000)
    assert isinstance(flow, WsFlow)
    for _ in range(3):
        ws.send(b"x" * 400, flow.remote)
    assert not flow.is_open and flow.close_code == CLOSE_TRY_LATER


async def test_connections_are_capped_per_address_and_closed_ones_give_their_place() -> None:
    layer = TransportLayer(Answering())
    ws = layer.open_websocket("127.0.0.1", 8000, max_per_address=1)
    first = ws.accept("127.0.0.1", 40000)
    assert isinstance(first, WsFlow)
    assert ws.accept("127.0.0.1", 40001) == "connection limit of this address reached"
    assert isinstance(ws.accept("127.0.0.2", 40001), WsFlow)
    closed: list[Address] = []
    layer.on_flow_closed = closed.append
    first.lost()
    assert closed == [first.remote]
    assert isinstance(ws.accept("127.0.0.1", 40002), WsFlow)


async def test_an_idle_flow_closes_unless_it_carries_a_binding() -> None:
    kept: set[Address] = set()
    layer = TransportLayer(Answering(), tcp_idle_timeout=0.05, keep_idle=kept.__contains__)
    ws = layer.open_websocket("127.0.0.1", 8000)
    idle, registered = ws.accept("127.0.0.1", 40000), ws.accept("127.0.0.1", 40001)
    assert isinstance(idle, WsFlow) and isinstance(registered, WsFlow)
    kept.add(registered.remote)
    await asyncio.sleep(0.2)
    assert not idle.is_open and registered.is_open
    await layer.close()
    assert not registered.is_open
