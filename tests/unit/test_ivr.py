"""IVR menus: the checks an apply makes of them, the frozen snapshot the
running PBX reads, and the greetings it plays (cached per greeting)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from callbridge.media.audio_files import AudioError
from callbridge.media.greetings import Greetings
from callbridge.pbx.config import Problem, running_config, validate
from callbridge.pbx.ivr import (
    Destination,
    IvrMenu,
    MenuError,
    MenuProblem,
    menu_of,
    menus_pointing_at,
    validate_menus,
)
from callbridge.store.models import ConfigVersion

from ..audio import sine, wav_bytes

FILE = "0123456789abcdef0123456789abcdef"


def row(**fields: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "name": "Main",
        "greeting_kind": "text",
        "greeting_text": "Press 1 for sales",
        "greeting_file": None,
        "timeout_seconds": 5,
        "repeats": 2,
        "dial_by_extension": False,
        "options": {"1": {"type": "internal_line", "target": "101"}},
        "on_timeout": {"type": "hangup"},
        "on_invalid": {"type": "repeat"},
        **fields,
    }


def problems(*rows: dict[str, Any], speech: bool = True) -> list[tuple[int, str]]:
    found = validate_menus(rows, internal_numbers={"101"}, speech=speech, greeting_files={FILE})
    return [(p.menu_id, p.field) for p in found]


def test_a_sound_menu_has_no_problems_and_reads_as_a_frozen_value() -> None:
    assert problems(row()) == []
    menu = menu_of(row(options={"#": {"type": "hangup"}, "0": {"type": "menu", "target": 1}}))
    assert menu.options == (("0", Destination("menu", "1")), ("#", Destination("hangup")))
    assert menu.option("0") == Destination("menu", "1") and menu.option("5") is None
    assert menu.option("0") is not None and menu.option("0").menu_id == 1  # type: ignore[union-attr]
    with pytest.raises(dataclasses.FrozenInstanceError):
        menu.repeats = 3  # type: ignore[misc]


def test_destinations_naming_what_does_not_exist_are_named_by_path() -> None:
    bad = row(
        options={
            "1": {"type": "internal_line", "target": "555"},
            "*": {"type": "menu", "target": 9},
        },
        on_invalid={"type": "menu", "target": 2},
    )
    other = row(id=2, name="Loop", on_timeout={"type": "menu", "target": 2})  # loops are fine
    assert problems(bad, other) == [(1, "options.1.target"), (1, "options.*.target")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"options": {"1": {"type": "menu", "target": -1}}}, "options.1.target"),
        ({"options": {"1": {"type": "menu", "target": True}}}, "options.1.target"),
        ({"options": {"A": {"type": "hangup"}}}, "options.A"),
        ({"options": {"1": {"type": "fax"}}}, "options.1.type"),
        ({"options": {"1": "hangup"}}, "options.1"),
        ({"on_timeout": {"type": "repeat", "target": "1"}}, "on_timeout.target"),
        ({"on_invalid": {"type": "number", "target": "+7 495"}}, "on_invalid.target"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"repeats": 9}, "repeats"),
        ({"repeats": True}, "repeats"),
        ({"greeting_kind": "video"}, "greeting_kind"),
        ({"greeting_text": ""}, "greeting_text"),
        ({"greeting_text": "x" * 1001}, "greeting_text"),
        ({"greeting_kind": "audio"}, "greeting_file"),
        ({"greeting_kind": "audio", "greeting_file": "f" * 32}, "greeting_file"),
        ({"greeting_kind": "audio", "greeting_file": "../../etc/passwd"}, "greeting_file"),
    ],
)
def test_a_menu_that_cannot_run_is_named_by_field(fields: dict[str, Any], field: str) -> None:
    assert problems(row(**fields)) == [(1, field)]


def test_a_text_greeting_needs_espeak_ng() -> None:
    [problem] = validate_menus([row()], internal_numbers={"101"}, speech=False)
    assert (problem.field, "espeak-ng" in problem.problem) == ("greeting_text", True)
    assert problems(row(greeting_kind="audio", greeting_file=FILE), speech=False) == []


def test_a_menu_error_names_the_field() -> None:
    with pytest.raises(MenuError) as caught:
        menu_of(row(on_timeout=None))
    assert caught.value.field == "on_timeout"


def test_menus_pointing_at_a_menu_are_found() -> None:
    rows = [
        row(),
        row(id=2, name="B", options={"3": {"type": "menu", "target": 1}}),
        row(id=3, name="C", on_invalid={"type": "menu", "target": 1}),
        row(id=4, name="D", on_invalid={"type": "menu", "target": 2}),
    ]
    assert menus_pointing_at(1, rows) == [(2, "B"), (3, "C")]


def test_apply_names_menus_and_rules_pointing_at_menus_that_do_not_exist() -> None:
    snapshot = {
        "internal_lines": [{"id": 1, "number": "101"}],
        "ivr_menus": [row(options={"1": {"type": "menu", "target": 8}})],
        "routing_rules": [
            {
                "id": 5,
                "name": "Default",
                "direction": "incoming",
                "external_line_id": None,
                "priority": 10,
                "action_type": "internal_line",
                "action_target": "101",
                "source_mask": "*",
                "destination_mask": "*",
                "destination_rewrite": None,
                "is_default": True,
            },
            {
                "id": 6,
                "name": "IVR",
                "direction": "incoming",
                "external_line_id": None,
                "priority": 1,
                "action_type": "ivr",
                "action_target": "7",
                "source_mask": "*",
                "destination_mask": "*",
                "destination_rewrite": None,
                "is_default": False,
            },
        ],
    }
    assert validate(snapshot) == [
        Problem("ivr_menu", 1, "options.1.target", "there is no IVR menu 8"),
        Problem("routing_rule", 6, "action.target", "there is no IVR menu 7"),
    ]


async def test_the_running_config_carries_the_menus_of_its_version_read_only() -> None:
    version = ConfigVersion(
        id=7, source="apply", snapshot={"ivr_menus": [row(), row(id=2, repeats=99)]}
    )
    running = await running_config(version, {})
    assert list(running.ivr_menus) == [1]  # the one that cannot run is left out
    assert isinstance(running.ivr_menus[1], IvrMenu)
    with pytest.raises(TypeError):
        running.ivr_menus[3] = running.ivr_menus[1]  # type: ignore[index]
    old = await running_config(ConfigVersion(id=1, source="apply", snapshot={}), {})
    assert dict(old.ivr_menus) == {}


def test_menu_problems_are_values() -> None:
    assert MenuProblem(1, "repeats", "x") == MenuProblem(1, "repeats", "x")


async def test_an_uploaded_greeting_is_stored_once_and_played_from_the_cache(
    tmp_path: Path,
) -> None:
    greetings = Greetings(tmp_path)
    data = wav_bytes([sine(440, 0.5, 16_000, 0.5)], 16_000)
    name, seconds = await greetings.store(data, "audio/wav")
    assert (name, seconds) == ((await greetings.store(data, "audio/wav"))[0], 0.5)
    assert greetings.names() == {name}
    menu = menu_of(row(greeting_kind="audio", greeting_file=name))
    first = await greetings.greeting_samples(menu)
    assert first.dtype == np.int16 and len(first) == 4000
    greetings.path(name).unlink()  # the cache answers without the file
    assert await greetings.greeting_samples(menu) is first
    with pytest.raises(AudioError):
        await Greetings(tmp_path).greeting_samples(menu)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_text_is_spoken_at_8_khz_and_a_voice_espeak_ng_lacks_is_an_audio_error(
    tmp_path: Path,
) -> None:
    menu = menu_of(row(greeting_text="--help"))  # text, not an option
    samples = await Greetings(tmp_path).greeting_samples(menu)
    assert samples.dtype == np.int16 and 0.2 < len(samples) / 8000 < 5
    with pytest.raises(AudioError):
        await Greetings(tmp_path, voice="zzzz").greeting_samples(menu)
