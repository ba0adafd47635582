"""`/api/v1/calls`: the call records, newest first. Admins and supervisors see
every call; an operator sees only the calls of their own employee, and
another's call is a 404, as if it did not exist (ids cannot be probed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import status as http_status
from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import ColumnElement, false, func, select, true

from ..store import InternalLine, User
from ..store.models import CallDirection, CallRecord, CallStatus
from .deps import SessionDep, require_role
from .internal_lines import Number

router = APIRouter(prefix="/calls", tags=["calls"])

Reader = Annotated[User, Depends(require_role("admin", "supervisor", "operator"))]


class CallOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    direction: str
    caller_number: str
    callee_number: str
    caller_raw: str | None
    callee_raw: str | None
    internal_line_id: int | None
    employee_id: int | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    talk_seconds: int
    status: str
    hangup_side: str | None
    hangup_cause: str | None
    sip_call_id: str | None


class CallPage(BaseModel):
    items: list[CallOut]
    total: int


@router.get("")
async def list_calls(
    session: SessionDep,
    user: Reader,
    line: Annotated[Number | None, Query(description="An internal line's number.")] = None,
    employee_id: int | None = None,
    status: CallStatus | None = None,
    direction: CallDirection | None = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Started at or after (ISO 8601, with zone).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Started before (ISO 8601, with zone).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CallPage:
    conditions = [_visible_to(user)]
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
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return CallPage(items=[CallOut.model_validate(r) for r in rows], total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such call, or (for an operator) not one of theirs."},
}


@router.get("/{call_id}", responses=_RESPONSES)
async def read_call(call_id: str, session: SessionDep, user: Reader) -> CallOut:
    record = await session.scalar(
        select(CallRecord).where(CallRecord.id == call_id, _visible_to(user))
    )
    if record is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "no such call")
    return CallOut.model_validate(record)


def _visible_to(user: User) -> ColumnElement[bool]:
    if user.role in ("admin", "supervisor"):
        return true()
    if user.employee_id is None:
        return false()  # an operator with no employee has no calls
    return CallRecord.employee_id == user.employee_id
