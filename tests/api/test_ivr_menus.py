"""/api/v1/ivr-menus: menus staged like lines and rules, their greetings
(a WAV or MP3 upload converted to 8 kHz mono, or text espeak-ng speaks),
the roles, every 422 and 409, and what `config/apply` checks of them."""

from __future__ import annotations

import io
import shutil
import wave
from typing import Any

import httpx
import numpy as np
import pytest

from callbridge.media.greetings import DIRECTORY

from ..audio import mp3_bytes, sine, strongest_frequency, wav_bytes
from .conftest import Api
from .test_routing_rules import (
    default_rule,  # noqa: F401 - a fixture
    internal_line,
)

URL = "/api/v1/ivr-menus"
APPLY = "/api/v1/config/apply"
RULES = "/api/v1/routing-rules"
ESPEAK = shutil.which("espeak-ng")

pytestmark = pytest.mark.usefixtures("default_rule")


def menu(**fields: Any) -> dict[str, Any]:
    return {"name": "Main menu", "greeting_kind": "text", "greeting_text": "Press 1", **fields}


async def create(api: Api, **fields: Any) -> dict[str, Any]:
    answer = await api.client.post(URL, json=menu(**fields), headers=api.auth())
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def ivr_rule(api: Api, menu_id: int, name: str = "To the menu") -> httpx.Response:
    return await api.client.post(
        RULES,
        json={
            "name": name,
            "direction": "incoming",
            "priority": 5,
            "action": {"type": "ivr", "target": menu_id},
        },
        headers=api.auth(),
    )


async def set_default_line(api: Api, number: str) -> None:
    rules = (await api.client.get(RULES, headers=api.auth())).json()["items"]
    [default] = [r for r in rules if r["is_default"]]
    answer = await api.client.patch(
        f"{RULES}/{default['id']}",
        json={"action": {"type": "internal_line", "target": number}},
        headers=api.auth(),
    )
    assert answer.status_code == 200, answer.text


def locs(answer: httpx.Response, status: int) -> list[list[Any]]:
    assert answer.status_code == status, answer.text
    return [e["loc"] for e in answer.json()["detail"]]


async def test_a_menu_is_created_read_listed_changed_and_deleted(api: Api) -> None:
    await internal_line(api, "101")
    created = await create(
        api,
        options={"1": {"type": "internal_line", "target": "101"}, "#": {"type": "hangup"}},
        dial_by_extension=True,
    )
    assert created["timeout_seconds"] == 5 and created["repeats"] == 2
    assert created["on_timeout"] == {"type": "hangup", "target": None}
    assert created["on_invalid"] == {"type": "repeat", "target": None}
    assert created["options"]["1"] == {"type": "internal_line", "target": "101"}
    assert created["greeting_file"] is None and created["dial_by_extension"] is True
    url = f"{URL}/{created['id']}"

    second = await create(api, name="Sales", options={"0": {"type": "menu", "target": "1"}})
    assert second["options"]["0"] == {"type": "menu", "target": created["id"]}
    listed = (await api.client.get(URL, headers=api.auth("supervisor"))).json()
    assert listed["total"] == 2 and [m["name"] for m in listed["items"]] == ["Main menu", "Sales"]

    changed = await api.client.patch(
        url,
        json={
            "timeout_seconds": 10,
            "options": {"9": {"type": "number", "target": "+74951234567"}},
            "on_invalid": {"type": "menu", "target": created["id"]},  # itself: a loop is fine
        },
        headers=api.auth(),
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["timeout_seconds"] == 10 and body["name"] == "Main menu"
    assert body["options"] == {"9": {"type": "number", "target": "+74951234567"}}

    await api.client.delete(f"{URL}/{second['id']}", headers=api.auth())
    assert (await api.client.delete(url, headers=api.auth())).status_code == 204
    assert (await api.client.get(url, headers=api.auth())).status_code == 404


async def test_supervisors_read_and_operators_are_refused(api: Api) -> None:
    created = await create(api)
    url = f"{URL}/{created['id']}"
    assert (await api.client.get(url, headers=api.auth("supervisor"))).status_code == 200
    for method, target in (("post", URL), ("patch", url), ("delete", url)):
        kwargs: dict[str, Any] = {} if method == "delete" else {"json": menu()}
        answer = await getattr(api.client, method)(target, headers=api.auth("supervisor"), **kwargs)
        assert answer.status_code == 403
    for target in (URL, url, f"{url}/greeting"):
        assert (await api.client.get(target, headers=api.auth("operator"))).status_code == 403
    upload = await api.client.put(
        f"{url}/greeting",
        content=wav_bytes([sine(440, 0.2, 8000, 0.5)], 8000),
        headers={**api.auth("supervisor"), "content-type": "audio/wav"},
    )
    assert upload.status_code == 403
    assert (await api.client.get(URL)).status_code == 401


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"name": ""}, ["name"]),
        ({"greeting_kind": "video"}, ["greeting_kind"]),
        ({"greeting_text": "x" * 1001}, ["greeting_text"]),
        ({"greeting_text": None}, ["greeting_text"]),
        ({"greeting_text": "  "}, ["greeting_text"]),
        ({"greeting_text": "a\x00b"}, ["greeting_text"]),
        ({"timeout_seconds": 0}, ["timeout_seconds"]),
        ({"timeout_seconds": 61}, ["timeout_seconds"]),
        ({"repeats": 6}, ["repeats"]),
        ({"repeats": -1}, ["repeats"]),
        ({"options": {"A": {"type": "hangup"}}}, ["options", "A", "[key]"]),
        ({"options": {"1": {"type": "voicemail"}}}, ["options", "1", "type"]),
        ({"options": {"1": {"type": "hangup", "target": "1"}}}, ["options", "1", "target"]),
        ({"options": {"1": {"type": "internal_line"}}}, ["options", "1", "target"]),
        ({"options": {"0": {"type": "internal_line", "target": "1O"}}}, ["options", "0", "target"]),
        ({"options": {"1": {"type": "number", "target": "call me"}}}, ["options", "1", "target"]),
        ({"options": {"1": {"type": "menu", "target": -2}}}, ["options", "1", "target"]),
        ({"options": {"1": {"type": "menu", "target": "two"}}}, ["options", "1", "target"]),
        ({"options": {"1": {"type": "hangup", "extra": 1}}}, ["options", "1", "extra"]),
        ({"on_timeout": {"type": "menu"}}, ["on_timeout", "target"]),
        ({"on_invalid": {"type": "number", "target": ""}}, ["on_invalid", "target"]),
        ({"surprise": 1}, ["surprise"]),
    ],
)
async def test_a_bad_field_is_422_naming_it(
    api: Api, fields: dict[str, Any], loc: list[Any]
) -> None:
    answer = await api.client.post(URL, json=menu(**fields), headers=api.auth())
    assert locs(answer, 422) == [["body", *loc]]


