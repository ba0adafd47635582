"""`/api/v1/calls`: the call records, newest first, with who handled them and
the card each belongs to; linking a call to a card. Admins and supervisors
see every call; an operator sees the calls of their own employee and those
linked to a card they can see, and another's call is a 403.

The call shape (`CallOut`) and a page of calls are shared with the card and
employee histories."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import status as http_status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..crm import cards
from ..crm.employees import names_of
from ..crm.history import COUNT_LIMIT, HistoryOf, count_calls, history_page
from ..store import InternalLine, User
from ..store.models import CallDirection, CallRecord, CallStatus, CardType, Note
from .deps import SessionDep, Staff
from .errors import not_found_reference
from .fields import CallIdPath, EmployeeRef, IdField, IdQuery, Input, Instant, Limit, Offset
from .internal_lines import Number

router = APIRouter(prefix="/calls", tags=["calls"])


class CardRef(BaseModel):
    """A card a call or note belongs to; one the user may not open shows
    only its type (`id` and `name` null): "a card you cannot open"."""

    type: CardType
    id: int | None
    name: str | None


def _hidden(type_: CardType) -> CardRef:
    return CardRef(type=type_, id=None, name=None)


class RecordingOut(BaseModel):
    url: str = Field(description="Where to fetch it: a WAV, 8 kHz 16-bit stereo, Range-capable.")
    duration: float = Field(description="Seconds of audio.")
    size: int = Field(description="Bytes.")


def recording_of(record: CallRecord) -> RecordingOut | None:
    """The record's recording once its file is complete (null while it is
    being written, and for a call not recorded)."""
    if record.recording is None or record.recording_size is None:
        return None
    return RecordingOut(
        url=f"/api/v1/calls/{record.id}/recording",
        duration=(record.recording_ms or 0) / 1000,
        size=record.recording_size,
    )


class CallOut(BaseModel):
    id: str
    direction: str
    caller_number: str
    callee_number: str
    caller_raw: str | None
    callee_raw: str | None
    # The customer's number (E.164 when it reads as one); null for internal calls.
    client_number: str | None
    internal_line_id: int | None
    internal_number: str | None
    employee_id: int | None
    employee: EmployeeRef | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    talk_seconds: int
    # Of the talk time, the seconds spent on hold.
    hold_seconds: int
    status: str
    hangup_side: str | None
    hangup_cause: str | None
    sip_call_id: str | None
    card: CardRef | None
    # Several cards matched the number and none is linked yet: the employee picks.
    matches: list[CardRef] | None
    # The customer left, the employee right (an internal call: the caller left).
    recording: RecordingOut | None = None
    notes_count: int


class CallPage(BaseModel):
    items: list[CallOut]
    total: int = Field(
        description=f"How many calls match, counted up to {COUNT_LIMIT:,}: "
        f"{COUNT_LIMIT + 1:,} means more than {COUNT_LIMIT:,}."
    )


async def card_refs(
    session: AsyncSession, rows: Sequence[CallRecord | Note], viewer: User
) -> list[CardRef | None]:
    """The card each call or note is linked to, named if `viewer` may open
    it; one query per kind of card."""
    linked = [cards.linked_card(row) for row in rows]
    wanted = [card for card in linked if card]
    names = await cards.card_names(session, wanted)
    may_open = await cards.openable(session, ((kind.type, id_) for kind, id_ in wanted), viewer)
    refs: list[CardRef | None] = []
    for card in linked:
        name = None if card is None else names.get((card[0].type, card[1]))
        if card is None or name is None:
            refs.append(None)
        elif (card[0].type, card[1]) in may_open:
            refs.append(CardRef(type=card[0].type, id=card[1], name=name))
        else:
            refs.append(_hidden(card[0].type))
    return refs


async def call_views(
    session: AsyncSession, records: Sequence[CallRecord], user: User
) -> list[CallOut]:
    """`records` in the API's shape as `user` may see them, with the names
    they point at: a few queries for a whole page, none per call."""
    employees = await names_of(session, (r.employee_id for r in records if r.employee_id))
    line_ids = {r.internal_line_id for r in records if r.internal_line_id is not None}
    numbers: dict[int, str] = {}
    if line_ids:
        rows = await session.execute(
            select(InternalLine.id, InternalLine.number).where(InternalLine.id.in_(line_ids))
        )
        numbers = {line_id: number for line_id, number in rows}
    linked = await card_refs(session, records, user)
    may_open = await cards.openable(
        session, ((m["type"], m["id"]) for r in records for m in r.matches or ()), user
    )
    notes: dict[str | None, int] = {}
    if records:
        counts = await session.execute(
            select(Note.call_id, func.count())
            .where(Note.call_id.in_([r.id for r in records]))
            .group_by(Note.call_id)
        )
        notes = {call_id: count for call_id, count in counts}
    views = []
    for record, card in zip(records, linked, strict=True):
        employee = None
        if record.employee_id is not None and record.employee_id in employees:
            employee = EmployeeRef(id=record.employee_id, name=employees[record.employee_id])
        views.append(
            CallOut(
                id=record.id,
                direction=record.direction,
                caller_number=record.caller_number,
                callee_number=record.callee_number,
                caller_raw=record.caller_raw,
                callee_raw=record.callee_raw,
                client_number=record.client_number,
                internal_line_id=record.internal_line_id,
                internal_number=numbers.get(record.internal_line_id or 0),
                employee_id=record.employee_id,
                employee=employee,
                started_at=record.started_at,
                answered_at=record.answered_at,
                ended_at=record.ended_at,
                talk_seconds=record.talk_seconds,
                hold_seconds=record.hold_seconds,
                status=record.status,
                hangup_side=record.hangup_side,
                hangup_cause=record.hangup_cause,
                sip_call_id=record.sip_call_id,
                card=card,
                matches=(
                    None
                    if record.matches is None
                    else [
                        CardRef.model_validate(m)
                        if (m["type"], m["id"]) in may_open
                        else _hidden(m["type"])
                        for m in record.matches
                    ]
                ),
                recording=recording_of(record),
                notes_count=notes.get(record.id, 0),
            )
        )
    return views


async def history(
    session: AsyncSession,
    of: HistoryOf,
    owner_id: int,
    *,
    viewer: User,
    status: CallStatus | None,
    direction: CallDirection | None,
    limit: int,
    offset: int,
) -> CallPage:
    """One page of a card's or an employee's calls, newest first, as `viewer` may see them."""
    where = []
    if status is not None:
        where.append(CallRecord.status == status)
    if direction is not None:
        where.append(CallRecord.direction == direction)
    rows, total = await history_page(session, of, owner_id, limit=limit, offset=offset, where=where)
    return CallPage(items=await call_views(session, rows, viewer), total=total)


@router.get("")
async def list_calls(
    session: SessionDep,
    user: Staff,
    line: Annotated[Number | None, Query(description="An internal line's number.")] = None,
    employee_id: IdQuery | None = None,
    status: CallStatus | None = None,
    direction: CallDirection | None = None,
    since: Annotated[
        Instant | None, Query(description="Started at or after (ISO 8601, with zone).")
    ] = None,
    until: Annotated[
        Instant | None, Query(description="Started before (ISO 8601, with zone).")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CallPage:
    conditions = [cards.call_visible(user)]
    if line is not None:
        line_ids = select(InternalLine.id).where(InternalLine.number == line)
        conditions.append(CallRecord.internal_line_id.in_(line_ids.scalar_subquery()))
    if employee_id is not None:
        conditions.append(CallRecord.employee_id == employee_id)
    if status is not None:
        conditions.append(CallRecord.status == status)
    if direction is not None:
        conditions.append(CallRecord.direction == direction)
    if since is not None:
        conditions.append(CallRecord.started_at >= since)
    if until is not None:
        conditions.append(CallRecord.started_at < until)
    query = select(CallRecord).where(*conditions)
    total = await count_calls(session, conditions)
    rows = await session.scalars(
        query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return CallPage(items=await call_views(session, list(rows), user), total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "An operator's: the call is neither theirs nor a visible card's."},
    404: {"description": "No such call."},
}


async def get_call(session: AsyncSession, call_id: str, user: User) -> CallRecord:
    """The call `user` may see: 404 when there is none, 403 when it is not theirs."""
    record = await session.get(CallRecord, call_id)
    if record is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "no such call")
    if not await cards.can_see_call(session, call_id, user):
        raise HTTPException(http_status.HTTP_403_FORBIDDEN, "this call is not yours to see")
    return record


@router.get("/{call_id}", responses=_RESPONSES)
async def read_call(call_id: CallIdPath, session: SessionDep, user: Staff) -> CallOut:
    return (await call_views(session, [await get_call(session, call_id, user)], user))[0]


class LinkIn(Input):
    model_config = ConfigDict(extra="forbid")

    type: Literal["contact", "account", "lead"]
    id: IdField


_LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_RESPONSES,
    422: {"description": "No such card (or one the user cannot see); the field is named."},
}


@router.post("/{call_id}/link", responses=_LINK_RESPONSES)
async def link_call(call_id: CallIdPath, body: LinkIn, session: SessionDep, user: Staff) -> CallOut:
    """Link the call to one card; its other links and candidates go."""
    record = await get_call(session, call_id, user)
    kind = cards.KINDS[body.type]
    if await cards.visible_card(session, kind, body.id, user) is None:
        raise not_found_reference("id", f"no {body.type} with id {body.id}")
    await cards.link_call(session, record, kind, body.id)
    await session.commit()
    return (await call_views(session, [record], user))[0]


@router.delete("/{call_id}/link", status_code=http_status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def unlink_call(call_id: CallIdPath, session: SessionDep, user: Staff) -> Response:
    record = await get_call(session, call_id, user)
    await cards.link_call(session, record, None, None)
    await session.commit()
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)
