"""Apply: the staged configuration (what the API edits: internal lines,
external lines, IVR menus, routing and normalization rules) checked as a whole and
stored as a numbered version; the running PBX takes a version as one
immutable snapshot. Any version can be applied again (rollback). Versions
keep no credentials: a version runs with the current ones.

Nothing here touches SIP: `RunningConfig` is what the SIP side swaps in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import (
    ConfigVersion,
    ExternalLine,
    InternalLine,
    IvrMenu,
    NormalizationRule,
    RoutingRule,
)
from .dialplan import Dialplan, RuleError, dialplan_of, normalization_rule_of, routing_rule_of
from .ivr import IvrMenu as Menu
from .ivr import menus_of, validate_menus
from .lines import Lines, lines_of
from .normalize import validate_rules as validate_normalization
from .routing import validate_rules as validate_routing
from .trunks import Trunk, trunks_of

# The staged tables, in the order rows can be inserted (references first).
_TABLES: tuple[tuple[str, type[Any]], ...] = (
    ("internal_lines", InternalLine),
    ("external_lines", ExternalLine),
    ("ivr_menus", IvrMenu),
    ("routing_rules", RoutingRule),
    ("normalization_rules", NormalizationRule),
)
# Bookkeeping columns a version does not carry.
_NOT_CONFIG = frozenset({"created_at", "updated_at"})
# Live state no version carries, so that a rollback can neither bring back
# a rotated password nor re-enable a leaver's line, and the versions table
# holds no secret: the credentials, and the leaver switch. Running a version
# takes their current values from the staged tables; a row deleted since
# the version gets the blank values here (no password: nothing signs in).
LIVE_COLUMNS: dict[str, dict[str, Any]] = {
    "internal_lines": {"ha1_md5": "", "ha1_sha256": "", "telephony_disabled": False},
    "external_lines": {"password": ""},
}

Snapshot = dict[str, list[dict[str, Any]]]
# Per table, per row id: the live columns' current values.
LiveState = dict[str, dict[int, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a set cannot be applied: which object (table and id) and field."""

    object: str
    id: int | None
    field: str
    problem: str


class InvalidConfig(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the configuration")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RunningConfig:
    """One applied version as the SIP side uses it."""

    version: int
    lines: Lines
    trunks: tuple[Trunk, ...]
    dialplan: Dialplan
    # By id: what an `ivr` routing action (or a menu's `menu` destination) plays.
    ivr_menus: Mapping[int, Menu] = field(default_factory=lambda: MappingProxyType({}))


async def read_staged(session: AsyncSession) -> Snapshot:
    """The staged configuration, as plain JSON-ready rows."""
    snapshot: Snapshot = {}
    for name, model in _TABLES:
        rows = (await session.scalars(select(model).order_by(model.id))).all()
        snapshot[name] = [_row(row) for row in rows]
    return snapshot


def _row(row: Any) -> dict[str, Any]:
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key not in _NOT_CONFIG
    }


def _rows(snapshot: Snapshot, name: str, live: LiveState | None = None) -> list[Any]:
    """Transient model objects of one table of a snapshot, with the live
    columns' current values when `live` is given (a row deleted since has
    none: no password, so nothing authenticates as it)."""
    model = dict(_TABLES)[name]
    blank = LIVE_COLUMNS.get(name, {})
    rows = []
    for data in snapshot.get(name, []):
        fields = {k: v for k, v in data.items() if k not in blank}
        if live is not None:
            fields |= live.get(name, {}).get(data["id"], blank)
        rows.append(model(**fields))
    return rows


def without_live_state(snapshot: Snapshot) -> Snapshot:
    """`snapshot` as a version keeps it: without credentials or the leaver switch."""
    return {
        name: [
            {k: v for k, v in row.items() if k not in LIVE_COLUMNS.get(name, {})} for row in rows
        ]
        for name, rows in snapshot.items()
    }


async def read_live_state(session: AsyncSession) -> LiveState:
    """The live columns' current values, from the staged tables."""
    state: LiveState = {}
    for name, columns in LIVE_COLUMNS.items():
        model = dict(_TABLES)[name]
        selected = [model.id, *(getattr(model, column) for column in columns)]
        state[name] = {
            row[0]: dict(zip(columns, row[1:], strict=True))
            for row in await session.execute(select(*selected))
        }
    return state


