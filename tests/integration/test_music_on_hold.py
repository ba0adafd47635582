"""Music on hold for real: the player sends into a call's media leg over UDP
on loopback with the loop's own timer (what the held phone receives: only
the music, paced at 20 ms, in order), and a running `callbridge serve` takes
an upload over HTTP and plays it again after a restart."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from callbridge.media import LocalMediaEngine, RtpPacket, RtpPortAllocator, g711
from callbridge.media.engine import LocalMediaSession
from callbridge.media.melody import default_music
from callbridge.media.player import Player
from tests.unit.test_media_ports import free_port_range

from ..audio import sine, strongest_frequency, wav_bytes
from .conftest import RtpEndpoint, Server, start_server, stop_server
from .tones import analyse_music

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-pass-for-tests"
URL = "/api/v1/settings/music-on-hold"
HELD_FILL, OTHER_FILL = 0x11, 0x22


@pytest.fixture
async def engine() -> AsyncIterator[LocalMediaEngine]:
    ports = RtpPortAllocator(free_port_range(4), host="127.0.0.1")
    running = LocalMediaEngine(ports, clock=asyncio.get_running_loop().time)
    yield running
    await running.close()


@pytest.fixture
def phones() -> Iterator[tuple[RtpEndpoint, RtpEndpoint]]:
    held, other = RtpEndpoint(HELD_FILL), RtpEndpoint(OTHER_FILL)
    yield held, other
    held.close()
    other.close()


async def wait_for(condition: object, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_held_phone_hears_only_the_music_then_the_other_party_again(
    engine: LocalMediaEngine, phones: tuple[RtpEndpoint, RtpEndpoint]
) -> None:
    held, other = phones
    session: LocalMediaSession = engine.create_session("call-1")
    leg_held, leg_other = await session.add_leg("held"), await session.add_leg("other")
    session.set_remote(leg_held, "127.0.0.1", held.port, {0: "PCMU"})
    session.set_remote(leg_other, "127.0.0.1", other.port, {0: "PCMU"})
    session.connect(leg_held, leg_other)
    other.send_to(leg_other.local_address)
    held.send_to(leg_held.local_address)
    await wait_for(lambda: held.payloads_from(OTHER_FILL) > 5)

    # Hold: the held party's leg leaves the relay and the player sends into it.
    loop = asyncio.get_running_loop()
    player = Player(default_music(), clock=loop.time)
    session.disconnect(leg_held)
    held.received.clear()
    playing = player.play(leg_held, 0, "PCMU")
    await asyncio.sleep(1.0)
    playing.stop()
    await asyncio.sleep(0.1)
    heard = list(held.received)

    packets = [RtpPacket.parse(data) for data, _ in heard]
    assert all(source == leg_held.local_address for _, source in heard)
    assert not any(p.payload == bytes([OTHER_FILL]) * 160 for p in packets)
    assert 40 <= len(packets) <= 56  # one a 20 ms for a second, on a busy 2-core machine
    assert packets[0].marker and {p.ssrc for p in packets} == {packets[0].ssrc}
    first = packets[0]
    for n, packet in enumerate(packets):
        assert packet.sequence_number == (first.sequence_number + n) & 0xFFFF
        assert packet.timestamp == (first.timestamp + 160 * n) & 0xFFFFFFFF
    # What arrives is the melody, in order, from its beginning.
    music = default_music()
    audio = np.concatenate([g711.pcmu_decode(p.payload) for p in packets])
    expected = g711.pcmu_decode(g711.pcmu_encode(music[: len(audio)]))
    assert np.array_equal(audio, expected)
    # ... and what the hold tests listen for says so.
    music_heard = analyse_music(audio)
    assert music_heard.share > 0.9 and music_heard.notes >= 4, music_heard
    # Stopped: nothing more arrives (and nothing of the other party's).
    await asyncio.sleep(0.2)
    assert len(held.received) == len(heard)

    # Resume: the two hear each other again.
    session.connect(leg_held, leg_other)
    held.received.clear()
    await wait_for(lambda: held.payloads_from(OTHER_FILL) > 5)
    assert player.playing == 0


def sign_in(client: httpx.Client) -> dict[str, str]:
    login = client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def test_an_upload_over_http_plays_after_a_restart(tmp_path: Path) -> None:
    wav = wav_bytes([sine(660, 2.0, 22_050, 0.5), sine(660, 2.0, 22_050, 0.5)], 22_050)
    server: Server = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as client:
            auth = sign_in(client)
            too_big = client.put(
                URL,
                content=b"\0" * (10 * 1024 * 1024 + 1),
                headers={**auth, "content-type": "audio/wav"},
            )
            assert too_big.status_code == 413
            response = client.put(URL, content=wav, headers={**auth, "content-type": "audio/x-wav"})
            assert response.status_code == 200, response.text
            assert response.json()["seconds"] == 2.0
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()
    assert "media.music_on_hold source=bundled" in server.log()

    server = start_server(tmp_path, CALLBRIDGE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    try:
        assert "media.music_on_hold source=uploaded seconds=2.0" in server.log()
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as client:
            shown = client.get(URL, headers=sign_in(client)).json()
        assert (shown["source"], shown["seconds"]) == ("uploaded", 2.0)
    finally:
        stop_server(server.process)
    assert server.process.returncode == 0, server.log()
    with wave.open(str(tmp_path / "music-on-hold.wav"), "rb") as reader:
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    assert strongest_frequency(samples) == pytest.approx(660, abs=1)
