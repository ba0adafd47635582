"""Request body size limit, enforced before any handler reads the body."""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_SIZE = 64 * 1024


class BodySizeLimit:
    """Answers 413 to a body above `max_bytes`: at once when Content-Length says
    so, or as soon as a streamed (chunked) body passes the limit. A body within
    the limit is read here and handed on whole.

    `own_limits` names the routes, as (method, path), that take larger bodies
    (an audio file) and bound them themselves (a `{name}` segment of the
    path stands for any one segment): their bodies pass untouched,
    so a route reads one only after its role check, a chunk at a time
    (`read_body`), and a caller without the role never gets it buffered."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_SIZE,
        own_limits: Collection[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_limits = [(method, _path_pattern(path)) for method, path in own_limits]

    def _own_limit(self, scope: Scope) -> bool:
        return any(
            scope["method"] == method and pattern.fullmatch(scope["path"])
            for method, pattern in self.own_limits
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._own_limit(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _answer_413(send, self.max_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer_413(send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"\{[^/{}]+\}", path)
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


async def _answer_413(send: Send, max_bytes: int) -> None:
    body = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body of a request to a route with its own limit (`own_limits`):
    413 as soon as Content-Length or the bytes that came say it is larger."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"request body larger than {max_bytes} bytes")
