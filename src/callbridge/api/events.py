"""`GET /ws/events`: an employee's call events over a WebSocket (all of them
for an admin or a supervisor who asks), replayed from a sequence number
after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..events import EventBus, Subscription
from ..store import Database, User
from ..store.accounts import user_for_token

router = APIRouter(tags=["events"])

# Close codes a browser can read (the status of a refused handshake it cannot).
UNAUTHORIZED = 4401  # no token, or an invalid or expired one
FORBIDDEN = 4403  # scope=all asked by an operator
INVALID = 4422  # a query parameter that cannot be read; the reason names it
BEHIND = 1013  # "try again later": the client fell too far behind
# A client has nothing to say on this socket: whatever it sends is read and
# dropped, and a message larger than this closes it.
MAX_CLIENT_MESSAGE = 4096
SCOPES = ("own", "all")


def _token(websocket: WebSocket) -> str | None:
    """The bearer token from the Authorization header or, since browsers
    cannot set headers on a WebSocket, from the `token` query parameter."""
    header = websocket.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return websocket.query_params.get("token") or None


async def _user(websocket: WebSocket) -> User | None:
    token = _token(websocket)
    if token is None or len(token) > 512:
        return None
    database: Database = websocket.app.state.database
    async with database.session() as session:
        return await user_for_token(session, token)


def _since(websocket: WebSocket) -> int | None:
    """`since` as a number ≥ 0; ValueError naming the parameter otherwise."""
    raw = websocket.query_params.get("since")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError("since: must be a whole number, 0 or more")
    return int(raw)


@router.websocket("/ws/events")
async def events(websocket: WebSocket) -> None:
    """Messages are JSON: `{"seq", "epoch", "type", "call_id", "at", ...}`.
    Query: `token` (or the Authorization header), `since` (replay what came
    after that number), `scope=all` (admin and supervisor only)."""
    await websocket.accept()
    user = await _user(websocket)
    if user is None:
        await websocket.close(UNAUTHORIZED, "missing, invalid or expired token")
        return
    scope = websocket.query_params.get("scope") or "own"
    try:
        since = _since(websocket)
        if scope not in SCOPES:
            raise ValueError("scope: must be own or all")
    except ValueError as error:
        await websocket.close(INVALID, str(error))
        return
    if scope == "all" and user.role not in ("admin", "supervisor"):
        await websocket.close(FORBIDDEN, "scope=all is for admins and supervisors")
        return
    if scope == "own" and user.employee_id is None:
        # A user who is no employee has no calls of their own: the socket
        # stays open and quiet, like anyone's between calls.
        await _until_disconnected(websocket)
        return
    bus: EventBus = websocket.app.state.events
    with bus.subscribe(None if scope == "all" else user.employee_id, since) as subscription:
        await _stream(websocket, subscription)


async def _stream(websocket: WebSocket, subscription: Subscription) -> None:
    """Send the subscription's events until the client leaves or falls behind."""
    listening = asyncio.create_task(_until_disconnected(websocket, subscription))
    try:
        async for event in subscription:
            if listening.done():
                return
            await websocket.send_json(event.as_message())
            if listening.done():
                return
            # Let the listener see a departure between two busy sends.
            await asyncio.sleep(0)
        if subscription.overflowed:
            await websocket.close(BEHIND, "too far behind: reconnect with since")
    except (WebSocketDisconnect, RuntimeError):
        return  # the client went away mid-send
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def _until_disconnected(
    websocket: WebSocket, subscription: Subscription | None = None
) -> None:
    """Read (and drop) what the client sends until it disconnects; a
    disconnect ends the subscription's iteration by closing it."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text") or message.get("bytes") or ""
            if len(data) > MAX_CLIENT_MESSAGE:
                await websocket.close(1009, "message too big")
                break
    except (WebSocketDisconnect, RuntimeError):
        pass  # gone, or closed by us
    finally:
        if subscription is not None:
            subscription.close()
