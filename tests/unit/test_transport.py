"""The transport layer over real loopback sockets: UDP and TCP round trips,
received/rport, response routing, connection reuse, error answers, hostile
input; and the pure Via and salvage rules it is built on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from callbridge.sip import Message, ParseError, Request, Response, make_response, parse
from callbridge.sip.headers import parse_via
from callbridge.transport import (
    Address,
    Transport,
    TransportError,
    TransportLayer,
    response_destination,
    stamp_received,
)
from callbridge.transport.salvage import salvage_error_response

HOST = "127.0.0.1"
TIMEOUT = 3.0


def sip_request(
    method: str = "OPTIONS",
    *,
    via: str = "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK776asdhds",
    call_id: str = "a84b4c76e66710@pc33",
    cseq_method: str | None = None,
    extra: str = "",
    body: bytes = b"",
) -> bytes:
    head = (
        f"{method} sip:service@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:service@127.0.0.1>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 314159 {cseq_method or method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


# -- peers and endpoints ------------------------------------------------------


@dataclass
class Endpoint:
    """A TransportLayer on loopback whose handler answers OPTIONS with 200."""

    layer: TransportLayer
    port: int
    seen: list[tuple[Message, Address, Transport]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.put_nowait((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def receive(self, timeout: float = TIMEOUT) -> Message:
        data, _ = await asyncio.wait_for(self.inbox.get(), timeout)
        return parse(data)


@dataclass
class TcpPeer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def port(self) -> int:
        port: int = self.writer.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def receive(self, timeout: float = TIMEOUT) -> Message:
        return await asyncio.wait_for(read_message(self.reader), timeout)

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except ConnectionResetError:
            pass
        return True


async def read_message(reader: asyncio.StreamReader) -> Message:
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:[ \t]*(\d+)", head)
    assert match is not None
    body = await reader.readexactly(int(match.group(1)))
    return parse(head + body, stream=True)


@pytest.fixture
async def make_endpoint() -> AsyncIterator[Callable[..., Awaitable[Endpoint]]]:
    layers: list[TransportLayer] = []

    async def make(**options: Any) -> Endpoint:
        endpoint: Endpoint

        def handler(message: Message, source: Address, transport: Transport, waited: float) -> None:
            endpoint.waits.append(waited)
            endpoint.seen.append((message, source, transport))
            if not isinstance(message, Request) or message.method != "OPTIONS":
                return
            if message.call_id == "explode":
                raise RuntimeError("a handler bug")
            endpoint.layer.send_response(make_response(message, 200), source, transport)

        layer = TransportLayer(handler, **options)
        layers.append(layer)
        endpoint = Endpoint(layer, await layer.listen(HOST, 0))
        return endpoint

    yield make
    for layer in layers:
        await layer.close()


@pytest.fixture
async def endpoint(make_endpoint: Callable[..., Awaitable[Endpoint]]) -> Endpoint:
    return await make_endpoint()


@pytest.fixture
async def udp_peer() -> AsyncIterator[Callable[[], Awaitable[UdpPeer]]]:
    peers: list[UdpPeer] = []

    async def make() -> UdpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(HOST, 0))
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        assert peer.transport is not None
        peer.transport.close()


@pytest.fixture
async def tcp_peer() -> AsyncIterator[Callable[[int], Awaitable[TcpPeer]]]:
    peers: list[TcpPeer] = []

    async def make(port: int) -> TcpPeer:
        reader, writer = await asyncio.open_connection(HOST, port)
        peer = TcpPeer(reader, writer)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await peer.writer.wait_closed()


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


# -- UDP ----------------------------------------------------------------------


async def test_udp_options_round_trip(endpoint: Endpoint, udp_peer: Any) -> None:
    peer = await udp_peer()
    peer.send(sip_request(via=f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK1"), endpoint.addr)
    response = await peer.receive()
    assert isinstance(response, Response)
    assert (response.status, response.call_id) == (200, "a84b4c76e66710@pc33")
    assert endpoint.layer.stats.received == 1
    assert endpoint.layer.stats.sent == 1


async def test_udp_says_how_long_a_datagram_waited_in_the_socket_before_it_was_read(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK"
    peer.send(sip_request(via=via + "w1"), endpoint.addr)
    await peer.receive()  # the kernel stamps arrivals from here on
    peer.send(sip_request(via=via + "w2"), endpoint.addr)
    time.sleep(0.15)  # the loop is busy: the datagram waits in the socket
    await peer.receive()
    assert endpoint.waits[1] >= 0.15
    peer.send(sip_request(via=via + "w3"), endpoint.addr)
    await peer.receive()
    assert endpoint.waits[2] < 0.15


async def test_udp_request_gets_received_and_rport_and_the_answer_goes_to_rport(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    # The sent-by names a host and port that are wrong, as behind a NAT.
    peer.send(
        sip_request(via="SIP/2.0/UDP phone.invalid:5070;branch=z9hG4bK2;rport"), endpoint.addr
    )
    response = await peer.receive()
    assert isinstance(response, Response)
    assert response.status == 200
    request, source, transport = endpoint.seen[0]
    assert source == Address("udp", HOST, peer.port)
    assert transport.name == "udp"
    assert request.top_via.received == HOST
    assert request.top_via.rport == peer.port
    assert response.top_via.rport == peer.port


async def test_udp_via_with_the_source_ip_and_no_rport_is_left_alone(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK3"
    peer.send(sip_request(via=via), endpoint.addr)
    await peer.receive()
    request = endpoint.seen[0][0]
    assert str(request.top_via) == via


async def test_udp_answer_without_rport_goes_to_the_sent_by_port(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    sender, listener = await udp_peer(), await udp_peer()
    sender.send(
        sip_request(via=f"SIP/2.0/UDP {HOST}:{listener.port};branch=z9hG4bK4"), endpoint.addr
    )
    response = await listener.receive()
    assert isinstance(response, Response)
    assert response.status == 200
    assert sender.inbox.empty()


async def test_udp_keep_alive_is_neither_message_nor_error(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    peer.send(b"\r\n\r\n", endpoint.addr)
    peer.send(sip_request(via=f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK5"), endpoint.addr)
    await peer.receive()
    assert endpoint.layer.stats.parse_errors == 0
    assert endpoint.layer.stats.received == 1


async def test_udp_malformed_request_gets_400_with_via_call_id_cseq_echoed(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    malformed = sip_request(
        via="SIP/2.0/UDP phone.invalid;branch=z9hG4bK6;rport", extra="Max-Forwards: lots\r\n"
    ).replace(b"Max-Forwards: 70\r\n", b"")
    peer.send(malformed, endpoint.addr)
    response = await peer.receive()
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (400, "Malformed Max-Forwards")
    assert response.call_id == "a84b4c76e66710@pc33"
    assert str(response.cseq) == "314159 OPTIONS"
    assert response.top_via.branch == "z9hG4bK6"
    assert response.top_via.received == HOST
    assert response.top_via.rport == peer.port
    assert response.headers.get("From") == "Alice <sip:alice@atlanta.example.com>;tag=1928301774"
    assert endpoint.seen == []
    stats = endpoint.layer.stats
    assert (stats.parse_errors, stats.answered_errors, stats.dropped) == (1, 1, 0)


async def test_malformed_ack_and_malformed_response_are_dropped_not_answered(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK7"
    peer.send(sip_request("ACK", via=via, extra="Max-Forwards: x\r\n"), endpoint.addr)
    malformed_response = (
        f"SIP/2.0 200 OK\r\nVia: {via}\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n".encode()
    )
    peer.send(malformed_response, endpoint.addr)
    peer.send(sip_request(via=via, call_id="after"), endpoint.addr)
    response = await peer.receive()
    assert response.call_id == "after"
    assert endpoint.layer.stats.parse_errors == 2
    assert endpoint.layer.stats.dropped == 2
    assert endpoint.layer.stats.answered_errors == 0


async def test_a_handler_that_raises_does_not_stop_the_endpoint(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK8"
    peer.send(sip_request(via=via, call_id="explode"), endpoint.addr)
    peer.send(sip_request(via=via, call_id="fine"), endpoint.addr)
    response = await peer.receive()
    assert response.call_id == "fine"


async def test_hundreds_of_random_datagrams_leave_the_endpoint_answering(
    endpoint: Endpoint, udp_peer: Any
) -> None:
    rng = random.Random(3261)
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK9"
    valid = sip_request(via=via, body=b"v=0\r\n")
    for i in range(400):
        if i % 2:
            data = rng.randbytes(rng.randrange(0, 600))
        else:  # a valid message with a few bytes flipped goes deeper into the parser
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        peer.send(data, endpoint.addr)
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the endpoint drain its socket buffer
    response = await ask_options(peer, endpoint, via)
    assert isinstance(response, Response)
    assert response.status == 200
    assert endpoint.layer.stats.parse_errors > 100


async def ask_options(peer: UdpPeer, endpoint: Endpoint, via: str) -> Message:
    """OPTIONS, retransmitted like SIP does over UDP, until its 200 comes back."""
    for _ in range(10):
        peer.send(sip_request(via=via, call_id="probe"), endpoint.addr)
        try:
            while True:
                data, _ = await asyncio.wait_for(peer.inbox.get(), 0.5)
                # Error answers to mangled messages echo their mangled headers.
                if b"Call-ID: probe\r\n" in data:
                    return parse(data)
        except TimeoutError:
            continue
    raise AssertionError("no answer to OPTIONS")


# -- TCP ----------------------------------------------------------------------


async def test_tcp_response_goes_back_on_the_same_connection(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    peer = await tcp_peer(endpoint.port)
    # Nothing listens at the sent-by: only the open connection can carry it.
    peer.send(sip_request(via=f"SIP/2.0/TCP {HOST}:{free_port()};branch=z9hG4bK10"))
    response = await peer.receive()
    assert isinstance(response, Response)
    assert response.status == 200
    _, source, transport = endpoint.seen[0]
    assert source == Address("tcp", HOST, peer.port)
    assert transport.name == "tcp"


async def test_tcp_request_to_a_peer_reuses_its_connection(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    peer = await tcp_peer(endpoint.port)
    peer.send(sip_request(via="SIP/2.0/TCP phone.invalid;branch=z9hG4bK11;rport"))
    await peer.receive()
    request, source, _ = endpoint.seen[0]
    assert request.top_via.received == HOST
    assert request.top_via.rport == peer.port
    outgoing = parse(
        sip_request(
            "NOTIFY", via=f"SIP/2.0/TCP {HOST}:{endpoint.port};branch=z9hG4bK12", call_id="n1"
        )
    )
    assert isinstance(outgoing, Request)
    endpoint.layer.send_request(outgoing, source)
    notify = await peer.receive()
    assert isinstance(notify, Request)
    assert notify.method == "NOTIFY"
    tcp = endpoint.layer.transport_for("tcp")
    assert tcp.flow(source) is not None
    assert getattr(tcp, "connection_count", None) == 1


async def test_tcp_requests_to_the_same_destination_share_one_connection(
    endpoint: Endpoint,
) -> None:
    accepted: list[TcpPeer] = []
    arrived: asyncio.Queue[Message] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(TcpPeer(reader, writer))
        for _ in range(2):
            message = await read_message(reader)
            arrived.put_nowait(message)
            assert isinstance(message, Request)
            writer.write(make_response(message, 200).to_bytes())

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        dest = Address("tcp", HOST, server.sockets[0].getsockname()[1])
        for call_id in ("first", "second"):
            message = parse(
                sip_request(via=f"SIP/2.0/TCP {HOST}:{endpoint.port};branch=z9hG4bK-{call_id}")
            )
            assert isinstance(message, Request)
            message.headers.set("Call-ID", call_id)
            endpoint.layer.send_request(message, dest)
        got = [await asyncio.wait_for(arrived.get(), TIMEOUT) for _ in range(2)]
        assert [m.call_id for m in got] == ["first", "second"]
        assert len(accepted) == 1
        await until(lambda: len(endpoint.seen) == 2)
        assert [m.call_id for m, _, _ in endpoint.seen] == ["first", "second"]
        assert all(isinstance(m, Response) and m.status == 200 for m, _, _ in endpoint.seen)
    finally:
        for peer in accepted:
            peer.writer.close()
        server.close()
        await server.wait_closed()


async def test_tcp_connect_failure_is_reported_as_a_transport_error(
    make_endpoint: Callable[..., Awaitable[Endpoint]],
) -> None:
    errors: list[TransportError] = []
    endpoint = await make_endpoint(on_transport_error=errors.append)
    dest = Address("tcp", HOST, free_port())
    message = parse(sip_request(via=f"SIP/2.0/TCP {HOST}:{endpoint.port};branch=z9hG4bK13"))
    assert isinstance(message, Request)
    endpoint.layer.send_request(message, dest)
    await until(lambda: bool(errors))
    assert errors[0].address == dest
    assert endpoint.layer.stats.dropped == 1


async def test_tcp_keep_alive_ping_is_answered_with_a_pong(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    peer = await tcp_peer(endpoint.port)
    peer.send(b"\r\n\r\n")
    assert await asyncio.wait_for(peer.reader.readexactly(2), TIMEOUT) == b"\r\n"


async def test_tcp_unparseable_message_gets_400_and_the_connection_lives_on(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    peer = await tcp_peer(endpoint.port)
    via = "SIP/2.0/TCP phone.invalid;branch=z9hG4bK14"
    peer.send(sip_request(via=via, cseq_method="INVITE", call_id="bad"))
    peer.send(sip_request(via=via, call_id="good"))
    bad, good = await peer.receive(), await peer.receive()
    assert isinstance(bad, Response) and isinstance(good, Response)
    assert (bad.status, bad.call_id) == (400, "bad")
    assert (good.status, good.call_id) == (200, "good")


async def test_tcp_bad_content_length_gets_400_then_the_connection_closes(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    peer = await tcp_peer(endpoint.port)
    peer.send(sip_request(call_id="unframed").replace(b"Content-Length: 0", b"Content-Length: ?"))
    response = await peer.receive()
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (400, "Malformed Content-Length")
    assert response.call_id == "unframed"
    assert await peer.closed_by_server()
    assert endpoint.layer.stats.answered_errors == 1


async def test_tcp_stream_of_random_bytes_is_cut_off_and_the_endpoint_still_answers(
    endpoint: Endpoint, tcp_peer: Any
) -> None:
    rng = random.Random(5626)
    for _ in range(3):
        peer = await tcp_peer(endpoint.port)
        for _ in range(20):
            peer.send(rng.randbytes(4096))
        # More than a message may hold without a blank line: the framer gives up.
        assert await peer.closed_by_server()
    peer = await tcp_peer(endpoint.port)
    peer.send(sip_request(via="SIP/2.0/TCP phone.invalid;branch=z9hG4bK15"))
    response = await peer.receive()
    assert isinstance(response, Response)
    assert response.status == 200


async def test_tcp_connections_beyond_the_cap_are_refused(
    make_endpoint: Callable[..., Awaitable[Endpoint]], tcp_peer: Any
) -> None:
    endpoint = await make_endpoint(max_tcp_connections=2)
    first, second = await tcp_peer(endpoint.port), await tcp_peer(endpoint.port)
    for peer in (first, second):
        peer.send(sip_request(via="SIP/2.0/TCP phone.invalid;branch=z9hG4bK16"))
        await peer.receive()
    third = await tcp_peer(endpoint.port)
    assert await third.closed_by_server()
    assert endpoint.layer.stats.dropped == 1


async def test_tcp_idle_connection_is_closed(
    make_endpoint: Callable[..., Awaitable[Endpoint]], tcp_peer: Any
) -> None:
    endpoint = await make_endpoint(tcp_idle_timeout=0.2)
    peer = await tcp_peer(endpoint.port)
    assert await peer.closed_by_server(timeout=TIMEOUT)
    tcp = endpoint.layer.transport_for("tcp")
    await until(lambda: getattr(tcp, "connection_count", None) == 0)


async def test_an_idle_connection_still_needed_stays_open(
    make_endpoint: Callable[..., Awaitable[Endpoint]], tcp_peer: Any
) -> None:
    asked: list[Address] = []

    def keep_idle(remote: Address) -> bool:
        asked.append(remote)
        return True

    endpoint = await make_endpoint(tcp_idle_timeout=0.1, keep_idle=keep_idle)
    peer = await tcp_peer(endpoint.port)
    await until(lambda: len(asked) >= 3)
    assert set(asked) == {Address("tcp", HOST, peer.port)}
    peer.send(sip_request(via="SIP/2.0/TCP phone.invalid;branch=z9hG4bK19"))
    assert isinstance(await peer.receive(), Response)


async def test_a_closed_connection_is_reported_with_its_peers_address(
    make_endpoint: Callable[..., Awaitable[Endpoint]], tcp_peer: Any
) -> None:
    closed: list[Address] = []
    endpoint = await make_endpoint(on_flow_closed=closed.append)
    peer = await tcp_peer(endpoint.port)
    peer.send(sip_request(via="SIP/2.0/TCP phone.invalid;branch=z9hG4bK18"))
    await peer.receive()
    [(_, source, transport)] = endpoint.seen
    assert transport.flow(source) is not None and closed == []
    peer.writer.close()
    await until(lambda: closed == [source])
    assert transport.flow(source) is None


async def test_a_connection_refused_at_accept_is_no_flow_that_closed(
    make_endpoint: Callable[..., Awaitable[Endpoint]], tcp_peer: Any
) -> None:
    closed: list[Address] = []
    endpoint = await make_endpoint(on_flow_closed=closed.append, admits=lambda host: False)
    peer = await tcp_peer(endpoint.port)
    assert await peer.closed_by_server()
    await asyncio.sleep(0.05)
    assert closed == []


# -- logging ------------------------------------------------------------------


async def test_full_messages_are_logged_only_when_asked(
    make_endpoint: Callable[..., Awaitable[Endpoint]],
    udp_peer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="callbridge.transport")
    peer = await udp_peer()
    via = f"SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bK17"
    for log_messages in (False, True):
        endpoint = await make_endpoint(log_messages=log_messages)
        peer.send(sip_request(via=via), endpoint.addr)
        await peer.receive()
    received = [r for r in caplog.records if r.getMessage() == "sip.recv"]
    assert len(received) == 2
    fields = [getattr(record, "callbridge_fields", {}) for record in received]
    assert "message" not in fields[0]
    assert fields[1]["message"].startswith("OPTIONS sip:service@")


# -- the pure rules -------------------------------------------------------------


SOURCE = Address("udp", "192.0.2.7", 40123)


def via_of(text: str) -> Any:
    return parse_via(text)


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        # RFC 3581: rport wins, back to the packet's source.
        ("SIP/2.0/UDP 10.0.0.1:5062;rport=40123;received=192.0.2.7", SOURCE, SOURCE),
        # An empty rport never stamped still means "the source".
        ("SIP/2.0/UDP 10.0.0.1:5062;rport", SOURCE, SOURCE),
        # §18.2.2: received, with the sent-by port ...
        (
            "SIP/2.0/UDP 10.0.0.1:5062;received=192.0.2.7",
            SOURCE,
            Address("udp", "192.0.2.7", 5062),
        ),
        # ... or 5060 when there is none.
        ("SIP/2.0/UDP 192.0.2.7", SOURCE, Address("udp", "192.0.2.7", 5060)),
        ("SIP/2.0/UDP 192.0.2.7:5070", SOURCE, Address("udp", "192.0.2.7", 5070)),
        # maddr goes before received.
        (
            "SIP/2.0/UDP 10.0.0.1;maddr=239.255.255.1;received=192.0.2.7",
            SOURCE,
            Address("udp", "239.255.255.1", 5060),
        ),
        # Reliable: connect to received and the sent-by port (rport ignored).
        (
            "SIP/2.0/TCP 10.0.0.1:5070;rport=40123;received=192.0.2.7",
            Address("tcp", "192.0.2.7", 40123),
            Address("tcp", "192.0.2.7", 5070),
        ),
        (
            "SIP/2.0/TLS example.com;received=192.0.2.7",
            Address("tls", "192.0.2.7", 40123),
            Address("tls", "192.0.2.7", 5061),
        ),
        # IPv6 references lose their brackets.
        ("SIP/2.0/UDP [2001:db8::9]:5070", SOURCE, Address("udp", "2001:db8::9", 5070)),
    ],
)
def test_response_destination(via: str, source: Address, expected: Address) -> None:
    assert response_destination(via_of(via), source) == expected


def test_stamp_leaves_the_cached_via_alone_and_replaces_the_top_value() -> None:
    message = parse(
        sip_request(via="SIP/2.0/UDP phone.invalid;branch=z9hG4bK1;rport, SIP/2.0/UDP b.invalid")
    )
    before = message.top_via
    stamp_received(message, SOURCE)
    assert str(before) == "SIP/2.0/UDP phone.invalid;branch=z9hG4bK1;rport"
    assert [str(v) for v in message.vias] == [
        "SIP/2.0/UDP phone.invalid;branch=z9hG4bK1;rport=40123;received=192.0.2.7",
        "SIP/2.0/UDP b.invalid",
    ]


def test_stamp_adds_received_for_an_other_ip_but_not_the_same_one() -> None:
    other = parse(sip_request(via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"))
    same = parse(sip_request(via="SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1"))
    stamp_received(other, SOURCE)
    stamp_received(same, SOURCE)
    assert other.top_via.received == "192.0.2.7"
    assert same.top_via.received is None


def test_salvage_answers_a_request_with_via_call_id_and_cseq() -> None:
    data = sip_request(cseq_method="INVITE")
    response = salvage_error_response(data, ParseError(400, "CSeq mismatch"))
    assert response is not None
    assert (response.status, response.reason) == (400, "CSeq mismatch")
    assert response.call_id == "a84b4c76e66710@pc33"
    assert str(response.cseq) == "314159 INVITE"


@pytest.mark.parametrize(
    "data",
    [
        sip_request("ACK"),
        sip_request(cseq_method="ACK"),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.invalid\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
        sip_request().replace(b"Call-ID: a84b4c76e66710@pc33\r\n", b""),
        sip_request().replace(b"CSeq: 314159 OPTIONS", b"CSeq: many OPTIONS"),
        sip_request(via="not a via"),
        sip_request(via=","),
        sip_request(via=" , ,"),
        sip_request(via="SIP/2.0/UDP a.invalid\x01;branch=z9hG4bK1"),
        b"\x00\x01\x02 garbage",
        b"",
    ],
    ids=[
        "ack",
        "cseq-ack",
        "response",
        "no-call-id",
        "bad-cseq",
        "bad-via",
        "comma-via",
        "commas-via",
        "control",
        "bin",
        "empty",
    ],
)
def test_salvage_declines_what_it_cannot_or_must_not_answer(data: bytes) -> None:
    assert salvage_error_response(data, ParseError(400, "Bad Request")) is None
