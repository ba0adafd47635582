"""`/api/v1/settings/music-on-hold`: what held callers hear. An admin uploads
a WAV or MP3 (the body is the file) or goes back to the bundled melody; an
admin or supervisor sees which plays."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..media.music import MAX_SECONDS, MusicInfo, Source
from .audio_uploads import UPLOAD_RESPONSES, read_audio, stored_or_refused, upload_body
from .deps import MusicDep, Reader, Writer

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


@router.get("")
async def show(_: Reader, music: MusicDep) -> MusicOnHoldOut:
    return _out(music.info)


@router.put("", openapi_extra=upload_body(MAX_SECONDS), responses=UPLOAD_RESPONSES)
async def upload(request: Request, _: Writer, music: MusicDep) -> MusicOnHoldOut:
    """Make a WAV (PCM, 8 to 32 bits, any rate, up to 8 channels) or an MP3
    the music on hold: converted to 8 kHz mono and played at once to every
    held call, and after a restart."""
    data, content_type = await read_audio(request)
    with stored_or_refused():
        # On a full or unwritable disk the music playing stays.
        info = await music.upload(data, content_type)
    return _out(info)


@router.delete("")
async def reset(_: Writer, music: MusicDep) -> MusicOnHoldOut:
    """Go back to the bundled melody."""
    return _out(await music.reset())
