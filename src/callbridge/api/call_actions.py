"""What the API does to a call in progress (hold, DTMF, hang-up) on behalf of the
signed-in employee: the checks every such route makes, in one place."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request
from fastapi import status as http_status

from ..crm import cards
from ..pbx.call import CallRefused
from ..pbx.dtmf import DigitsRefused
from ..store import User
from ..store.models import CallRecord
from .deps import SessionDep

_NOT_YOURS = "your line takes no part in this call"


async def act_on_call(
    call_id: str,
    session: SessionDep,
    user: User,
    request: Request,
    pbx_action: str,
    act: Callable[[Callable[..., None], int], None],
) -> None:
    """`act(action, employee_id)` with the PBX's `app.state.<pbx_action>`:
    404 for no such record, 503 without a PBX, 403 for a user who is no
    employee, and the PBX's refusal as its status (a 409 about a call the
    user may not see is a 403: no more than that is told)."""
    if await session.get(CallRecord, call_id) is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "no such call")
    action: Callable[..., None] | None = getattr(request.app.state, pbx_action, None)
    if action is None:
        raise HTTPException(http_status.HTTP_503_SERVICE_UNAVAILABLE, "this process has no calls")
    if user.employee_id is None:
        raise HTTPException(http_status.HTTP_403_FORBIDDEN, "your user is not an employee")
    try:
        # The PBX knows who takes part in a call in progress: the caller of
        # an internal call is a party, though the record is the callee's.
        act(action, user.employee_id)
    except (CallRefused, DigitsRefused) as refused:
        if refused.status == 409 and not await cards.can_see_call(session, call_id, user):
            raise HTTPException(http_status.HTTP_403_FORBIDDEN, _NOT_YOURS) from None
        raise HTTPException(refused.status, refused.problem) from None
