"""`POST /api/v1/auth/login`: username and password for a bearer token;
`POST /api/v1/auth/logout`: the token stops working."""

from __future__ import annotations

import math
import time
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field, SecretStr

from ..pbx.guard import Block, FloodGuard, GuardPolicy
from ..store import Employee
from ..store.accounts import authenticate, issue_token, revoke_token
from .deps import SessionDep, SettingsDep, Staff, TokenDep
from .fields import Input

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(Input):
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime


# Password guessing over HTTP: the same rule as for SIP, per client address
# and per account tried.
LOGIN_POLICY = GuardPolicy(
    max_failures=10, window=60.0, block_for=900.0, account_max_failures=10, account_block_for=300.0
)


def login_guard(request: Request) -> FloodGuard:
    """The sign-in's own flood guard (made on first use; its clock is
    `time.monotonic`); `/security/blocks` shows and lifts its blocks too."""
    guard: FloodGuard | None = getattr(request.app.state, "login_guard", None)
    if guard is None:
        guard = request.app.state.login_guard = FloodGuard(LOGIN_POLICY)
    return guard


@router.post(
    "/login",
    responses={
        401: {"description": "Wrong username or password."},
        429: {
            "description": "Too many failed sign-ins from this address or for this "
            "account; try again after Retry-After seconds."
        },
    },
)
async def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> TokenResponse:
    guard = login_guard(request)
    client = request.client.host if request.client else "unknown"
    now = time.monotonic()
    # Counted as failed before argon2 runs, so parallel guesses meet the limit too.
    attempt = guard.reserve(client, body.username, now)
    if isinstance(attempt, Block):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins for this account"
            if attempt.account
            else "too many failed sign-ins from this address",
            headers={"Retry-After": str(max(1, math.ceil(attempt.until - now)))},
        )
    user = await authenticate(session, body.username, body.password.get_secret_value())
    if user is None:
        guard.rejected(attempt, now)
        # One answer for an unknown user and a wrong password.
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    guard.succeeded(attempt)
    issued = await issue_token(session, user, settings.auth_token_ttl)
    return TokenResponse(token=issued.token, expires_at=issued.expires_at)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "Missing, invalid or expired token."}},
)
async def logout(session: SessionDep, token: TokenDep, _user: Staff) -> Response:
    """Revoke the token this request carries (the user's other sign-ins
    stay); event sockets opened with it close with 4401 within seconds."""
    await revoke_token(session, token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class Me(BaseModel):
    """Who a token signs in: what the panel needs to show its own calls."""

    id: int
    username: str
    role: str
    employee_id: int | None
    employee_name: str | None


@router.get("/me", responses={401: {"description": "Missing, invalid or expired token."}})
async def me(session: SessionDep, user: Staff) -> Me:
    employee = None if user.employee_id is None else await session.get(Employee, user.employee_id)
    return Me(
        id=user.id,
        username=user.username,
        role=user.role,
        employee_id=user.employee_id,
        employee_name=None if employee is None else employee.name,
    )
