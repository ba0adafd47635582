"""`POST /api/v1/calls/{id}/dtmf`: digits into a call from the API. The
signed-in employee's side of their own answered call sends them to the
other party, in the form that party accepted (`pbx/dtmf.py`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import status as http_status
from pydantic import ConfigDict, Field

from .call_actions import act_on_call
from .deps import SessionDep, Staff
from .fields import CallIdPath, Input

router = APIRouter(prefix="/calls", tags=["calls"])

MAX_DIGITS = 32


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
    await act_on_call(
        call_id,
        session,
        user,
        request,
        "send_digits",
        lambda send, who: send(call_id, who, body.digits),
    )
    return Response(status_code=http_status.HTTP_202_ACCEPTED)
