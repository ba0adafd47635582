"""What the SIP service does with how long a message waited (app.py): it
feeds overload control, and a message its sender has given up on is not
worked on."""

from __future__ import annotations

import asyncio
import socket

from callbridge.app import SipService
from callbridge.settings import Settings
from callbridge.sip import parse
from callbridge.transport import Address


def options(port: int, branch: str) -> bytes:
    return (
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\n"
        "To: <sip:127.0.0.1>\r\nCall-ID: load-test\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_a_message_that_waited_longer_than_64_t1_is_dropped_and_counted() -> None:
    sip = SipService(Settings(sip_host="127.0.0.1", sip_port=0, public_address="127.0.0.1"))
    await sip.start()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.settimeout(2)
    port = phone.getsockname()[1]
    udp = sip.transport.transport_for("udp")
    source = Address("udp", "127.0.0.1", port)
    try:
        sip._on_message(parse(options(port, "late")), source, udp, 33.0)
        assert sip.given_up == 1
        assert sip.stats()["given_up"] == 1
        sip._on_message(parse(options(port, "fresh")), source, udp, 0.2)
        await asyncio.sleep(0.01)  # behind (0.2 s): handled from the backlog, a turn later
        answer = parse(phone.recv(65536))
        assert answer.top_via.branch == "z9hG4bKfresh"  # the late one got nothing
        assert 0.2 <= sip.overload.worst_delay < 1.0  # its wait: the socket, then the backlog
    finally:
        phone.close()
        await sip.stop()
