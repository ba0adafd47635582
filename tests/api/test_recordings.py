"""`/api/v1/calls/{id}/recording`: the call record's `recording` field, the
file streamed whole or by Range (206, 416), to whoever may see the call and
no one else, deleted by an admin only; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from callbridge.media.recorder import HEADER_SIZE, wav_header
from callbridge.pbx.recordings import relative_path
from callbridge.store import Employee, User
from callbridge.store.models import CallRecord, utcnow

from .conftest import Api

URL = "/api/v1/calls"
AUDIO = bytes(range(256)) * 40  # 10,240 bytes: 2,560 frames


def directory(api: Api) -> Path:
    assert api.app is not None
    path: Path = api.app.state.recordings_dir
    return path


async def recorded_call(api: Api, *, complete: bool = True, **fields: object) -> tuple[str, bytes]:
    """A call with a recording on disk; its id and the file's bytes."""
    call_id = uuid.uuid4().hex
    started = utcnow()
    relative = relative_path(call_id, started)
    content = wav_header(len(AUDIO)) + AUDIO
    path = directory(api) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    await api.add_call(
        id=call_id,
        started_at=started,
        recording=relative,
        recording_size=len(content) if complete else None,
        recording_ms=320 if complete else None,
        **fields,
    )
    return call_id, content


async def operators_and_anothers(api: Api) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """A recorded call of the operator's employee (Alice) and one of Bob's."""
    async with api.database.session() as session:
        alice, bob = Employee(name="Alice"), Employee(name="Bob")
        session.add_all([alice, bob])
        await session.flush()
        await session.execute(
            update(User).where(User.username == "operator").values(employee_id=alice.id)
        )
        await session.commit()
    return (
        await recorded_call(api, employee_id=alice.id),
        await recorded_call(api, employee_id=bob.id),
    )


async def test_a_call_record_carries_its_recordings_url_length_and_size(api: Api) -> None:
    call_id, content = await recorded_call(api)
    answer = await api.client.get(f"{URL}/{call_id}", headers=api.auth())
    assert answer.json()["recording"] == {
        "url": f"/api/v1/calls/{call_id}/recording",
        "duration": 0.32,
        "size": len(content),
    }
    listed = await api.client.get(URL, headers=api.auth())
    assert listed.json()["items"][0]["recording"]["size"] == len(content)


async def test_a_call_without_a_recording_or_still_recording_shows_null(api: Api) -> None:
    plain = await api.add_call()
    running, _ = await recorded_call(api, complete=False)
    for call_id in (plain, running):
        answer = await api.client.get(f"{URL}/{call_id}", headers=api.auth())
        assert answer.json()["recording"] is None
    assert (await api.client.get(f"{URL}/{plain}/recording", headers=api.auth())).status_code == 404
    still = await api.client.get(f"{URL}/{running}/recording", headers=api.auth())
    assert still.status_code == 409


async def test_the_whole_file_comes_with_accept_ranges(api: Api) -> None:
    call_id, content = await recorded_call(api)
    answer = await api.client.get(f"{URL}/{call_id}/recording", headers=api.auth())
    assert answer.status_code == 200
    assert answer.content == content
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["content-type"] == "audio/wav"
    assert answer.headers["content-length"] == str(len(content))


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=44-", HEADER_SIZE, None),
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=-500", -500, None),
        ("bytes=10000-999999", 10000, None),  # past the end: cut to it
        ("bytes=0-0", 0, 1),
    ],
)
async def test_a_range_gets_206_with_exactly_those_bytes(
    api: Api, header: str, start: int, end: int | None
) -> None:
    call_id, content = await recorded_call(api)
    answer = await api.client.get(
        f"{URL}/{call_id}/recording", headers={**api.auth(), "Range": header}
    )
    assert answer.status_code == 206, answer.text
    expected = content[start:end]
    assert answer.content == expected
    first = start % len(content)
    last = first + len(expected) - 1
    assert answer.headers["content-range"] == f"bytes {first}-{last}/{len(content)}"
    assert answer.headers["content-length"] == str(len(expected))


