"""IVR menus as the running PBX reads them, and the checks an apply makes
of them. Pure: menus come in as stored rows and go out as frozen values;
nothing here touches the store, a file or a socket.

A menu plays its greeting, then waits `timeout_seconds` for a digit. A
digit with an option goes to its destination; with `dial_by_extension`,
digits that make an internal line's number ring that line; any other digit
goes to `on_invalid`. No digit in time plays the greeting again, up to
`repeats` more times, then goes to `on_timeout`. A destination is one of:

- `{"type": "internal_line", "target": "101"}` rings the line;
- `{"type": "number", "target": "+74951234567"}` dials the number out
  through the outgoing routing rules, as a phone of the PBX would;
- `{"type": "menu", "target": 2}` goes to menu 2 (menus may loop);
- `{"type": "repeat"}` plays this menu's greeting again;
- `{"type": "hangup"}` ends the call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

from ..logs import log_event

logger = logging.getLogger("callbridge.pbx")

DestinationType = Literal["internal_line", "number", "menu", "repeat", "hangup"]
DESTINATION_TYPES: tuple[DestinationType, ...] = get_args(DestinationType)
GreetingKind = Literal["audio", "text"]
GREETING_KINDS: tuple[GreetingKind, ...] = get_args(GreetingKind)

DIGITS = "0123456789*#"
MAX_GREETING_TEXT = 1000
TIMEOUT_SECONDS = (1, 60)
REPEATS = (0, 5)
DEFAULT_TIMEOUT_SECONDS = 5
DEFAULT_REPEATS = 2
# Ids are INTEGER columns: 1 to 2^31-1.
MAX_MENU_ID = 2**31 - 1
# What a caller's phone can dial out: digits, a leading +, * and #.
NUMBER = re.compile(r"\+?[0-9*#]{1,32}")
# An internal line's number, as the lines API takes it.
LINE_NUMBER = re.compile(r"[0-9]{1,15}")
# A converted greeting's name under the data directory (its hash).
GREETING_FILE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a digit, a timeout or a wrong digit sends the call: `target`
    is the line's number, the number dialled out, or the menu's id (as
    text); None for `repeat` and `hangup`."""

    type: DestinationType
    target: str | None = None

    @property
    def menu_id(self) -> int | None:
        return int(self.target) if self.type == "menu" and self.target else None


@dataclass(frozen=True, slots=True)
class IvrMenu:
    """One menu of an applied version: what the runtime plays and reads."""

    id: int
    name: str
    greeting_kind: GreetingKind
    greeting_text: str | None
    greeting_file: str | None
    timeout_seconds: int
    repeats: int
    dial_by_extension: bool
    # By digit, in DIGITS order: (digit, destination) pairs.
    options: tuple[tuple[str, Destination], ...]
    on_timeout: Destination
    on_invalid: Destination

    def option(self, digit: str) -> Destination | None:
        """The destination of `digit`, or None when the menu has no such option."""
        return next((d for key, d in self.options if key == digit), None)


