"""`/api/v1/settings/music-on-hold`: what held callers hear. An admin uploads
a WAV or MP3 (the body is the file) or goes back to the bundled melody; an
admin or supervisor sees which plays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from ..media.audio_files import CONTENT_TYPES, AudioError, kind_of
from ..media.music import MAX_SECONDS, MAX_UPLOAD_BYTES, MusicInfo, Source
from .deps import MusicDep, Reader, Writer
from .limits import read_body

PATH = "/settings/music-on-hold"
router = APIRouter(prefix=PATH, tags=["settings"])


class MusicOnHoldOut(BaseModel):
    source: Source = Field(description="`bundled` (the melody callbridge ships) or `uploaded`.")
    seconds: float = Field(description="Length of the loop.")
    uploaded_at: datetime | None = Field(description="When the file was uploaded.")


def _out(info: MusicInfo) -> MusicOnHoldOut:
    return MusicOnHoldOut(
        source=info.source, seconds=round(info.seconds, 3), uploaded_at=info.uploaded_at
    )


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"The audio file itself, at most {MAX_UPLOAD_BYTES} bytes and "
        f"{MAX_SECONDS:g} seconds.",
        "content": {
            content_type: {"schema": {"type": "string", "format": "binary"}}
            for content_type in ("audio/wav", "audio/mpeg")
        },
    }
}


@router.get("")
async def show(_: Reader, music: MusicDep) -> MusicOnHoldOut:
    return _out(music.info)


@router.put(
    "",
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"description": "Larger than the limit."},
        415: {"description": "Not audio/wav or audio/mpeg."},
        422: {"description": "A file that does not decode, or is too long; `msg` says why."},
        507: {"description": "The data directory cannot take the file (see the log)."},
    },
)
async def upload(request: Request, _: Writer, music: MusicDep) -> MusicOnHoldOut:
    """Make a WAV (PCM, 8 to 32 bits, any rate, up to 8 channels) or an MP3
    the music on hold: converted to 8 kHz mono and played at once to every
    held call, and after a restart."""
    content_type = request.headers.get("content-type")
    if kind_of(content_type) is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the file as one of {', '.join(CONTENT_TYPES)}",
        )
    assert content_type is not None
    data = await read_body(request, MAX_UPLOAD_BYTES)
    try:
        info = await music.upload(data, content_type)
    except AudioError as error:
        detail = [{"loc": ["body"], "msg": error.problem, "type": "audio_error"}]
        raise HTTPException(422, detail) from None
    except OSError:
        # The data directory is full or not writable: the admin's to fix
        # (the log says which path and why); the music playing stays.
        raise HTTPException(507, "the server could not store the file") from None
    return _out(info)


@router.delete("")
async def reset(_: Writer, music: MusicDep) -> MusicOnHoldOut:
    """Go back to the bundled melody."""
    return _out(await music.reset())
