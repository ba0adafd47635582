"""The log check of the fuzzers catches what an escaped exception leaves in
a server's log, whichever way it is logged: by our own handlers, or by the
event loop's exception handler (asyncio's and uvloop's) when a protocol
callback raises."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import uvloop

from callbridge.logs import TextFormatter

from .findings import findings


@contextmanager
def server_log() -> Iterator[io.StringIO]:
    """The root logger writing as `callbridge serve` does, into a string."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield text
    finally:
        root.handlers[:], root.level = saved


class _Raising(asyncio.DatagramProtocol):
    def __init__(self, received: asyncio.Event) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.set()
        raise RuntimeError("escaped from a protocol callback")


async def _datagram_into_a_raising_protocol() -> None:
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Raising(received), local_addr=("127.0.0.1", 0)
    )
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"OPTIONS", transport.get_extra_info("sockname"))
        await asyncio.wait_for(received.wait(), 5)
        await asyncio.sleep(0.05)  # the loop's handler logs after the callback
    finally:
        transport.close()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_an_exception_the_event_loop_handles_is_a_finding(
    run: Callable[..., object],
) -> None:
    with server_log() as text:
        run(_datagram_into_a_raising_protocol())
    found = findings(text.getvalue())
    assert found and "escaped from a protocol callback" in found[0], text.getvalue()


def test_an_exception_our_handler_logs_is_one_finding_with_its_traceback() -> None:
    with server_log() as text:
        try:
            raise ValueError("a bug")
        except ValueError:
            logging.getLogger("callbridge.transport").exception("sip.handler_failed")
    [found] = findings(text.getvalue())
    assert "sip.handler_failed" in found and "ValueError: a bug" in found


def test_a_parser_failure_is_a_finding_and_ordinary_traffic_is_not() -> None:
    log = (
        "2026-12-07T03:00:00.000Z DEBUG callbridge.transport sip.recv method=OPTIONS\n"
        "2026-12-07T03:00:00.000Z DEBUG callbridge.transport sip.parse_error status=400\n"
        "2026-12-07T03:00:00.000Z INFO callbridge.pbx call.refused status=404\n"
    )
    assert findings(log) == []
    failed = "2026-12-07T03:00:00.001Z DEBUG callbridge.transport sip.parser_failed error=X\n"
    assert len(findings(log + failed)) == 1
