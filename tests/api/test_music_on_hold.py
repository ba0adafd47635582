"""/api/v1/settings/music-on-hold: an admin uploads a WAV or MP3, converted
to 8 kHz mono off the event loop, stored under the data directory and
played at once; the limits, the roles, and going back to the bundled melody."""

from __future__ import annotations

import threading
import wave
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from callbridge.api import create_app
from callbridge.media import music as music_module
from callbridge.media.melody import default_music
from callbridge.media.music import FILE_NAME, MAX_UPLOAD_BYTES, MusicOnHold

from ..audio import level_dbfs, mp3_bytes, sine, strongest_frequency, wav_bytes
from .conftest import Api

URL = "/api/v1/settings/music-on-hold"


class NoTimer:
    def cancel(self) -> None:
        pass


@pytest.fixture
def music(api: Api) -> MusicOnHold:
    # A timer that never fires: these tests look at what the player holds.
    return MusicOnHold.load(api.settings.data_dir, call_later=lambda _d, _c: NoTimer())


@pytest.fixture
async def client(api: Api, music: MusicOnHold) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api.settings, api.database, music=music)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def stored(api: Api) -> np.ndarray:
    with wave.open(str(api.settings.data_dir / FILE_NAME), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2")


async def put(
    client: httpx.AsyncClient, api: Api, body: bytes, content_type: str, role: str = "admin"
) -> httpx.Response:
    return await client.put(
        URL, content=body, headers={**api.auth(role), "content-type": content_type}
    )


async def test_the_bundled_melody_plays_until_an_admin_uploads_music(
    api: Api, client: httpx.AsyncClient
) -> None:
    for role in ("admin", "supervisor"):
        response = await client.get(URL, headers=api.auth(role))
        assert response.status_code == 200
        assert response.json() == {"source": "bundled", "seconds": 8.0, "uploaded_at": None}


async def test_a_44_1_khz_stereo_wav_is_stored_as_8_khz_mono_and_played_at_once(
    api: Api, client: httpx.AsyncClient, music: MusicOnHold
) -> None:
    left = sine(440, 3.0, 44_100, 0.5)
    right = np.zeros_like(left)  # the channels are averaged: half the level
    response = await put(client, api, wav_bytes([left, right], 44_100), "audio/wav")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["source"], body["seconds"]) == ("uploaded", 3.0)
    uploaded_at = datetime.fromisoformat(body["uploaded_at"])
    assert abs((uploaded_at - datetime.now(UTC)).total_seconds()) < 60
    samples = stored(api)
    assert len(samples) == 24_000
    middle = samples[400:-400]  # away from the filter's edges
    assert level_dbfs(middle) == pytest.approx(20 * np.log10(0.25 / np.sqrt(2)), abs=0.2)
    assert strongest_frequency(middle) == pytest.approx(440, abs=1)
    assert np.array_equal(music.player.music.samples, samples)
    again = await client.get(URL, headers=api.auth("supervisor"))
    assert again.json() == body
    # After a restart the stored file plays.
    restarted = MusicOnHold.load(api.settings.data_dir)
    assert restarted.info.source == "uploaded" and restarted.info.seconds == 3.0
    assert np.array_equal(restarted.player.music.samples, samples)


async def test_an_mp3_is_decoded_and_converted(api: Api, client: httpx.AsyncClient) -> None:
    tone = sine(1000, 2.0, 44_100, 0.3)
    response = await put(client, api, mp3_bytes([tone, tone], 44_100), "audio/mpeg")
    assert response.status_code == 200, response.text
    assert response.json()["seconds"] == pytest.approx(2.0, abs=0.1)  # the encoder pads a little
    samples = stored(api)
    middle = samples[1600:-1600]
    assert strongest_frequency(middle) == pytest.approx(1000, abs=2)
    assert level_dbfs(middle) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.5)


async def test_the_conversion_runs_off_the_event_loop(
    api: Api, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    decode: Callable[..., np.ndarray] = music_module.decode

    def watched(*args: object, **kwargs: object) -> np.ndarray:
        threads.append(threading.current_thread())
        return decode(*args, **kwargs)

    monkeypatch.setattr(music_module, "decode", watched)
    response = await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), "audio/wav")
    assert response.status_code == 200
    assert threads and threads[0] is not threading.main_thread()


async def test_only_an_admin_changes_the_music(api: Api, client: httpx.AsyncClient) -> None:
    wav = wav_bytes([sine(440, 1, 8000, 0.5)], 8000)
    for role in ("supervisor", "operator"):
        assert (await put(client, api, wav, "audio/wav", role)).status_code == 403
        assert (await client.delete(URL, headers=api.auth(role))).status_code == 403
    assert (await client.get(URL, headers=api.auth("operator"))).status_code == 403
    anonymous = await client.put(URL, content=wav, headers={"content-type": "audio/wav"})
    assert anonymous.status_code == 401
    assert not (api.settings.data_dir / FILE_NAME).exists()


async def test_an_operators_upload_is_refused_for_its_role_before_its_body_is_read(
    api: Api, client: httpx.AsyncClient
) -> None:
    # The route bounds its body after the role check: an operator claiming
    # 20 MiB is refused for the role, and its body is never read.
    response = await client.put(
        URL,
        content=b"x",
        headers={
            **api.auth("operator"),
            "content-type": "audio/wav",
            "content-length": str(20 * 1024 * 1024),
        },
    )
    assert response.status_code == 403


