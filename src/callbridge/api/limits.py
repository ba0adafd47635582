"""Request body size limit, enforced before any handler reads the body;
NUL characters refused wherever a request carries them."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_SIZE = 64 * 1024


class BodySizeLimit:
    """Answers 413 to a body above `max_bytes`: at once when Content-Length says
    so, or as soon as a streamed (chunked) body passes the limit. A body within
    the limit is read here and handed on whole."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_SIZE) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
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


async def refuse_nul(request: Request) -> None:
    """422 naming each path, query or JSON body value that holds a NUL
    character: PostgreSQL cannot store one in text and refuses the whole
    statement (a 500), so no route may pass one on; refused on SQLite too,
    so that both stores take the same values."""
    errors: list[dict[str, Any]] = [
        _nul_error(("path", name))
        for name, value in request.path_params.items()
        if isinstance(value, str) and "\x00" in value
    ]
    errors += [
        _nul_error(("query", name))
        for name, value in request.query_params.multi_items()
        if "\x00" in value or "\x00" in name
    ]
    # JSON writes a NUL only escaped; without the escape there is none to find.
    if "json" in request.headers.get("content-type", "") and b"\\u0000" in await request.body():
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = None  # not JSON: the route's own validation says so
        errors += [_nul_error(("body", *loc)) for loc in _nul_values(data, ())]
    if errors:
        raise RequestValidationError(errors)


def _nul_values(value: object, loc: tuple[str | int, ...]) -> list[tuple[str | int, ...]]:
    """Where in a parsed JSON value a string holds a NUL."""
    if isinstance(value, str):
        return [loc] if "\x00" in value else []
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _nul_values(item, (*loc, key))]
    if isinstance(value, list):
        return [found for n, item in enumerate(value) for found in _nul_values(item, (*loc, n))]
    return []


def _nul_error(loc: tuple[str | int, ...]) -> dict[str, Any]:
    return {"loc": loc, "msg": "must not contain a NUL character", "type": "value_error"}
