"""First run: `POST /api/v1/setup` creates the first administrator with the
one-time token the server logged at start (`GET` says whether one is still
needed). The token lives in memory only: a restart with still no admin logs
a new one, and the old link stops working."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..pbx.guard import Block, FloodGuard, GuardPolicy
from ..store import User
from ..store.accounts import AccountError, create_user
from .deps import SessionDep
from .errors import FieldError, conflict
from .fields import Input

router = APIRouter(prefix="/setup", tags=["setup"])

# 32 random bytes: 256 bits a guess must hit (see docs/SECURITY.md).
TOKEN_BYTES = 32
# Wrong tokens from one address: the same rule as a sign-in's.
SETUP_POLICY = GuardPolicy(max_failures=10, window=60.0, block_for=900.0)


@dataclass(slots=True)
class SetupToken:
    """The one-time secret that lets the first admin in: valid until used."""

    # Never in a repr: nothing that prints the app's state shows it.
    value: str | None = field(
        default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES), repr=False
    )
    # One setup at a time: two requests with the token cannot both create an admin.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def matches(self, presented: str) -> bool:
        value = self.value
        return value is not None and secrets.compare_digest(value.encode(), presented.encode())

    def use(self) -> None:
        self.value = None

    def link(self, host: str, port: int) -> str:
        """Where the setup page is: the token rides in the fragment, which a
        browser never sends to the server (nor into its access log)."""
        assert self.value is not None
        if host in ("", "0.0.0.0", "::"):
            host = "localhost"  # listening everywhere: this machine's own name works
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/#/setup?token={self.value}"


async def admin_exists(session: AsyncSession) -> bool:
    found = await session.scalar(select(User.id).where(User.role == "admin").limit(1))
    return found is not None


class SetupRequest(Input):
    token: str = Field(min_length=1, max_length=128, description="From the link in the log.")
    login: str = Field(min_length=1, max_length=64, pattern=r"^[!-~]+$")
    password: SecretStr = Field(min_length=8, max_length=1024)


class SetupState(BaseModel):
    needed: bool = Field(description="No administrator exists yet: the log has a setup link.")


class AdminOut(BaseModel):
    id: int
    login: str
    role: str


def _guard(request: Request) -> FloodGuard:
    guard: FloodGuard | None = getattr(request.app.state, "setup_guard", None)
    if guard is None:
        guard = request.app.state.setup_guard = FloodGuard(SETUP_POLICY)
    return guard


@router.get("")
async def setup_state(session: SessionDep) -> SetupState:
    """Whether the first administrator is still to be created."""
    return SetupState(needed=not await admin_exists(session))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "Wrong or already used setup token."},
        409: {"description": "An administrator exists already."},
        429: {"description": "Too many wrong tokens from this address."},
    },
)
async def create_first_admin(body: SetupRequest, request: Request, session: SessionDep) -> AdminOut:
    token: SetupToken | None = getattr(request.app.state, "setup_token", None)
    guard = _guard(request)
    client = request.client.host if request.client else "unknown"
    now = time.monotonic()
    attempt = guard.reserve(client, None, now)
    if isinstance(attempt, Block):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many wrong setup tokens from this address",
            headers={"Retry-After": str(max(1, math.ceil(attempt.until - now)))},
        )
    if token is None or not token.matches(body.token):
        guard.rejected(attempt, now)
        raise FieldError(403, "token", "wrong or already used setup token", "forbidden")
    guard.succeeded(attempt)
    async with token.lock:
        if not token.matches(body.token):  # the request before this one used it
            raise FieldError(403, "token", "wrong or already used setup token", "forbidden")
        if await admin_exists(session):
            token.use()
            raise conflict("token", "an administrator exists already: sign in")
        try:
            user = await create_user(
                session, body.login, body.password.get_secret_value(), role="admin"
            )
        except AccountError as error:
            field_name = "login" if error.field == "username" else error.field
            raise FieldError(422, field_name, error.problem, "value_error") from None
        token.use()
    return AdminOut(id=user.id, login=user.username, role=user.role)
