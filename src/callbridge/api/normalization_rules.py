"""`/api/v1/normalization-rules`: how the numbers of messages from (incoming)
and to (outgoing) external lines are rewritten. Admins write, admins and
supervisors read.

A rule changes the `fields` it lists (`request_uri`, `from`, `to`, `pai`,
`display_name`) by its `method`: `pattern` rewrites a value its `match` (an
RE2 regular expression, matched in full in linear time: Python's syntax
without backreferences or lookaround) matches into `replacement` (an
`re.sub` template: `\\1`, `\\g<name>`); `e164`, `e164_digits` and `national`
write a phone number in that format, read in the line's region. Only a
`pattern` rule has a match and a replacement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..pbx.normalize import NormalizationError, check_replacement, compile_match
from ..store.models import ExternalLine, NormalizationRule
from .deps import Reader, SessionDep, Writer
from .errors import not_found_reference
from .external_lines import invalid, not_null
from .fields import IdField, IdPath, Input, Limit, Offset

router = APIRouter(prefix="/normalization-rules", tags=["normalization rules"])


DirectionName = Literal["incoming", "outgoing"]
FieldName = Literal["request_uri", "from", "to", "pai", "display_name"]
MethodName = Literal["pattern", "e164", "e164_digits", "national"]


def _regex(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        compile_match(value)
    except NormalizationError as error:
        raise ValueError(error.problem) from None
    return value


def _unique(values: list[FieldName]) -> list[FieldName]:
    return list(dict.fromkeys(values))


Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(?:.*\S)?$")]
Priority = Annotated[int, Field(ge=0, le=2_000_000_000, description="Lower is applied first.")]
Fields = Annotated[
    list[FieldName],
    Field(min_length=1, max_length=5, description="Which numbers of the message change."),
    AfterValidator(_unique),
]
Match = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="An RE2 regular expression: Python's syntax without "
        "backreferences or lookaround.",
    ),
    AfterValidator(_regex),
]
Replacement = Annotated[
    str, Field(max_length=500, description="An re.sub template: \\1, \\g<name>.")
]


class NormalizationRuleCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: Name
    priority: Priority = 100
    direction: DirectionName
    external_line_id: IdField | None = Field(None, description="null: every external line.")
    fields: Fields
    method: MethodName
    match: Match | None = None
    replacement: Replacement | None = None


class NormalizationRuleUpdate(Input):
    """Only the fields sent change. A change to a method other than `pattern`
    clears the match and replacement not sent along."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    priority: Priority | None = None
    direction: DirectionName | None = None
    external_line_id: IdField | None = None
    fields: Fields | None = None
    method: MethodName | None = None
    match: Match | None = None
    replacement: Replacement | None = None

    _not_null = field_validator("name", "priority", "direction", "fields", "method")(not_null)


class NormalizationRuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    priority: int
    direction: DirectionName
    external_line_id: int | None
    fields: list[FieldName]
    method: MethodName
    match: str | None
    replacement: str | None
    created_at: datetime
    updated_at: datetime


class NormalizationRulePage(BaseModel):
    items: list[NormalizationRuleOut]
    total: int


@router.get("")
async def list_rules(
    session: SessionDep,
    _user: Reader,
    direction: DirectionName | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> NormalizationRulePage:
    """In the order they are applied: by priority, then id (filtered by `direction`)."""
    count = select(func.count()).select_from(NormalizationRule)
    query = select(NormalizationRule)
    if direction is not None:
        count = count.where(NormalizationRule.direction == direction)
        query = query.where(NormalizationRule.direction == direction)
    total = await session.scalar(count) or 0
    rows = await session.scalars(
        query.order_by(NormalizationRule.priority, NormalizationRule.id).limit(limit).offset(offset)
    )
    return NormalizationRulePage(
        items=[NormalizationRuleOut.model_validate(r) for r in rows], total=total
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such normalization rule."},
    422: {
        "description": "A field is invalid (a match that is no regular expression, a "
        "replacement that does not fit it), or names an external line that does not "
        "exist; it is named."
    },
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_rule(
    body: NormalizationRuleCreate,
    session: SessionDep,
    _user: Writer,
) -> NormalizationRuleOut:
    _check_method(body.method, body.match, body.replacement)
    await _check_line(session, body.external_line_id)
    rule = NormalizationRule(
        name=body.name,
        priority=body.priority,
        direction=body.direction,
        external_line_id=body.external_line_id,
        fields=list(body.fields),
        method=body.method,
        match=body.match,
        replacement=body.replacement,
    )
    session.add(rule)
    await _commit(session, body.external_line_id)
    return NormalizationRuleOut.model_validate(rule)


@router.get("/{rule_id}", responses=_RESPONSES)
async def read_rule(rule_id: IdPath, session: SessionDep, _user: Reader) -> NormalizationRuleOut:
    return NormalizationRuleOut.model_validate(await _get(session, rule_id))


@router.patch("/{rule_id}", responses=_RESPONSES)
async def update_rule(
    rule_id: IdPath,
    body: NormalizationRuleUpdate,
    session: SessionDep,
    _user: Writer,
) -> NormalizationRuleOut:
    rule = await _get(session, rule_id)
    changes = body.model_dump(exclude_unset=True)
    method = changes.get("method", rule.method)
    if method != "pattern" and "method" in changes:
        changes.setdefault("match", None)
        changes.setdefault("replacement", None)
    _check_method(
        method,
        changes.get("match", rule.match),
        changes.get("replacement", rule.replacement),
    )
    external_line_id = changes.get("external_line_id")
    await _check_line(session, external_line_id)
    for name, value in changes.items():
        setattr(rule, name, value)
    await _commit(session, external_line_id)
    await session.refresh(rule)
    return NormalizationRuleOut.model_validate(rule)


@router.delete("/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_rule(rule_id: IdPath, session: SessionDep, _user: Writer) -> Response:
    await session.delete(await _get(session, rule_id))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _get(session: SessionDep, rule_id: int) -> NormalizationRule:
    rule = await session.get(NormalizationRule, rule_id)
    if rule is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such normalization rule")
    return rule


def _check_method(method: str, match: str | None, replacement: str | None) -> None:
    """A pattern rule needs a match and a replacement that fits it; the other
    methods take neither."""
    if method != "pattern":
        for field, value in (("match", match), ("replacement", replacement)):
            if value is not None:
                invalid((field,), f"only a pattern rule has a {field}; the method is {method}")
        return
    if match is None:
        invalid(("match",), "a pattern rule needs a match pattern", "missing")
    if replacement is None:
        invalid(("replacement",), "a pattern rule needs a replacement", "missing")
    try:
        check_replacement(compile_match(match), replacement)
    except NormalizationError as error:
        invalid((error.field,), error.problem)


async def _check_line(session: SessionDep, external_line_id: int | None) -> None:
    if external_line_id is not None and await session.get(ExternalLine, external_line_id) is None:
        raise not_found_reference(
            "external_line_id", f"no external line with id {external_line_id}"
        )


async def _commit(session: SessionDep, external_line_id: int | None) -> None:
    """Commit; an external line deleted meanwhile is still a 422 naming the field."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        await _check_line(session, external_line_id)
        raise
