"""`/api/v1/security/blocks`: the sources the flood guard has blocked, and
the accounts it refuses for now, for an admin to see and lift."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from ..pbx.guard import FloodGuard
from ..store import User
from .deps import require_role

router = APIRouter(prefix="/security", tags=["security"])
Admin = Annotated[User, Depends(require_role("admin"))]


BlockKind = Literal["source", "account"]


class BlockOut(BaseModel):
    source: str = Field(description="The address blocked, or the account's username.")
    kind: BlockKind = "source"
    reason: str
    expires_at: datetime
    expires_in: int


class BlockList(BaseModel):
    items: list[BlockOut]
    total: int


def _guard(request: Request) -> tuple[FloodGuard | None, Callable[[], float]]:
    guard: FloodGuard | None = getattr(request.app.state, "guard", None)
    clock: Callable[[], float] = getattr(request.app.state, "sip_clock", time.monotonic)
    return guard, clock


Guard = Annotated[tuple[FloodGuard | None, Callable[[], float]], Depends(_guard)]


@router.get("/blocks")
async def list_blocks(guard: Guard, _user: Admin) -> BlockList:
    flood_guard, clock = guard
    if flood_guard is None:
        return BlockList(items=[], total=0)
    now, wall = clock(), time.time()
    items = [
        BlockOut(
            source=block.source,
            reason=block.reason,
            # The guard counts in the SIP loop's monotonic time; shown as UTC.
            expires_at=datetime.fromtimestamp(wall + block.until - now, UTC),
            expires_in=max(0, round(block.until - now)),
            kind="account" if block.account else "source",
        )
        for block in [*flood_guard.blocks(now), *flood_guard.account_blocks(now)]
    ]
    return BlockList(items=items, total=len(items))


@router.delete(
    "/blocks/{source}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "That source is not blocked."}},
)
async def lift_block(
    source: str,
    guard: Guard,
    _user: Admin,
    kind: Annotated[BlockKind, Query(description="`account` lifts an account's block.")] = "source",
) -> Response:
    flood_guard, _ = guard
    if flood_guard is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{source} is not blocked")
    lifted = (
        flood_guard.unblock(source) if kind == "source" else flood_guard.unblock_account(source)
    )
    if not lifted:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{source} is not blocked")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