async def test_a_destination_naming_a_line_or_menu_that_does_not_exist_is_422(api: Api) -> None:
    missing_line = await api.client.post(
        URL,
        json=menu(options={"2": {"type": "internal_line", "target": "555"}}),
        headers=api.auth(),
    )
    assert locs(missing_line, 422) == [["body", "options", "2", "target"]]
    missing_menu = await api.client.post(
        URL, json=menu(on_timeout={"type": "menu", "target": 77}), headers=api.auth()
    )
    assert locs(missing_menu, 422) == [["body", "on_timeout", "target"]]
    created = await create(api)
    patched = await api.client.patch(
        f"{URL}/{created['id']}",
        json={"options": {"*": {"type": "menu", "target": 78}}},
        headers=api.auth(),
    )
    assert locs(patched, 422) == [["body", "options", "*", "target"]]
    cleared = await api.client.patch(
        f"{URL}/{created['id']}", json={"repeats": None}, headers=api.auth()
    )
    assert locs(cleared, 422) == [["body", "repeats"]]


async def test_a_menu_pointed_at_cannot_be_deleted_and_the_409_names_who(api: Api) -> None:
    target = await create(api, name="Target")
    other = await create(api, name="Other", options={"3": {"type": "menu", "target": target["id"]}})
    rule = await ivr_rule(api, target["id"])
    assert rule.status_code == 201, rule.text
    assert rule.json()["action"] == {"type": "ivr", "target": target["id"]}

    refused = await api.client.delete(f"{URL}/{target['id']}", headers=api.auth())
    assert locs(refused, 409) == [
        ["routing_rules", rule.json()["id"], "action", "target"],
        ["ivr_menus", other["id"]],
    ]
    assert "To the menu" in refused.json()["detail"][0]["msg"]
    assert (await api.client.get(f"{URL}/{target['id']}", headers=api.auth())).status_code == 200


async def test_a_rule_to_a_menu_that_does_not_exist_is_422(api: Api) -> None:
    answer = await ivr_rule(api, 4242)
    assert locs(answer, 422) == [["body", "action", "target"]]


async def upload(api: Api, menu_id: int, body: bytes, content_type: str) -> httpx.Response:
    return await api.client.put(
        f"{URL}/{menu_id}/greeting",
        content=body,
        headers={**api.auth(), "content-type": content_type},
    )


