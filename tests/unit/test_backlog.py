"""The SIP side's backlog (backlog.py): arrival order, slices of the loop's
time, and the INVITEs that wait in it, with a real loop and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from callbridge.backlog import Backlog, Queued
from callbridge.sip import Request, parse
from callbridge.transport.base import Address

SOURCE = Address("udp", "127.0.0.20", 5060)


def invite(branch: str, call_id: str = "c1@test") -> Request:
    message = parse(
        (
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.20:5060;branch=z9hG4bK{branch}\r\n"
            "Max-Forwards: 70\r\n"
            "To: <sip:bob@127.0.0.1>\r\n"
            "From: <sip:alice@127.0.0.1>;tag=1\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def queued(message: Request) -> Queued:
    return Queued(message, SOURCE, None, arrived=0.0)  # type: ignore[arg-type]


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_what_waits_is_handled_in_order_a_slice_of_the_budget_per_turn() -> None:
    now = [0.0]
    handled: list[str | None] = []

    def handle(item: Queued) -> None:
        handled.append(item.message.top_via.branch)
        now[0] += 0.002  # each message takes 2 ms

    backlog = Backlog(asyncio.get_running_loop(), handle, budget=0.005, clock=lambda: now[0])
    for n in range(7):
        backlog.add(queued(invite(str(n), call_id=f"c{n}@test")))
    assert len(backlog) == 7 and handled == []  # nothing handled inside add
    await turns(1)
    assert handled == ["z9hG4bK0", "z9hG4bK1", "z9hG4bK2"]  # 6 ms: the slice ends
    await turns(1)
    assert len(handled) == 6
    await turns(1)
    assert handled == [f"z9hG4bK{n}" for n in range(7)]
    assert len(backlog) == 0 and backlog.most == 7


async def test_an_invite_waiting_is_known_until_handled_copies_counted() -> None:
    handled: list[Queued] = []
    backlog = Backlog(asyncio.get_running_loop(), handled.append, budget=1.0)
    first = invite("a")
    backlog.add(queued(first))
    backlog.add(queued(invite("a")))  # its retransmission, queued behind it
    assert backlog.waiting(invite("a"))
    assert not backlog.waiting(invite("b"))
    assert not backlog.waiting(invite("a", call_id="other@test"))
    await turns(1)
    assert len(handled) == 2
    assert not backlog.waiting(first)


async def test_a_message_whose_handling_fails_costs_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[str | None] = []

    def handle(item: Queued) -> None:
        if item.message.top_via.branch == "z9hG4bKbad":
            raise RuntimeError("a bug")
        handled.append(item.message.top_via.branch)

    backlog = Backlog(asyncio.get_running_loop(), handle, budget=1.0)
    for branch in ("1", "bad", "2"):
        backlog.add(queued(invite(branch, call_id=f"{branch}@test")))
    await turns(1)
    assert handled == ["z9hG4bK1", "z9hG4bK2"]
    assert "sip.backlog_failed" in caplog.text


async def test_close_drops_what_waits() -> None:
    handled: list[Queued] = []
    backlog = Backlog(asyncio.get_running_loop(), handled.append)
    backlog.add(queued(invite("a")))
    backlog.close()
    await turns(2)
    assert handled == [] and len(backlog) == 0 and not backlog.waiting(invite("a"))
