"""`/api/v1/routing-rules`: where calls go. Admins write, admins and
supervisors read. The first rule by priority (lower first) whose direction,
external line and masks match decides; the syntax of masks and rewrites is
in `callbridge.pbx.routing`.

The default incoming rule (`is_default`, created by the migration) catches
the incoming calls no other rule takes. It cannot be deleted, stays
incoming and sends calls to an internal line; its target is null until an
admin sets it, and until then the calls it catches are answered 480.
`is_default` is read-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..pbx.routing import MaskError, RewriteError, parse_mask, parse_rewrite
from ..store import InternalLine
from ..store.models import ExternalLine, IvrMenu, RoutingRule
from .deps import Reader, SessionDep, Writer
from .errors import not_found_reference
from .external_lines import invalid, not_null
from .fields import MAX_ID, IdField, IdPath, Input, Limit, Offset

router = APIRouter(prefix="/routing-rules", tags=["routing rules"])


DirectionName = Literal["incoming", "outgoing"]
ActionTypeName = Literal["internal_line", "external_line", "ivr", "deny"]


def _mask(value: str) -> str:
    try:
        parse_mask(value)
    except MaskError as error:
        raise ValueError(error.problem) from None
    return value or "*"


def _rewrite(value: str | None) -> str | None:
    try:
        parse_rewrite(value)
    except RewriteError as error:
        raise ValueError(error.problem) from None
    return value or None


Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(?:.*\S)?$")]
Priority = Annotated[int, Field(ge=0, le=2_000_000_000, description="Lower is tried first.")]
Mask = Annotated[
    str,
    Field(
        max_length=64,
        description="`*` any number; else X, Z, N, [1-5], digits, '+', and '.' or '!' "
        "at the end (see callbridge.pbx.routing).",
    ),
    AfterValidator(_mask),
]
Rewrite = Annotated[
    str,
    Field(
        max_length=128,
        description="Builds the destination: digits, '+', ${number}, ${number:offset:length}; "
        "null keeps it as it is.",
    ),
    AfterValidator(_rewrite),
]


_TARGETS = {
    "internal_line": "internal line's number",
    "external_line": "external line's id",
    "ivr": "IVR menu's id",
}


class Action(Input):
    """`{"type": "internal_line", "target": "101"}` (the line's number),
    `{"type": "external_line", "target": 3}` (the line's id), `{"type": "ivr",
    "target": 2}` (the IVR menu's id) or `{"type": "deny"}`."""

    model_config = ConfigDict(extra="forbid")

    type: ActionTypeName
    target: str | int | None = Field(default=None, validate_default=True)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | int | None, info: ValidationInfo) -> str | int | None:
        kind = info.data.get("type")
        if kind is None:  # the type is wrong, and named already
            return value
        if kind == "deny":
            if value is not None:
                raise ValueError(f"the action {kind} takes no target")
            return None
        what = _TARGETS[kind]
        if value is None or value == "":
            raise ValueError(f"an {kind} action needs the {what} as its target")
        text = str(value)
        if kind == "internal_line":
            if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
                raise ValueError("an internal line's number is digits only")
            return text
        if (
            isinstance(value, bool)
            or not (text.isascii() and text.isdigit())
            or not 1 <= int(text) <= MAX_ID
        ):
            raise ValueError(f"an {what} is a whole number from 1 to {MAX_ID}")
        return int(text)


class ActionOut(BaseModel):
    type: ActionTypeName
    target: str | int | None = Field(
        description="The internal line's number, the external line's id or the IVR menu's id; "
        "null for deny, and for the default incoming rule until its internal line is set."
    )


class RoutingRuleCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: Name
    direction: DirectionName
    external_line_id: IdField | None = Field(None, description="null: calls on any external line.")
    priority: Priority = 100
    action: Action
    source_mask: Mask = "*"
    destination_mask: Mask = "*"
    destination_rewrite: Rewrite | None = None


class RoutingRuleUpdate(Input):
    """Only the fields sent change; `action` is replaced whole."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    direction: DirectionName | None = None
    external_line_id: IdField | None = None
    priority: Priority | None = None
    action: Action | None = None
    source_mask: Mask | None = None
    destination_mask: Mask | None = None
    destination_rewrite: Rewrite | None = None

    _not_null = field_validator(
        "name", "direction", "priority", "action", "source_mask", "destination_mask"
    )(not_null)


class RoutingRuleOut(BaseModel):
    id: int
    name: str
    direction: DirectionName
    external_line_id: int | None
    priority: int
    action: ActionOut
    source_mask: str
    destination_mask: str
    destination_rewrite: str | None
    is_default: bool = Field(description="The default incoming rule (read-only).")
    created_at: datetime
    updated_at: datetime


class RoutingRulePage(BaseModel):
    items: list[RoutingRuleOut]
    total: int


def _out(rule: RoutingRule) -> RoutingRuleOut:
    target: str | int | None = rule.action_target
    if rule.action_type in ("external_line", "ivr") and target is not None:
        target = int(target)
    return RoutingRuleOut(
        id=rule.id,
        name=rule.name,
        direction=rule.direction,
        external_line_id=rule.external_line_id,
        priority=rule.priority,
        action=ActionOut(type=rule.action_type, target=target),
        source_mask=rule.source_mask,
        destination_mask=rule.destination_mask,
        destination_rewrite=rule.destination_rewrite,
        is_default=rule.is_default,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


@router.get("")
async def list_rules(
    session: SessionDep,
    _user: Reader,
    direction: DirectionName | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> RoutingRulePage:
    """In the order they are tried: by priority, then id (filtered by `direction`)."""
    count = select(func.count()).select_from(RoutingRule)
    query = select(RoutingRule)
    if direction is not None:
        count = count.where(RoutingRule.direction == direction)
        query = query.where(RoutingRule.direction == direction)
    total = await session.scalar(count) or 0
    rows = await session.scalars(
        query.order_by(RoutingRule.priority, RoutingRule.id).limit(limit).offset(offset)
    )
    return RoutingRulePage(items=[_out(r) for r in rows], total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such routing rule."},
    409: {"description": "The default incoming rule cannot be deleted."},
    422: {
        "description": "A field is invalid (a mask or rewrite that does not parse), or "
        "names an external or internal line or IVR menu that does not exist; it is named."
    },
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_rule(
    body: RoutingRuleCreate, session: SessionDep, _user: Writer
) -> RoutingRuleOut:
    await _check_references(session, body.external_line_id, body.action)
    rule = RoutingRule(
        name=body.name,
        direction=body.direction,
        external_line_id=body.external_line_id,
        priority=body.priority,
        action_type=body.action.type,
        action_target=None if body.action.target is None else str(body.action.target),
        source_mask=body.source_mask,
        destination_mask=body.destination_mask,
        destination_rewrite=body.destination_rewrite,
        is_default=False,
    )
    session.add(rule)
    await _commit(session, body.external_line_id, body.action)
    return _out(rule)


@router.get("/{rule_id}", responses=_RESPONSES)
async def read_rule(rule_id: IdPath, session: SessionDep, _user: Reader) -> RoutingRuleOut:
    return _out(await _get(session, rule_id))


@router.patch("/{rule_id}", responses=_RESPONSES)
async def update_rule(
    rule_id: IdPath,
    body: RoutingRuleUpdate,
    session: SessionDep,
    _user: Writer,
) -> RoutingRuleOut:
    rule = await _get(session, rule_id)
    changes = body.model_dump(exclude_unset=True, exclude={"action"})
    if rule.is_default:
        if changes.get("direction", "incoming") != "incoming":
            invalid(("direction",), "the default incoming rule stays incoming")
        if body.action is not None and body.action.type != "internal_line":
            invalid(
                ("action", "type"),
                "the default incoming rule sends calls to an internal line",
            )
    external_line_id = changes.get("external_line_id")
    await _check_references(session, external_line_id, body.action)
    for name, value in changes.items():
        setattr(rule, name, value)
    if body.action is not None:
        rule.action_type = body.action.type
        target = body.action.target
        rule.action_target = None if target is None else str(target)
    await _commit(session, external_line_id, body.action)
    await session.refresh(rule)
    return _out(rule)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_rule(rule_id: IdPath, session: SessionDep, _user: Writer) -> Response:
    rule = await _get(session, rule_id)
    if rule.is_default:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the default incoming rule cannot be deleted: it is the fallback that takes "
            "every incoming call no other rule takes; change its target instead",
        )
    await session.delete(rule)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _get(session: SessionDep, rule_id: int) -> RoutingRule:
    rule = await session.get(RoutingRule, rule_id)
    if rule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such routing rule")
    return rule


async def _check_references(
    session: SessionDep, external_line_id: int | None, action: Action | None
) -> None:
    if external_line_id is not None and await session.get(ExternalLine, external_line_id) is None:
        raise not_found_reference(
            "external_line_id", f"no external line with id {external_line_id}"
        )
    if action is None or action.target is None:
        return
    if action.type == "internal_line":
        found = await session.scalar(
            select(InternalLine.id).where(InternalLine.number == str(action.target))
        )
        if found is None:
            invalid(("action", "target"), f"no internal line {action.target}", "not_found")
    elif action.type == "external_line" and (
        await session.get(ExternalLine, int(action.target)) is None
    ):
        invalid(("action", "target"), f"no external line with id {action.target}", "not_found")
    elif action.type == "ivr" and await session.get(IvrMenu, int(action.target)) is None:
        invalid(("action", "target"), f"no IVR menu with id {action.target}", "not_found")


async def _commit(session: SessionDep, external_line_id: int | None, action: Action | None) -> None:
    """Commit; an external line deleted meanwhile is still a 422 naming the field."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        await _check_references(session, external_line_id, action)
        raise
