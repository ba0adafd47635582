"""What the routes that take an audio file (the music on hold, IVR
greetings) share: the body they document, their answers, reading the file
after the role check, and turning a file's problem into a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request, status

from ..media.audio_files import CONTENT_TYPES, AudioError, kind_of
from ..media.music import MAX_UPLOAD_BYTES
from .limits import read_body


def upload_body(max_seconds: float) -> dict[str, Any]:
    """The OpenAPI request body of an upload: the file itself."""
    return {
        "requestBody": {
            "required": True,
            "description": f"The audio file itself, at most {MAX_UPLOAD_BYTES} bytes and "
            f"{max_seconds:g} seconds.",
            "content": {
                content_type: {"schema": {"type": "string", "format": "binary"}}
                for content_type in ("audio/wav", "audio/mpeg")
            },
        }
    }


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Larger than the limit."},
    415: {"description": "Not audio/wav or audio/mpeg."},
    422: {"description": "A file that does not decode, or is too long; `msg` says why."},
    507: {"description": "The data directory cannot take the file (see the log)."},
}


async def read_audio(request: Request) -> tuple[bytes, str]:
    """The uploaded file and its content type: 415 for a type that is
    neither WAV nor MP3, 413 past the size limit."""
    content_type = request.headers.get("content-type")
    if content_type is None or kind_of(content_type) is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the file as one of {', '.join(CONTENT_TYPES)}",
        )
    return await read_body(request, MAX_UPLOAD_BYTES), content_type


@contextmanager
def stored_or_refused() -> Iterator[None]:
    """A file that cannot be used is a 422 saying why; a data directory
    that cannot take it (full, not writable: the log says which) a 507."""
    try:
        yield
    except AudioError as error:
        detail = [{"loc": ["body"], "msg": error.problem, "type": "audio_error"}]
        raise HTTPException(422, detail) from None
    except OSError:
        raise HTTPException(507, "the server could not store the file") from None