class MenuError(ValueError):
    """A stored menu that cannot run; `field` is its path in the menu
    (`options.1.target`), `problem` a sentence fit for a 422."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MenuProblem:
    """Why a set of menus (or a rule pointing at one) cannot be applied."""

    menu_id: int
    field: str
    problem: str


def destination_problem(value: Any) -> tuple[str, str] | None:
    """What is wrong with a destination as JSON gives it, as (field within
    it, problem), or None when its shape is right (targets that must exist
    are checked by `validate_menus`)."""
    if not isinstance(value, Mapping):
        return "", "a destination is an object with a type (and a target)"
    kind, target = value.get("type"), value.get("target")
    if kind not in DESTINATION_TYPES:
        return "type", f"the type is one of {', '.join(DESTINATION_TYPES)}"
    if extra := set(value) - {"type", "target"}:
        return sorted(map(str, extra))[0], "a destination has only a type and a target"
    if kind in ("repeat", "hangup"):
        return None if target is None else ("target", f"the destination {kind} takes no target")
    if target is None or target == "":
        return "target", f"a {kind} destination needs a target"
    if kind == "internal_line":
        if not isinstance(target, str) or not LINE_NUMBER.fullmatch(target):
            return "target", "an internal line's number is 1 to 15 digits, as text"
    elif kind == "number":
        if not isinstance(target, str) or not NUMBER.fullmatch(target):
            return "target", "a number is up to 32 digits, '*' and '#', with a leading '+' or not"
    elif isinstance(target, bool) or not isinstance(target, int | str) or not _menu_id(target):
        return "target", f"a menu's id is a whole number from 1 to {MAX_MENU_ID}"
    return None


def _menu_id(value: int | str) -> bool:
    text = str(value)
    return text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_MENU_ID


def destination_of(value: Any, field: str) -> Destination:
    """A destination from its stored JSON; `MenuError` names `field` (and
    the part of it at fault) when it is not one."""
    problem = destination_problem(value)
    if problem is not None:
        part, text = problem
        raise MenuError(f"{field}.{part}" if part else field, text)
    target = value.get("target")
    return Destination(value["type"], None if target is None else str(target))


def menu_of(row: Mapping[str, Any]) -> IvrMenu:
    """A menu from its stored row; `MenuError` names the first field that
    cannot run (what the API lets in always can)."""
    kind = row["greeting_kind"]
    if kind not in GREETING_KINDS:
        raise MenuError("greeting_kind", "the greeting is `audio` or `text`")
    for name, (low, high) in (("timeout_seconds", TIMEOUT_SECONDS), ("repeats", REPEATS)):
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise MenuError(name, f"a whole number from {low} to {high}")
    options = row["options"] or {}
    if not isinstance(options, Mapping):
        raise MenuError("options", "the options map digits to destinations")
    pairs = []
    for digit in sorted(options, key=lambda d: DIGITS.find(d) if isinstance(d, str) else -1):
        if not isinstance(digit, str) or len(digit) != 1 or digit not in DIGITS:
            raise MenuError(f"options.{_shown(digit)}", "an option's key is one of 0-9, * and #")
        pairs.append((digit, destination_of(options[digit], f"options.{digit}")))
    return IvrMenu(
        id=row["id"],
        name=row["name"],
        greeting_kind=kind,
        greeting_text=row["greeting_text"],
        greeting_file=row["greeting_file"],
        timeout_seconds=row["timeout_seconds"],
        repeats=row["repeats"],
        dial_by_extension=bool(row["dial_by_extension"]),
        options=tuple(pairs),
        on_timeout=destination_of(row["on_timeout"], "on_timeout"),
        on_invalid=destination_of(row["on_invalid"], "on_invalid"),
    )


def _shown(key: object) -> str:
    """A key from the store, printable and short, to name in a problem."""
    text = str(key)
    return "".join(c if c.isprintable() else "?" for c in text)[:8]


def destinations(menu: IvrMenu) -> Iterable[tuple[str, Destination]]:
    """Every destination of `menu`, with its field path."""
    for digit, destination in menu.options:
        yield f"options.{digit}", destination
    yield "on_timeout", menu.on_timeout
    yield "on_invalid", menu.on_invalid


def validate_menus(
    rows: Iterable[Mapping[str, Any]],
    *,
    internal_numbers: Collection[str],
    speech: bool,
    greeting_files: Collection[str] | None = None,
) -> list[MenuProblem]:
    """Every problem of the set, empty when it can be applied: each menu
    runs (`menu_of`), each destination's line and menu exists, a text
    greeting has text and can be spoken (`speech`: espeak-ng is installed)
    and an audio greeting has its file (among `greeting_files`, when given)."""
    listed = list(rows)
    menu_ids = {row["id"] for row in listed}
    problems: list[MenuProblem] = []
    for row in listed:
        try:
            menu = menu_of(row)
        except MenuError as error:
            problems.append(MenuProblem(row["id"], error.field, error.problem))
            continue

        def problem(field: str, text: str, menu_id: int = menu.id) -> None:
            problems.append(MenuProblem(menu_id, field, text))

        if menu.greeting_kind == "text":
            if not (menu.greeting_text or "").strip():
                problem("greeting_text", "a text greeting needs the text to speak")
            elif len(menu.greeting_text or "") > MAX_GREETING_TEXT:
                problem("greeting_text", f"at most {MAX_GREETING_TEXT} characters")
            elif not speech:
                problem(
                    "greeting_text",
                    "espeak-ng is not installed on the server, so a text greeting cannot be "
                    "spoken: install it (Debian package espeak-ng) or upload the greeting",
                )
        elif menu.greeting_file is None:
            problem("greeting_file", "an audio greeting needs its file: upload it first")
        elif not GREETING_FILE.fullmatch(menu.greeting_file) or (
            greeting_files is not None and menu.greeting_file not in greeting_files
        ):
            problem("greeting_file", "the greeting's file is missing: upload it again")
        for field, destination in destinations(menu):
            if destination.type == "internal_line" and destination.target not in internal_numbers:
                problem(f"{field}.target", f"there is no internal line {destination.target}")
            elif destination.type == "menu" and destination.menu_id not in menu_ids:
                problem(f"{field}.target", f"there is no IVR menu {destination.target}")
    return problems


def menus_of(rows: Iterable[Mapping[str, Any]]) -> Mapping[int, IvrMenu]:
    """The menus of an applied version by id, read-only. A menu that does
    not run (validation keeps such menus out of an apply) is left out and
    logged, never fatal."""
    menus = {}
    for row in rows:
        try:
            menus[row["id"]] = menu_of(row)
        except MenuError as error:
            log_event(logger, logging.WARNING, "ivr.menu_skipped", menu=row["id"], error=str(error))
    return MappingProxyType(menus)


def menus_pointing_at(menu_id: int, rows: Iterable[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """The other menus with a destination `menu_id`: (id, name) pairs."""
    wanted = {"type": "menu", "target": menu_id}
    found = []
    for row in rows:
        stored = [*(row["options"] or {}).values(), row["on_timeout"], row["on_invalid"]]
        if row["id"] != menu_id and wanted in stored:
            found.append((row["id"], row["name"]))
    return found