def samples_of(wav: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(wav), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2")


@pytest.mark.parametrize(
    ("content_type", "make"),
    [
        ("audio/wav", lambda: wav_bytes([sine(440, 1.0, 44_100, 0.5)] * 2, 44_100)),
        ("audio/mpeg", lambda: mp3_bytes([sine(440, 1.0, 22_050, 0.5)], 22_050)),
    ],
)
async def test_an_uploaded_greeting_is_kept_as_8_khz_mono_and_read_back_as_wav(
    api: Api, content_type: str, make: Any
) -> None:
    created = await create(api, greeting_kind="audio", greeting_text=None)
    stored = await upload(api, created["id"], make(), content_type)
    assert stored.status_code == 200, stored.text
    name = stored.json()["greeting_file"]
    assert name and (api.settings.data_dir / DIRECTORY / f"{name}.wav").exists()

    read = await api.client.get(f"{URL}/{created['id']}/greeting", headers=api.auth("supervisor"))
    assert read.status_code == 200 and read.headers["content-type"] == "audio/wav"
    samples = samples_of(read.content)
    assert abs(len(samples) - 8000) < 1200  # MP3 pads its frames
    assert abs(strongest_frequency(samples, 8000) - 440) < 10

    removed = await api.client.delete(f"{URL}/{created['id']}/greeting", headers=api.auth())
    assert removed.json()["greeting_file"] is None
    gone = await api.client.get(f"{URL}/{created['id']}/greeting", headers=api.auth())
    assert gone.status_code == 404


async def test_a_greeting_that_is_not_audio_is_refused(api: Api) -> None:
    created = await create(api, greeting_kind="audio", greeting_text=None)
    assert (await upload(api, created["id"], b"text", "text/plain")).status_code == 415
    broken = await upload(api, created["id"], b"RIFF\x00\x00\x00\x00WAVEjunk", "audio/wav")
    assert locs(broken, 422) == [["body"]]
    missing = await upload(api, 9999, wav_bytes([sine(440, 0.1, 8000, 0.5)], 8000), "audio/wav")
    assert missing.status_code == 404
    too_big = await api.client.put(
        f"{URL}/{created['id']}/greeting",
        content=b"\0" * 64,
        headers={**api.auth(), "content-type": "audio/wav", "content-length": str(11 << 20)},
    )
    assert too_big.status_code == 413


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed (`make test-deps`)")
async def test_a_text_greeting_is_spoken_by_espeak_ng(api: Api) -> None:
    created = await create(api, greeting_text="-Press one for sales.")
    read = await api.client.get(f"{URL}/{created['id']}/greeting", headers=api.auth())
    assert read.status_code == 200, read.text
    samples = samples_of(read.content)
    assert 0.5 < len(samples) / 8000 < 10
    assert np.abs(samples.astype(np.int32)).max() > 1000  # speech, not silence


async def test_apply_checks_the_menus_and_carries_them_in_the_version(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]]
) -> None:
    client, running = pbx
    await internal_line(api, "101")
    await internal_line(api, "102")
    await set_default_line(api, "101")
    audio = await create(api, name="Audio", greeting_kind="audio", greeting_text=None)
    spoken = await create(
        api,
        name="Spoken",
        options={"2": {"type": "internal_line", "target": "102"}},
        on_timeout={"type": "menu", "target": audio["id"]},
    )
    # The line a destination names is deleted after the menu was saved.
    lines = (await api.client.get("/api/v1/internal-lines", headers=api.auth())).json()["items"]
    [line_102] = [line["id"] for line in lines if line["number"] == "102"]
    await api.client.delete(f"/api/v1/internal-lines/{line_102}", headers=api.auth())

    refused = await client.post(APPLY, headers=api.auth())
    assert refused.status_code == 422, refused.text
    problems = {(p["object"], p["id"], p["field"]) for p in refused.json()["detail"]}
    expected = {
        ("ivr_menu", audio["id"], "greeting_file"),
        ("ivr_menu", spoken["id"], "options.2.target"),
    }
    if ESPEAK is None:
        expected.add(("ivr_menu", spoken["id"], "greeting_text"))
    assert problems == expected
    assert running == []

    await upload(api, audio["id"], wav_bytes([sine(440, 0.5, 8000, 0.5)], 8000), "audio/wav")
    await api.client.patch(
        f"{URL}/{spoken['id']}",
        json={"greeting_kind": "audio", "options": {"2": {"type": "repeat"}}},
        headers=api.auth(),
    )
    await upload(api, spoken["id"], wav_bytes([sine(300, 0.5, 8000, 0.5)], 8000), "audio/wav")
    rule = await ivr_rule(api, spoken["id"])
    assert rule.status_code == 201, rule.text
    applied = await client.post(APPLY, headers=api.auth())
    assert applied.status_code == 200, applied.text
    assert applied.json()["counts"]["ivr_menus"] == 2
    [snapshot] = running
    assert [m["name"] for m in snapshot["ivr_menus"]] == ["Audio", "Spoken"]


async def test_apply_refuses_a_text_greeting_when_espeak_ng_is_missing(
    api: Api, pbx: tuple[httpx.AsyncClient, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = pbx
    await internal_line(api, "101")
    await set_default_line(api, "101")
    created = await create(api)
    monkeypatch.setenv("PATH", "/nonexistent")  # no espeak-ng to be found
    refused = await client.post(APPLY, headers=api.auth())
    assert refused.status_code == 422
    [problem] = refused.json()["detail"]
    assert (problem["object"], problem["id"], problem["field"]) == (
        "ivr_menu",
        created["id"],
        "greeting_text",
    )
    assert "espeak-ng" in problem["problem"]
