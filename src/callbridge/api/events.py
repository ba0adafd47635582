"""`GET /ws/events`: an employee's call events over a WebSocket (all of them
for an admin or a supervisor who asks), replayed from a sequence number
after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.exc import SQLAlchemyError

from ..crm.cards import openable, sees_everything
from ..events import Event, EventBus, Subscription
from ..store import Database, User
from ..store.accounts import SignedIn, revocations, signed_in

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
# An open socket checks its token this often (seconds); it looks the token
# up in the store only in the seconds after this process revoked a token
# (the revoking request may not have committed yet) and, for revocations
# made elsewhere (another node, a script), every FULL_RECHECK seconds.
TOKEN_CHECK_INTERVAL = 1.0
RECHECK_AFTER_REVOCATION = 5.0
FULL_RECHECK = 30.0


@dataclass(slots=True)
class TokenCheck:
    """When a socket must look its token up again. Time is passed in."""

    generation: int
    looked_up_at: float
    recheck_until: float = field(default=float("-inf"))

    def due(self, generation: int, now: float) -> bool:
        """Whether to look the token up now, given the revocation generation."""
        if generation != self.generation:
            self.generation = generation
            self.recheck_until = now + RECHECK_AFTER_REVOCATION
        return now < self.recheck_until or now - self.looked_up_at >= FULL_RECHECK


def _token(websocket: WebSocket) -> str | None:
    """The bearer token from the Authorization header or, since browsers
    cannot set headers on a WebSocket, from the `token` query parameter."""
    header = websocket.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return websocket.query_params.get("token") or None


async def _signed_in(websocket: WebSocket, token: str | None) -> SignedIn | None:
    if token is None or len(token) > 512:
        return None
    database: Database = websocket.app.state.database
    async with database.session() as session:
        return await signed_in(session, token)


async def _watch_token(websocket: WebSocket, token: str, found: SignedIn, scope: str) -> None:
    """Return once the token no longer lets the socket's user see `scope`:
    revoked (logout, a new password or role, the login deleted) or expired."""
    loop = asyncio.get_running_loop()
    check = TokenCheck(revocations(), loop.time())
    expires_at = found.expires_at
    while datetime.now(UTC) < expires_at:
        await asyncio.sleep(TOKEN_CHECK_INTERVAL)
        now = loop.time()
        if not check.due(revocations(), now):
            continue
        check.looked_up_at = now
        try:
            current = await _signed_in(websocket, token)
        except SQLAlchemyError:
            # The store is away for a moment: every open socket must not
            # drop at once for it. The next tick asks again.
            continue
        if current is None or not _may_see(current, scope):
            return
        expires_at = current.expires_at


def _may_see(found: SignedIn, scope: str) -> bool:
    return scope == "own" or found.user.role in ("admin", "supervisor")


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
    token = _token(websocket)
    found = await _signed_in(websocket, token)
    if token is None or found is None:
        await websocket.close(UNAUTHORIZED, "missing, invalid or expired token")
        return
    user = found.user
    scope = websocket.query_params.get("scope") or "own"
    try:
        since = _since(websocket)
        if scope not in SCOPES:
            raise ValueError("scope: must be own or all")
    except ValueError as error:
        await websocket.close(INVALID, str(error))
        return
    if not _may_see(found, scope):
        await websocket.close(FORBIDDEN, "scope=all is for admins and supervisors")
        return
    watch = asyncio.create_task(_watch_token(websocket, token, found, scope))
    serve = asyncio.create_task(_serve(websocket, user, scope, since))
    try:
        await asyncio.wait((watch, serve), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (serve, watch):
            task.cancel()
        # Both have ended before anything is raised: a watcher left behind
        # would look the token up until it expired, hours later.
        await asyncio.wait((serve, watch))
    for task in (serve, watch):
        if not task.cancelled() and (failure := task.exception()) is not None:
            raise failure
    if not watch.cancelled():
        with contextlib.suppress(RuntimeError):
            await websocket.close(UNAUTHORIZED, "token revoked or expired")


async def _serve(websocket: WebSocket, user: User, scope: str, since: int | None) -> None:
    if scope == "own" and user.employee_id is None:
        # A user who is no employee has no calls of their own: the socket
        # stays open and quiet, like anyone's between calls.
        await _until_disconnected(websocket)
        return
    bus: EventBus = websocket.app.state.events
    with bus.subscribe(None if scope == "all" else user.employee_id, since) as subscription:
        await _stream(websocket, subscription, user)


async def _stream(websocket: WebSocket, subscription: Subscription, user: User) -> None:
    """Send the subscription's events until the client leaves or falls behind."""
    listening = asyncio.create_task(_until_disconnected(websocket, subscription))
    try:
        async for event in subscription:
            if listening.done():
                return
            await websocket.send_json(await _as_seen_by(websocket, user, event))
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


async def _as_seen_by(websocket: WebSocket, user: User, event: Event) -> dict[str, Any]:
    """The event's message with the cards `user` may not open shown as in
    the call records: their type only (one event goes to every employee of
    the call, and cards have owners)."""
    message = event.as_message()
    matches = message.get("matches")
    if not matches or sees_everything(user):
        return message
    database: Database = websocket.app.state.database
    async with database.session() as session:
        may_open = await openable(session, ((m["type"], m["id"]) for m in matches), user)
    message["matches"] = [
        m if (m["type"], m["id"]) in may_open else {"type": m["type"], "id": None, "name": None}
        for m in matches
    ]
    return message


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
