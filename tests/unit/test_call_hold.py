"""Hold with music, with no sockets and a fake clock: callbridge answers the
holding phone itself, the held party hears the player instead of a
re-INVITE, and the resume joins the two again (tests/unit/call_harness.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from callbridge.pbx.call import CallRefused
from callbridge.sip.sdp import parse_sdp

from .call_harness import ALICE, BOB, Dialog, World, sdp
from .test_call_flows import answered


@dataclasses.dataclass
class FakePlaying:
    leg: Any
    payload_type: int
    encoding: str
    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True


class FakePlayer:
    def __init__(self) -> None:
        self.plays: list[FakePlaying] = []

    def play(self, leg: Any, payload_type: int, encoding: str) -> FakePlaying:
        playing = FakePlaying(leg, payload_type, encoding)
        self.plays.append(playing)
        return playing

    def now(self) -> list[FakePlaying]:
        return [p for p in self.plays if not p.stopped]


def with_music(world: World) -> FakePlayer:
    player = FakePlayer()
    world.b2bua.player = player
    return player


def direction(body: bytes) -> str:
    described = parse_sdp(body)
    return described.effective_direction(described.media[0]).value


async def test_a_phone_holding_is_answered_here_and_the_other_hears_music() -> None:
    world = World()
    player = with_music(world)
    fork, _, dialog = await answered(world)
    before = parse_sdp(world.sip.responses[-1][1].body).origin.sess_version
    session = world.media.sessions[world.recorder.only().id]
    caller_media, callee_media = session.legs
    invites_to_bob = len(world.sip.requests("INVITE", to=fork.peer))

    _, reinvite, now = world.in_dialog(dialog, "INVITE", sdp(7000, direction="sendonly"))
    assert now is None
    [(_, ok)] = [(t, r) for t, r in world.sip.responses if t is reinvite]
    assert ok.status == 200 and direction(ok.body) == "recvonly"
    assert parse_sdp(ok.body).origin.sess_version == before + 1  # our session, one version on
    assert len(world.sip.requests("INVITE", to=fork.peer)) == invites_to_bob  # bob is not asked
    assert caller_media.peer is None and callee_media.peer is None
    [playing] = player.now()
    assert (playing.leg, playing.payload_type, playing.encoding) == (callee_media, 0, "PCMU")
    call = next(iter(world.b2bua.in_memory))
    assert call.held_by == {"caller"}

    world.in_dialog(dialog, "ACK", cseq=dialog.cseq)
    world.clock.advance(42)
    _, resumed, now = world.in_dialog(dialog, "INVITE", sdp(7000))
    assert now is None, now
    [(_, ok)] = [(t, r) for t, r in world.sip.responses if t is resumed]
    assert ok.status == 200 and direction(ok.body) == "sendrecv"
    assert player.now() == [] and caller_media.peer is callee_media
    assert call.held_by == set() and call.hold_seconds == pytest.approx(42)


async def test_the_called_phone_holding_is_answered_here_from_our_offer() -> None:
    world = World()
    player = with_music(world)
    fork, _, _ = await answered(world)
    offered = parse_sdp(fork.request.body)
    session = world.media.sessions[world.recorder.only().id]
    caller_media, _ = session.legs
    invites_to_alice = len(world.sip.requests("INVITE"))
    bob = Dialog(fork.request.call_id, "bob-tag", fork.request.from_.tag or "", cseq=1)

    _, reinvite, now = world.in_dialog_as_callee(bob, "INVITE", sdp(8000, direction="sendonly"))
    assert now is None
    [(_, ok)] = [(t, r) for t, r in world.sip.responses if t is reinvite]
    assert ok.status == 200 and direction(ok.body) == "recvonly"
    answered_with = parse_sdp(ok.body)
    # Our offer of the INVITE, one version on: bob's media stays where it was.
    assert answered_with.origin.sess_version == offered.origin.sess_version + 1
    assert answered_with.media[0].port == offered.media[0].port
    assert len(world.sip.requests("INVITE")) == invites_to_alice  # alice is not asked
    [playing] = player.now()
    assert playing.leg is caller_media  # alice hears the music
    call = next(iter(world.b2bua.in_memory))
    assert call.held_by == {"callee"}


async def test_a_local_answer_names_only_what_the_re_offer_has_one_version_on() -> None:
    world = World()
    with_music(world)
    fork, _, dialog = await answered(world)
    bob = Dialog(fork.request.call_id, "bob-tag", fork.request.from_.tag or "", cseq=1)
    # Alice's re-offer is relayed to bob (no hold): our SDP to him, version up.
    world.in_dialog(dialog, "INVITE", sdp(7000))
    relayed = world.sip.last_request("INVITE", to=fork.peer)
    relayed_version = parse_sdp(relayed.request.body).origin.sess_version
    relayed.respond(200, to_tag="bob-tag", body=sdp(8000))
    world.in_dialog(dialog, "ACK", cseq=dialog.cseq)
    # Bob holds offering PCMU alone: our answer is his, one version on.
    pcmu_only = (
        sdp(8000, direction="sendonly")
        .replace(b"RTP/AVP 0 101", b"RTP/AVP 0")
        .replace(b"a=rtpmap:101 telephone-event/8000\r\n", b"")
    )
    _, reinvite, _ = world.in_dialog_as_callee(bob, "INVITE", pcmu_only)
    [(_, ok)] = [(t, r) for t, r in world.sip.responses if t is reinvite]
    answer = parse_sdp(ok.body)
    assert ok.status == 200 and answer.media[0].formats == ("0",), ok.body
    assert b"telephone-event" not in ok.body
    assert answer.origin.sess_version == relayed_version + 1


async def test_without_music_a_hold_is_relayed_to_the_other_phone() -> None:
    world = World()
    fork, _, dialog = await answered(world)
    world.in_dialog(dialog, "INVITE", sdp(7000, direction="sendonly"))
    relayed = world.sip.last_request("INVITE", to=fork.peer)
    assert direction(relayed.request.body) == "sendonly"


async def test_a_party_whose_codec_the_player_cannot_send_gets_the_hold_relayed() -> None:
    world = World()
    player = with_music(world)
    device = world.register(BOB)
    world.invite(ALICE, "102")
    await world.settle()
    fork = world.sip.last_request("INVITE", to=device)
    opus = (
        sdp(8000)
        .replace(b"RTP/AVP 0 101", b"RTP/AVP 96 101")
        .replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:96 opus/48000/2")
    )
    fork.respond(200, to_tag="bob-tag", body=opus)
    ok = world.sip.responses[-1][1]
    dialog = Dialog(ok.call_id, ok.from_.tag or "", ok.to.tag or "", cseq=2)
    world.in_dialog(dialog, "ACK", cseq=2)
    world.in_dialog(dialog, "INVITE", sdp(7000, direction="sendonly"))
    assert direction(world.sip.last_request("INVITE", to=fork.peer).request.body) == "sendonly"
    assert player.plays == []


async def test_the_api_holds_the_employees_party_and_resumes_it() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=7), BOB))
    player = with_music(world)
    _, _, _ = await answered(world)
    record = world.recorder.only().id
    session = world.media.sessions[record]
    caller_media, callee_media = session.legs
    world.b2bua.hold(record, 7, True)
    [playing] = player.now()
    assert playing.leg is callee_media  # bob hears the music; alice hears nothing
    assert caller_media.peer is None
    world.b2bua.hold(record, 7, False)
    assert player.now() == [] and caller_media.peer is callee_media


async def test_the_api_refuses_a_stranger_and_a_call_not_answered() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=7), BOB))
    with_music(world)
    world.register(BOB)
    world.invite(ALICE, "102")
    await world.settle()
    record = world.recorder.only().id
    with pytest.raises(CallRefused) as not_answered:
        world.b2bua.hold(record, 7, True)
    assert not_answered.value.status == 409
    with pytest.raises(CallRefused) as stranger:
        world.b2bua.hold(record, 8, True)
    assert stranger.value.status == 403
    with pytest.raises(CallRefused) as unknown:
        world.b2bua.hold("no-such-call", 7, True)
    assert unknown.value.status == 409


async def test_both_holding_nobody_hears_music_until_one_resumes() -> None:
    world = World(
        lines=(dataclasses.replace(ALICE, employee_id=7), dataclasses.replace(BOB, employee_id=8))
    )
    player = with_music(world)
    await answered(world)
    record = world.recorder.only().id
    caller_media, _ = world.media.sessions[record].legs
    world.b2bua.hold(record, 7, True)
    world.b2bua.hold(record, 8, True)
    assert player.now() == []
    world.b2bua.hold(record, 7, False)  # bob still holds: alice hears the music
    [playing] = player.now()
    assert playing.leg is caller_media


async def test_music_stops_when_a_held_call_ends_and_the_hold_time_is_counted() -> None:
    world = World(lines=(dataclasses.replace(ALICE, employee_id=7), BOB))
    player = with_music(world)
    _, _, dialog = await answered(world)
    record = world.recorder.only().id
    world.b2bua.hold(record, 7, True)
    world.clock.advance(10)
    call = next(iter(world.b2bua.in_memory))
    world.in_dialog(dialog, "BYE")
    assert player.now() == []
    assert call.hold_seconds == pytest.approx(10)
    assert world.recorder.only().hold_seconds == 10
    with world.events.subscribe(None, since=0) as events:
        [ended] = [
            e for e in [events.next_ready() for _ in range(events.pending)] if e.type == "ended"
        ]
    assert ended.data["hold_seconds"] == 10
