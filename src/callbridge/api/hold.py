"""`POST /api/v1/calls/{id}/hold` and `/resume`: the signed-in employee's
party of their own answered call holds the other, who hears the music on
hold, and takes it back (`Call.hold`, pbx/call.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi import status as http_status

from .call_actions import act_on_call
from .deps import SessionDep, Staff
from .fields import CallIdPath

router = APIRouter(prefix="/calls", tags=["calls"])

# (call record id, employee id, hold or resume) → None, or CallRefused.
HoldCall = Callable[[str, int, bool], None]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not your call: your employee's line takes no part in it."},
    404: {"description": "No such call."},
    409: {"description": "The call is not answered, or over, or no music is configured."},
    503: {"description": "No PBX runs in this process."},
}


async def _hold(
    call_id: str, on: bool, session: SessionDep, user: Staff, request: Request
) -> Response:
    await act_on_call(
        call_id, session, user, request, "hold_call", lambda hold, who: hold(call_id, who, on)
    )
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)


@router.post(
    "/{call_id}/hold",
    status_code=http_status.HTTP_204_NO_CONTENT,
    responses=_RESPONSES,
    summary="Hold the other party",
)
async def hold_call(
    call_id: CallIdPath, session: SessionDep, user: Staff, request: Request
) -> Response:
    """The other party of your answered call hears the music on hold, and
    you hear nothing, until `/resume`."""
    return await _hold(call_id, True, session, user, request)


@router.post(
    "/{call_id}/resume",
    status_code=http_status.HTTP_204_NO_CONTENT,
    responses=_RESPONSES,
    summary="Take the other party off hold",
)
async def resume_call(
    call_id: CallIdPath, session: SessionDep, user: Staff, request: Request
) -> Response:
    """You and the other party hear each other again."""
    return await _hold(call_id, False, session, user, request)