@pytest.mark.parametrize(
    "header",
    [
        "bytes=999999-",  # starts past the end
        "bytes=100-50",  # backwards
        "bytes=-0",
        "bytes=-",
        "items=0-10",
        "bytes=0-10,20-30",  # several: a player seeks with one
        "bytes=abc-def",
        "bytes=" + "9" * 30 + "-",
    ],
)
async def test_a_bad_range_gets_416_with_the_size(api: Api, header: str) -> None:
    call_id, content = await recorded_call(api)
    answer = await api.client.get(
        f"{URL}/{call_id}/recording", headers={**api.auth(), "Range": header}
    )
    assert answer.status_code == 416, answer.text
    assert answer.headers["content-range"] == f"bytes */{len(content)}"
    assert answer.content == b""


async def test_an_operator_fetches_their_own_recording_and_not_anothers(api: Api) -> None:
    (own, content), (other, _) = await operators_and_anothers(api)
    operator = api.auth("operator")
    mine = await api.client.get(f"{URL}/{own}/recording", headers=operator)
    assert mine.status_code == 200 and mine.content == content
    for headers in (operator, {**operator, "Range": "bytes=0-99"}):
        refused = await api.client.get(f"{URL}/{other}/recording", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.content != content[:100]
    unknown = await api.client.get(f"{URL}/{'0' * 32}/recording", headers=operator)
    assert unknown.status_code == 404
    signed_out = await api.client.get(f"{URL}/{own}/recording")
    assert signed_out.status_code == 401


async def test_only_an_admin_deletes_a_recording(api: Api) -> None:
    call_id, _ = await recorded_call(api)
    async with api.database.session() as session:
        record = await session.get(CallRecord, call_id)
        assert record is not None and record.recording is not None
        path = directory(api) / record.recording
    for role in ("supervisor", "operator"):
        refused = await api.client.delete(f"{URL}/{call_id}/recording", headers=api.auth(role))
        assert refused.status_code == 403
    assert path.exists()
    deleted = await api.client.delete(f"{URL}/{call_id}/recording", headers=api.auth())
    assert deleted.status_code == 204
    assert not path.exists()
    assert (await api.client.get(f"{URL}/{call_id}", headers=api.auth())).json()[
        "recording"
    ] is None
    again = await api.client.delete(f"{URL}/{call_id}/recording", headers=api.auth())
    assert again.status_code == 404


async def test_a_stored_path_that_leaves_the_directory_is_never_read(
    api: Api, tmp_path: Path
) -> None:
    # A record altered to point elsewhere (the store is not the API's to
    # trust with paths): refused, not followed.
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    for forged in ("../secret.txt", "/etc/passwd", "2026/12/07/../../../secret.txt"):
        call_id = await api.add_call(recording=forged, recording_size=11, recording_ms=0)
        answer = await api.client.get(f"{URL}/{call_id}/recording", headers=api.auth())
        assert answer.status_code == 404
        assert b"not for you" not in answer.content


async def test_a_recording_whose_file_is_gone_is_404(api: Api) -> None:
    call_id, _ = await recorded_call(api)
    for path in directory(api).rglob(f"{call_id}.wav"):
        path.unlink()
    answer = await api.client.get(f"{URL}/{call_id}/recording", headers=api.auth())
    assert answer.status_code == 404


async def test_a_call_id_path_is_bounded(api: Api) -> None:
    answer = await api.client.get(f"{URL}/{'a' * 33}/recording", headers=api.auth())
    assert answer.status_code == 422


# --- the per line choice -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body", "another"),
    [
        (
            "/api/v1/internal-lines",
            {"number": "101", "username": "alice", "password": "a-long-sip-password"},
            {"number": "102", "username": "bob"},
        ),
        ("/api/v1/external-lines", {"code": "trunk", "server": "192.0.2.10"}, {"code": "t2"}),
    ],
)
async def test_a_line_chooses_whether_its_calls_are_recorded(
    api: Api, url: str, body: dict[str, object], another: dict[str, object]
) -> None:
    created = await api.client.post(url, json={**body, "recording": False}, headers=api.auth())
    assert created.status_code == 201, created.text
    assert created.json()["recording"] is False
    line_url = f"{url}/{created.json()['id']}"
    for value in (True, None):
        changed = await api.client.patch(line_url, json={"recording": value}, headers=api.auth())
        assert changed.status_code == 200 and changed.json()["recording"] is value
    wrong = await api.client.patch(line_url, json={"recording": "sometimes"}, headers=api.auth())
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "recording"]
    refused = await api.client.patch(
        line_url, json={"recording": True}, headers=api.auth("supervisor")
    )
    assert refused.status_code == 403
    default = await api.client.post(url, json={**body, **another}, headers=api.auth())
    assert default.json()["recording"] is None


