"""`POST /api/v1/calls`: click-to-call for the signed-in user's employee.
callbridge rings the employee's phones, and calls the number once one
answers (`pbx/originate.py`); the answer is the call record's id, whose
status tells how it went."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import status as http_status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ..pbx.originate import Originator, Refused, dialled_number
from ..store import Employee, User
from .deps import SessionDep, require_role
from .errors import FieldError, conflict
from .fields import Input

router = APIRouter(prefix="/calls", tags=["calls"])

AnyRole = Annotated[User, Depends(require_role("admin", "supervisor", "operator"))]


def _diallable(to: str) -> str:
    dialled_number(to)  # a ValueError names the problem; the field stays as typed
    return to


class ClickToCallIn(Input):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[
        str,
        Field(
            min_length=1,
            max_length=32,
            pattern=r"^[0-9+ ()\-]+$",
            description="The number to call, as dialled on a phone: digits, a leading +, "
            "spaces, - ( ).",
            examples=["+7 916 123-45-67", "102"],
        ),
        AfterValidator(_diallable),
    ]


class ClickToCallOut(BaseModel):
    call_id: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Telephony is disabled for your employee."},
    409: {
        "description": "You have no employee, your employee no internal line or no "
        "registered device, or the line called is busy or has no device."
    },
    422: {"description": "`to` is not a number, or no route lets it be called."},
    503: {"description": "No external line or media port is free, or no PBX runs here."},
}


@router.post(
    "", status_code=http_status.HTTP_202_ACCEPTED, responses=_RESPONSES, summary="Click-to-call"
)
async def click_to_call(
    body: ClickToCallIn, session: SessionDep, user: AnyRole, request: Request
) -> ClickToCallOut:
    """Ring your own phones; when you answer, callbridge calls `to` as if your
    phone had dialled it. Answers at once with the call's record id."""
    if user.employee_id is None:
        raise HTTPException(http_status.HTTP_409_CONFLICT, "your user is not an employee")
    employee = await session.get(Employee, user.employee_id)
    if employee is None or not employee.active:
        raise HTTPException(http_status.HTTP_409_CONFLICT, "your user is not an employee")
    if not employee.telephony_enabled:
        raise HTTPException(
            http_status.HTTP_403_FORBIDDEN, "telephony is disabled for your employee"
        )
    originator: Originator | None = getattr(request.app.state, "originator", None)
    if originator is None:
        raise HTTPException(
            http_status.HTTP_503_SERVICE_UNAVAILABLE, "this process places no calls"
        )
    try:
        call_id = await originator.call(employee.id, body.to)
    except Refused as refused:
        raise _answer_for(refused) from None
    return ClickToCallOut(call_id=call_id)


def _answer_for(refused: Refused) -> Exception:
    if refused.field == "employee":
        return HTTPException(http_status.HTTP_409_CONFLICT, refused.problem)
    if refused.status in (486, 480):
        return conflict("to", refused.problem)
    if refused.status == 503:
        return HTTPException(http_status.HTTP_503_SERVICE_UNAVAILABLE, refused.problem)
    return FieldError(422, "to", refused.problem, "not_routable")
