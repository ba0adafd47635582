"""`/api/v1/config`: apply the staged lines, menus and rules as one version, list
the applied versions, and apply an earlier one again (rollback).

Edits through the other routes are staged: nothing reaches calls until an
admin applies them, and an apply that finds a problem changes nothing and
names every object and field at fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..logs import log_event
from ..media.greetings import Greetings, speech_available
from ..pbx.config import InvalidConfig, apply_staged, stage_version, summary
from ..store.models import ConfigVersion
from .deps import GreetingsDep, Reader, SessionDep, Writer
from .fields import IdPath, Limit, Offset

router = APIRouter(prefix="/config", tags=["configuration"])
logger = logging.getLogger("callbridge.api")


class VersionOut(BaseModel):
    id: int
    applied_at: datetime
    applied_by: str | None
    source: str
    counts: dict[str, int]


class VersionPage(BaseModel):
    items: list[VersionOut]
    total: int


async def _nothing(_: ConfigVersion) -> None:
    return None


def get_apply(request: Request) -> Callable[[ConfigVersion], Awaitable[None]]:
    """What runs an applied version (the SIP side's; nothing without one)."""
    hook: Callable[[ConfigVersion], Awaitable[None]] = getattr(
        request.app.state, "apply_config", _nothing
    )
    return hook


Runner = Annotated[Callable[[ConfigVersion], Awaitable[None]], Depends(get_apply)]


def _refused(error: InvalidConfig) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "detail": [
                {"object": p.object, "id": p.id, "field": p.field, "problem": p.problem}
                for p in error.problems
            ]
        },
    )


@router.post(
    "/apply",
    response_model=VersionOut,
    responses={422: {"description": "The staged set cannot run; nothing changed."}},
)
async def apply(session: SessionDep, user: Writer, run: Runner, greetings: GreetingsDep) -> Any:
    """Check the staged lines, menus and rules as a whole and swap them in."""
    try:
        version = await _apply(session, greetings, by=user.username)
    except InvalidConfig as error:
        return _refused(error)
    await run(version)
    return summary(version)


@router.get("/versions", response_model=VersionPage)
async def list_versions(
    session: SessionDep,
    _user: Reader,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Applied versions, newest first."""
    total = await session.scalar(select(func.count()).select_from(ConfigVersion)) or 0
    rows = await session.scalars(
        select(ConfigVersion).order_by(ConfigVersion.id.desc()).limit(limit).offset(offset)
    )
    return {"items": [summary(v) for v in rows], "total": total}


@router.post(
    "/versions/{version_id}/apply",
    response_model=VersionOut,
    responses={404: {"description": "No such version."}, 422: {"description": "Cannot run."}},
)
async def reapply(
    version_id: IdPath, session: SessionDep, user: Writer, run: Runner, greetings: GreetingsDep
) -> Any:
    """Roll back: make version `version_id` the staged set and apply it as a
    new version. Staged edits not applied yet are discarded."""
    old = await session.get(ConfigVersion, version_id)
    if old is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no configuration version {version_id}")
    try:
        await stage_version(session, old)
    except IntegrityError:
        await session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"the staged lines and rules clash with version {version_id} (a number, username "
            "or code now used by another row): undo those edits, then roll back",
        ) from None
    try:
        version = await _apply(
            session, greetings, by=user.username, source=f"rollback to {version_id}"
        )
    except InvalidConfig as error:
        await session.rollback()
        return _refused(error)
    await run(version)
    return summary(version)


async def _apply(
    session: SessionDep, greetings: Greetings, *, by: str, source: str = "apply"
) -> ConfigVersion:
    """`apply_staged`, with the menus' greetings checked against this node:
    whether espeak-ng can speak text, and which uploads are on disk."""
    speech = speech_available()
    files = await asyncio.to_thread(greetings.names)
    try:
        return await apply_staged(
            session, by=by, source=source, speech=speech, greeting_files=files
        )
    except InvalidConfig as error:
        if not speech and any(p.field == "greeting_text" for p in error.problems):
            log_event(
                logger,
                logging.WARNING,
                "config.text_greeting_refused",
                reason="espeak-ng is not installed (Debian package espeak-ng)",
            )
        raise
