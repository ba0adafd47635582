"""`POST /api/v1/calls/{id}/dtmf`: digits into a call from the API. The
signed-in employee's side of their own answered call sends them to the
other party, in the form that party accepted (`pbx/dtmf.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import status as http_status
from pydantic import ConfigDict, Field

from ..crm import cards
from ..pbx.dtmf import DigitsRefused, SendDigits
from ..store.models import CallRecord
from .deps import SessionDep, Staff
from .fields import CallIdPath, Input

router = APIRouter(prefix="/calls", tags=["calls"])

MAX_DIGITS = 32
_NOT_YOURS = "your line takes no part in this call"


class DigitsIn(Input):
    model_config = ConfigDict(extra="forbid")

    digits: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_DIGITS,
            pattern=r"^[0-9*#A-D]+$",
            description=f"1 to {MAX_DIGITS} DTMF digits: 0-9, *, #, A-D.",
            examples=["12#"],
        ),
    ]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not your call: your employee's line takes no part in it."},
    404: {"description": "No such call."},
    409: {"description": "The call is not answered, or over."},
    422: {"description": "`digits` is not 1-32 of 0-9 * # A-D."},
    429: {"description": "Too many digits are still waiting to be sent in this call."},
    503: {"description": "No PBX runs in this process."},
}


@router.post(
    "/{call_id}/dtmf",
    status_code=http_status.HTTP_202_ACCEPTED,
    responses=_RESPONSES,
    summary="Send DTMF digits",
)
async def send_dtmf(
    call_id: CallIdPath, body: DigitsIn, session: SessionDep, user: Staff, request: Request
) -> Response:
    """Your side of your answered call sends `digits` to the other party
    (an IVR's menu, say); 202 once they are queued."""
    if await session.get(CallRecord, call_id) is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "no such call")
    send: SendDigits | None = getattr(request.app.state, "send_digits", None)
    if send is None:
        raise HTTPException(http_status.HTTP_503_SERVICE_UNAVAILABLE, "this process has no calls")
    if user.employee_id is None:
        raise HTTPException(http_status.HTTP_403_FORBIDDEN, "your user is not an employee")
    try:
        # The PBX knows who takes part in a call in progress: the caller of
        # an internal call is a party, though the record is the callee's.
        send(call_id, user.employee_id, body.digits)
    except DigitsRefused as refused:
        if refused.status == 409 and not await cards.can_see_call(session, call_id, user):
            # Over, or never answered, and not theirs: no more than a 403 says.
            raise HTTPException(http_status.HTTP_403_FORBIDDEN, _NOT_YOURS) from None
        raise HTTPException(refused.status, refused.problem) from None
    return Response(status_code=http_status.HTTP_202_ACCEPTED)