async def test_the_choice_reaches_the_lines_a_version_runs(api: Api) -> None:
    from callbridge.pbx.config import read_live_state, read_staged, running_config
    from callbridge.store.models import ConfigVersion

    await api.client.post(
        "/api/v1/internal-lines",
        json={
            "number": "101",
            "username": "alice",
            "password": "a-long-sip-password",
            "recording": False,
        },
        headers=api.auth(),
    )
    await api.client.post(
        "/api/v1/external-lines",
        json={"code": "trunk", "server": "192.0.2.10", "recording": True},
        headers=api.auth(),
    )
    async with api.database.session() as session:
        # What an apply stores and runs (the staged set, as a version).
        version = ConfigVersion(id=1, source="test", snapshot=await read_staged(session))
        config = await running_config(version, await read_live_state(session))
    assert config.lines.by_number["101"].recording is False
    assert config.trunks[0].recording is True


# --- links an audio player can play ---------------------------------------------


async def link(api: Api, call_id: str, role: str = "admin") -> str:
    answer = await api.client.post(f"{URL}/{call_id}/recording/link", headers=api.auth(role))
    assert answer.status_code == 201, answer.text
    url: str = answer.json()["url"]
    assert url.startswith(f"/api/v1/calls/{call_id}/recording?token=")
    return url


async def test_a_link_plays_and_seeks_without_the_authorization_header(api: Api) -> None:
    call_id, content = await recorded_call(api)
    url = await link(api, call_id)
    whole = await api.client.get(url)
    assert whole.status_code == 200 and whole.content == content
    part = await api.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == content[100:200]


async def test_a_link_is_good_for_its_call_only_and_until_it_expires(api: Api) -> None:
    call_id, _ = await recorded_call(api)
    other, _ = await recorded_call(api)
    url = await link(api, call_id)
    token = url.rpartition("token=")[2]
    elsewhere = await api.client.get(f"{URL}/{other}/recording?token={token}")
    assert elsewhere.status_code == 401
    forged = await api.client.get(f"{URL}/{call_id}/recording?token={'A' * 32}")
    assert forged.status_code == 401
    overlong = await api.client.get(f"{URL}/{call_id}/recording?token={'A' * 65}")
    assert overlong.status_code == 422 and "token" in overlong.text
    assert api.app is not None
    links = api.app.state.recording_links
    now = links.clock()
    links.clock = lambda: now + 601
    assert (await api.client.get(url)).status_code == 401


async def test_a_link_is_checked_again_like_a_signed_in_request(api: Api) -> None:
    # An operator links only what they may see, and their link dies with
    # their account.
    (own, content), (other, _) = await operators_and_anothers(api)
    refused = await api.client.post(f"{URL}/{other}/recording/link", headers=api.auth("operator"))
    assert refused.status_code == 403
    url = await link(api, own, "operator")
    assert (await api.client.get(url)).content == content
    async with api.database.session() as session:
        await session.execute(update(User).where(User.username == "operator").values(active=False))
        await session.commit()
    assert (await api.client.get(url)).status_code == 401


async def test_no_link_for_a_call_without_a_finished_recording(api: Api) -> None:
    plain = await api.add_call()
    running, _ = await recorded_call(api, complete=False)
    for call_id, expected in ((plain, 404), (running, 409)):
        answer = await api.client.post(f"{URL}/{call_id}/recording/link", headers=api.auth())
        assert answer.status_code == expected
    signed_out = await api.client.post(f"{URL}/{plain}/recording/link")
    assert signed_out.status_code == 401
