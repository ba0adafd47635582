"""`/api/v1/calls/{id}/recording`: a call's recording, streamed with HTTP
Range (RFC 9110 §14) to whoever may see the call (an operator: their own or
their cards' calls, as for the record itself); deleted by an admin.
`.../recording/link` gives a browser's audio player a URL it can play and
seek without the Authorization header (api/recording_links.py).

The file is found through the call's record only (pbx.recordings.file_of);
nothing in the request names a path. Files are opened and read in a thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi import status as http_status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..pbx import recordings
from ..store import Database, User
from .calls import get_call
from .deps import SessionDep, Staff, Writer
from .fields import CallIdPath
from .recording_links import LinksDep, Listener

router = APIRouter(prefix="/calls", tags=["recordings"])

CHUNK = 64 * 1024
# One range, as a player asks to seek: `bytes=500-`, `bytes=500-999`, `bytes=-500`.
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


class Unsatisfiable(Exception):
    pass


def byte_range(header: str, size: int) -> tuple[int, int]:
    """The [start, end) a Range header asks of `size` bytes; `Unsatisfiable`
    for anything but one range that overlaps the file (several ranges
    included: a recording is played, not assembled from pieces)."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match[1] or match[2]):
        raise Unsatisfiable
    if match[1]:
        start = int(match[1])
        end = int(match[2]) + 1 if match[2] else size
        if end <= start or start >= size:
            raise Unsatisfiable
        return start, min(end, size)
    suffix = int(match[2])
    if suffix == 0 or size == 0:
        raise Unsatisfiable
    return max(0, size - suffix), size


_RESPONSES: dict[int | str, dict[str, Any]] = {
    206: {"description": "The part of the file the Range header asked for."},
    403: {"description": "An operator's: the call is neither theirs nor a visible card's."},
    404: {"description": "No such call, or it has no recording."},
    409: {"description": "The call is still being recorded."},
    416: {"description": "The Range is not one range within the file."},
}


class RecordingLink(BaseModel):
    url: str
    expires_at: datetime


async def _recording_of(call_id: str, session: SessionDep, user: User, request: Request) -> Path:
    record = await get_call(session, call_id, user)
    if record.recording is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "this call has no recording")
    if record.recording_size is None:
        raise HTTPException(http_status.HTTP_409_CONFLICT, "this call is still being recorded")
    path = recordings.file_of(request.app.state.recordings_dir, record.recording)
    if path is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "this call has no recording")
    return path


@router.get(
    "/{call_id}/recording",
    responses=_RESPONSES,
    response_class=StreamingResponse,
    summary="A call's recording (WAV)",
)
async def read_recording(
    call_id: CallIdPath,
    session: SessionDep,
    user: Listener,
    request: Request,
    range_: str | None = Header(None, alias="Range", max_length=100),
) -> Response:
    path = await _recording_of(call_id, session, user, request)
    try:
        file, size = await asyncio.to_thread(_open, path)
    except FileNotFoundError:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "the recording is gone") from None
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="call-{call_id}.wav"',
    }
    start, end, status = 0, size, http_status.HTTP_200_OK
    if range_ is not None:
        try:
            start, end = byte_range(range_, size)
        except Unsatisfiable:
            await asyncio.to_thread(file.close)
            headers["Content-Range"] = f"bytes */{size}"
            return Response(status_code=416, headers=headers)
        status = http_status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return StreamingResponse(
        _chunks(file, start, end), status_code=status, headers=headers, media_type="audio/wav"
    )


@router.post(
    "/{call_id}/recording/link",
    status_code=http_status.HTTP_201_CREATED,
    responses={k: v for k, v in _RESPONSES.items() if k in (403, 404, 409)},
    summary="A URL an audio player can play (and seek) the recording from",
)
async def link_recording(
    call_id: CallIdPath, request: Request, session: SessionDep, user: Staff, links: LinksDep
) -> RecordingLink:
    await _recording_of(call_id, session, user, request)
    token, ttl = links.issue(call_id, user.id)
    return RecordingLink(
        url=f"/api/v1/calls/{call_id}/recording?token={token}",
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
    )


def _open(path: Path) -> tuple[BinaryIO, int]:
    file = path.open("rb")
    return file, file.seek(0, 2)


async def _chunks(file: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        await asyncio.to_thread(file.seek, start)
        left = end - start
        while left > 0:
            chunk = await asyncio.to_thread(file.read, min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(file.close)


@router.delete(
    "/{call_id}/recording",
    status_code=http_status.HTTP_204_NO_CONTENT,
    responses={k: v for k, v in _RESPONSES.items() if k in (403, 404, 409)},
)
async def delete_recording(
    call_id: CallIdPath, session: SessionDep, _user: Writer, request: Request
) -> Response:
    """Remove the file and the record's pointer to it (admins only)."""
    await _recording_of(call_id, session, _user, request)
    database: Database = request.app.state.database
    if not await recordings.remove(database, request.app.state.recordings_dir, call_id):
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "this call has no recording")
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)
