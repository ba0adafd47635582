"""`POST /api/v1/calls/{id}/hangup`: the signed-in employee ends their own
answered call from the panel — a call on a desk phone out of reach, or one
whose softphone a page reload dropped (`B2bua.end_call`, pbx/b2bua.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi import status as http_status

from .call_actions import act_on_call
from .deps import SessionDep, Staff
from .fields import CallIdPath

router = APIRouter(prefix="/calls", tags=["calls"])

# (call record id, employee id) → None, or CallRefused.
EndCall = Callable[[str, int], None]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not your call: your employee's line takes no part in it."},
    404: {"description": "No such call."},
    409: {"description": "The call is not answered, or over."},
    503: {"description": "No PBX runs in this process."},
}


@router.post(
    "/{call_id}/hangup",
    status_code=http_status.HTTP_204_NO_CONTENT,
    responses=_RESPONSES,
    summary="Hang up your call",
)
async def hang_up_call(
    call_id: CallIdPath, session: SessionDep, user: Staff, request: Request
) -> Response:
    """Both parties of your answered call get a BYE; the record says your
    side hung up."""
    await act_on_call(
        call_id, session, user, request, "end_call", lambda end, who: end(call_id, who)
    )
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)
