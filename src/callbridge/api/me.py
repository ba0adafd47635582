"""`/api/v1/me/...`: what the signed-in user asks for themselves; today the
short-lived SIP credential their browser's softphone registers with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import status as http_status
from pydantic import BaseModel, Field

from ..pbx.browser_credentials import TAG_LENGTH, BrowserCredentials
from ..store import Employee
from ..store.accounts import signed_in, token_hash
from .deps import SessionDep, TokenDep
from .sip_websocket import PATH as SIP_WEBSOCKET_PATH

router = APIRouter(prefix="/me", tags=["me"])


class SipCredentialsOut(BaseModel):
    ws_url: str = Field(description="Where the softphone connects, subprotocol `sip`.")
    uri: str = Field(description="The SIP URI it registers: the employee's internal line.")
    username: str = Field(description="The digest username (JsSIP's authorization_user).")
    password: str = Field(
        description="The digest password: valid until expires_at, only "
        "over the WebSocket, only for this line."
    )
    expires_at: datetime
    ice_servers: list[dict[str, Any]] = Field(
        description="RTCIceServer entries for the browser's RTCPeerConnection."
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid token."},
    403: {"description": "Telephony is disabled for your employee."},
    409: {"description": "You have no employee, or your employee no enabled internal line."},
    503: {"description": "No PBX runs in this process."},
}


@router.post("/sip-credentials", responses=_RESPONSES, summary="SIP credentials for the browser")
async def sip_credentials(
    request: Request, response: Response, session: SessionDep, token: TokenDep
) -> SipCredentialsOut:
    """A SIP credential for your browser's softphone on your internal line,
    valid a few hours and never longer than your token: signing out (or
    any revocation of the token) ends it within seconds. Fetch a new one
    before `expires_at`, and after a registration is refused with 403."""
    found = await signed_in(session, token)
    if found is None:
        raise HTTPException(
            http_status.HTTP_401_UNAUTHORIZED,
            "missing, invalid or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = found.user
    employee = None if user.employee_id is None else await session.get(Employee, user.employee_id)
    if employee is None or not employee.active:
        raise HTTPException(http_status.HTTP_409_CONFLICT, "your user is not an employee")
    if not employee.telephony_enabled:
        raise HTTPException(
            http_status.HTTP_403_FORBIDDEN, "telephony is disabled for your employee"
        )
    credentials: BrowserCredentials | None = getattr(request.app.state, "browser_credentials", None)
    if credentials is None:
        raise HTTPException(http_status.HTTP_503_SERVICE_UNAVAILABLE, "no PBX runs here")
    credential = credentials.issue(
        employee.id,
        token_tag=token_hash(token)[:TAG_LENGTH],
        not_after=found.expires_at.timestamp(),
    )
    if credential is None:
        raise HTTPException(
            http_status.HTTP_409_CONFLICT,
            "your employee has no internal line (or it is not applied yet)",
        )
    # A password: no cache, shared or private, keeps it.
    response.headers["Cache-Control"] = "no-store"
    domain: str = getattr(request.app.state, "sip_domain", "") or "localhost"
    return SipCredentialsOut(
        ws_url=SIP_WEBSOCKET_PATH,
        uri=f"sip:{credential.line_number}@{domain}",
        username=credential.username,
        password=credential.password,
        expires_at=datetime.fromtimestamp(credential.expires_at, UTC),
        ice_servers=[server.for_browser() for server in request.app.state.settings.ice_servers],
    )
