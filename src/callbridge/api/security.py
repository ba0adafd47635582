"""`/api/v1/security/blocks`: the sources the flood guards have blocked, and
the accounts they refuse for now, for an admin to see and lift: SIP's guard
(`guard: sip`) and the HTTP sign-in's (`guard: http`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from ..pbx.guard import FloodGuard
from ..store import User
from .auth import login_guard
from .deps import require_role

router = APIRouter(prefix="/security", tags=["security"])
Admin = Annotated[User, Depends(require_role("admin"))]


BlockKind = Literal["source", "account"]
GuardName = Literal["sip", "http"]


class BlockOut(BaseModel):
    source: str = Field(description="The address blocked, or the account's username.")
    kind: BlockKind = "source"
    guard: GuardName = Field("sip", description="SIP's guard, or the HTTP sign-in's.")
    reason: str
    expires_at: datetime
    expires_in: int


class BlockList(BaseModel):
    items: list[BlockOut]
    total: int
    dropped_blocked: int = Field(
        0,
        description="SIP requests dropped unanswered since the start because their "
        "source was blocked.",
    )


Clock = Callable[[], float]


def _guards(request: Request) -> dict[GuardName, tuple[FloodGuard, Clock]]:
    """Each guard with the monotonic clock it counts in."""
    guards: dict[GuardName, tuple[FloodGuard, Clock]] = {}
    sip: FloodGuard | None = getattr(request.app.state, "guard", None)
    if sip is not None:
        guards["sip"] = (sip, getattr(request.app.state, "sip_clock", time.monotonic))
    guards["http"] = (login_guard(request), time.monotonic)
    return guards


Guards = Annotated[dict[GuardName, tuple[FloodGuard, Clock]], Depends(_guards)]


@router.get("/blocks")
async def list_blocks(guards: Guards, _user: Admin) -> BlockList:
    wall = time.time()
    items = []
    for name, (flood_guard, clock) in guards.items():
        now = clock()
        items += [
            BlockOut(
                source=block.source,
                reason=block.reason,
                # A guard counts in monotonic time; shown as UTC.
                expires_at=datetime.fromtimestamp(wall + block.until - now, UTC),
                expires_in=max(0, round(block.until - now)),
                kind="account" if block.account else "source",
                guard=name,
            )
            for block in [*flood_guard.blocks(now), *flood_guard.account_blocks(now)]
        ]
    sip = guards.get("sip")
    dropped = sip[0].dropped_blocked if sip is not None else 0
    return BlockList(items=items, total=len(items), dropped_blocked=dropped)


@router.delete(
    "/blocks/{source}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "That source is not blocked."}},
)
async def lift_block(
    source: str,
    guards: Guards,
    _user: Admin,
    kind: Annotated[BlockKind, Query(description="`account` lifts an account's block.")] = "source",
    guard: Annotated[GuardName, Query(description="`http` lifts a sign-in block.")] = "sip",
) -> Response:
    flood_guard, _ = guards.get(guard, (None, None))
    if flood_guard is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{source} is not blocked")
    lifted = (
        flood_guard.unblock(source) if kind == "source" else flood_guard.unblock_account(source)
    )
    if not lifted:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{source} is not blocked")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