async def test_a_file_over_10_mib_gets_413_declared_or_streamed(
    api: Api, client: httpx.AsyncClient
) -> None:
    big = b"\0" * (MAX_UPLOAD_BYTES + 1)
    declared = await put(client, api, big, "audio/wav")

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    streamed = await client.put(
        URL, content=stream(), headers={**api.auth(), "content-type": "audio/wav"}
    )
    assert declared.status_code == streamed.status_code == 413
    assert "10485760" in declared.json()["detail"]
    # Above the 64 KiB every other route allows, within 10 MiB: taken.
    long_wav = wav_bytes([sine(440, 30, 8000, 0.5)], 8000)
    assert len(long_wav) > 64 * 1024
    assert (await put(client, api, long_wav, "audio/wav")).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["application/octet-stream", "text/plain", "audio/ogg", "application/json"]
)
async def test_other_types_get_415(api: Api, client: httpx.AsyncClient, content_type: str) -> None:
    response = await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), content_type)
    assert response.status_code == 415
    assert "audio/wav" in response.json()["detail"]


async def test_a_missing_content_type_gets_415(api: Api, client: httpx.AsyncClient) -> None:
    response = await client.put(URL, content=b"RIFF", headers=api.auth())
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"not audio at all" * 100, "audio/wav", "not a WAV file"),
        (b"not audio at all" * 100, "audio/mpeg", "not an MP3 file"),
        (b"", "audio/wav", "not a WAV file"),
        (wav_bytes([np.zeros(0)], 8000), "audio/wav", "no audio"),
        (wav_bytes([np.zeros(8000 * 601)], 8000, width=1), "audio/wav", "longer than 600"),
        (wav_bytes([np.zeros(800)] * 9, 8000), "audio/wav", "9 channels"),
        (wav_bytes([np.zeros(800)], 1000), "audio/wav", "1000 Hz"),
    ],
    ids=["garbage-wav", "garbage-mp3", "empty", "no-frames", "too-long", "channels", "rate"],
)
async def test_a_file_that_cannot_play_gets_422_saying_why(
    api: Api, client: httpx.AsyncClient, music: MusicOnHold, body: bytes, content_type: str,
    problem: str,
) -> None:  # fmt: skip
    response = await put(client, api, body, content_type)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["detail"]
    assert detail["loc"] == ["body"] and problem in detail["msg"]
    # Nothing changed: the bundled melody still plays, nothing was stored.
    assert music.info.source == "bundled"
    assert np.array_equal(music.player.music.samples, default_music())
    assert not (api.settings.data_dir / FILE_NAME).exists()


async def test_a_wav_sent_as_mp3_is_refused(api: Api, client: httpx.AsyncClient) -> None:
    response = await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), "audio/mpeg")
    assert response.status_code == 422


async def test_a_failed_upload_keeps_the_music_uploaded_before(
    api: Api, client: httpx.AsyncClient, music: MusicOnHold
) -> None:
    first = await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), "audio/wav")
    assert first.status_code == 200
    before = stored(api)
    assert (await put(client, api, b"RIFF....WAVEjunk", "audio/wav")).status_code == 422
    assert np.array_equal(stored(api), before)
    assert np.array_equal(music.player.music.samples, before)
    assert [p.name for p in Path(api.settings.data_dir).iterdir() if ".tmp" in p.name] == []


async def test_delete_goes_back_to_the_bundled_melody(
    api: Api, client: httpx.AsyncClient, music: MusicOnHold
) -> None:
    await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), "audio/wav")
    response = await client.delete(URL, headers=api.auth())
    assert response.status_code == 200
    assert response.json() == {"source": "bundled", "seconds": 8.0, "uploaded_at": None}
    assert not (api.settings.data_dir / FILE_NAME).exists()
    assert np.array_equal(music.player.music.samples, default_music())
    assert (await client.delete(URL, headers=api.auth())).status_code == 200  # idempotent


async def test_an_unreadable_stored_file_falls_back_to_the_bundled_melody(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    (api.settings.data_dir / FILE_NAME).write_bytes(b"RIFF garbage")
    loaded = MusicOnHold.load(api.settings.data_dir)
    assert loaded.info.source == "bundled"
    assert np.array_equal(loaded.player.music.samples, default_music())
    assert "media.music_on_hold_unreadable" in caplog.text


async def test_the_upload_is_described_in_openapi(api: Api) -> None:
    schema = (await api.client.get("/api/openapi.json")).json()
    put_ = schema["paths"][URL]["put"]
    assert set(put_["requestBody"]["content"]) == {"audio/wav", "audio/mpeg"}
    assert {"413", "415", "422"} <= set(put_["responses"])


async def test_a_file_that_cannot_be_stored_is_a_507_and_the_music_stays(
    api: Api, music: MusicOnHold, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = api.settings.data_dir / "not-a-directory"
    blocked.write_text("a file where the data directory should be")
    unwritable = MusicOnHold(blocked, music.player, music.info)
    app = create_app(api.settings, api.database, music=unwritable)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await put(client, api, wav_bytes([sine(440, 1, 8000, 0.5)], 8000), "audio/wav")
    assert response.status_code == 507
    assert unwritable.info.source == "bundled"
    assert np.array_equal(music.player.music.samples, default_music())
    assert "media.music_on_hold_not_stored" in caplog.text
