"""`POST /api/v1/auth/login`: username and password for a bearer token."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, SecretStr

from ..store.accounts import authenticate, issue_token
from .deps import SessionDep, SettingsDep

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime


@router.post("/login", responses={401: {"description": "Wrong username or password."}})
async def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    user = await authenticate(session, body.username, body.password.get_secret_value())
    if user is None:
        # One answer for an unknown user and a wrong password.
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    issued = await issue_token(session, user, settings.auth_token_ttl)
    return TokenResponse(token=issued.token, expires_at=issued.expires_at)