def validate(
    snapshot: Snapshot, *, speech: bool = True, greeting_files: Collection[str] | None = None
) -> list[Problem]:
    """Every reason the set cannot run: references that do not exist,
    inconsistent limits, masks and patterns that do not compile, not
    exactly one default incoming rule with its internal line, and menus
    whose greeting cannot play (`speech`: text can be spoken;
    `greeting_files`: the uploaded greetings there are, when known)."""
    problems: list[Problem] = []
    numbers = {row["number"] for row in snapshot.get("internal_lines", [])}
    trunk_ids = set()
    for line in snapshot.get("external_lines", []):
        trunk_ids.add(line["id"])
        if line["outgoing_lines"] > line["total_lines"]:
            problems.append(
                Problem("external_line", line["id"], "outgoing_lines", "more than total_lines")
            )
        if line["register"] and not (line["login"] and line["password"]):
            problems.append(
                Problem(
                    "external_line", line["id"], "login", "registration needs a login and password"
                )
            )
        if line.get("incoming_auth") and not (line["login"] and line["password"]):
            problems.append(
                Problem(
                    "external_line",
                    line["id"],
                    "incoming_auth",
                    "checking the provider's calls needs a login and password",
                )
            )
    menus = snapshot.get("ivr_menus", [])
    problems += [
        Problem("ivr_menu", p.menu_id, p.field, p.problem)
        for p in validate_menus(
            menus, internal_numbers=numbers, speech=speech, greeting_files=greeting_files
        )
    ]
    routing = []
    for row in snapshot.get("routing_rules", []):
        try:
            routing.append(routing_rule_of(row))
        except RuleError as error:
            problems.append(Problem("routing_rule", row["id"], error.field, error.problem))
    unset_defaults = {r.id for r in routing if r.is_default and r.action.target is None}
    problems += [
        Problem("routing_rule", p.rule_id, p.field, p.problem)
        for p in validate_routing(
            routing,
            internal_numbers=numbers,
            external_line_ids=trunk_ids,
            ivr_menu_ids={row["id"] for row in menus},
        )
        # A default rule not pointed at a line yet is allowed: a new PBX has
        # no lines, and until it is set incoming calls get 480.
        if not (p.rule_id in unset_defaults and p.field == "action.target")
    ]
    normalization = [normalization_rule_of(r) for r in snapshot.get("normalization_rules", [])]
    problems += [
        Problem("normalization_rule", p.rule_id, p.field, p.problem)
        for p in validate_normalization(normalization)
    ]
    for row in snapshot.get("normalization_rules", []):
        if row["external_line_id"] is not None and row["external_line_id"] not in trunk_ids:
            problems.append(
                Problem(
                    "normalization_rule", row["id"], "external_line_id", "no such external line"
                )
            )
    return problems


async def apply_staged(
    session: AsyncSession,
    *,
    by: str | None,
    source: str = "apply",
    speech: bool = True,
    greeting_files: Collection[str] | None = None,
) -> ConfigVersion:
    """Check the staged set and store it as the next version; `InvalidConfig`
    (and nothing stored) when it cannot run. `speech` and `greeting_files`
    are what `validate` checks the menus' greetings against."""
    snapshot = await read_staged(session)
    problems = validate(snapshot, speech=speech, greeting_files=greeting_files)
    if problems:
        raise InvalidConfig(problems)
    version = ConfigVersion(applied_by=by, source=source, snapshot=without_live_state(snapshot))
    session.add(version)
    await session.commit()
    return version


async def stage_version(session: AsyncSession, version: ConfigVersion) -> None:
    """Make `version`'s set the staged one again (the first half of a
    rollback; the caller applies it). Rows keep their ids, so call records
    keep pointing at their lines; other staged edits are discarded."""
    for name, _ in _TABLES:  # references first
        for row in _rows(version.snapshot, name):
            await session.merge(row)
        await session.flush()
    for name, model in reversed(_TABLES):  # what refers to a row goes first
        kept = [row["id"] for row in version.snapshot.get(name, [])]
        await session.execute(delete(model).where(model.id.not_in(kept)))


async def latest(session: AsyncSession) -> ConfigVersion | None:
    return await session.scalar(select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(1))


async def running_config(version: ConfigVersion, live: LiveState) -> RunningConfig:
    """What the SIP side runs for `version` with the current credentials
    and leaver switches `live` (external servers resolved)."""
    snapshot = version.snapshot
    trunks = await trunks_of(_rows(snapshot, "external_lines", live))
    return RunningConfig(
        version=version.id,
        lines=lines_of(_rows(snapshot, "internal_lines", live)),
        trunks=tuple(trunks),
        dialplan=dialplan_of(
            trunks, snapshot.get("routing_rules", []), snapshot.get("normalization_rules", [])
        ),
        ivr_menus=menus_of(snapshot.get("ivr_menus", [])),
    )


def summary(version: ConfigVersion) -> dict[str, Any]:
    """A version as the API lists it: when, by whom, and how much it holds."""
    counts = {name: len(version.snapshot.get(name, [])) for name, _ in _TABLES}
    applied_at: datetime = version.applied_at
    return {
        "id": version.id,
        "applied_at": applied_at,
        "applied_by": version.applied_by,
        "source": version.source,
        "counts": counts,
    }
