"""Links a browser's audio player can play a recording from (the routes
are in api/recordings.py).

A player (`<audio src>`) cannot send the Authorization header, and fetching
the whole file first would give up seeking over Range. So a signed-in user
who may see a call asks `POST /api/v1/calls/{id}/recording/link` and gets
`{"url": "/api/v1/calls/{id}/recording?token=...", "expires_at": ...}`:
a random token (192 bits) good for that call's recording only, for
`LINK_TTL` (ten minutes: time to start playing; each seek is a new request
with the same token). Every request with it is checked again as the API
checks a signed-in one: the user it was made for must still be active,
hold a staff role and see the call, so a link outlives neither a
deactivation nor a card taken away. The token travels in the query as
`token=`, which the access log masks, as it does for the event stream's.
Links are held in memory, bounded (the oldest go first): a restart voids
them, and a player asks again."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from ..store import User
from ..store.accounts import user_for_token
from .deps import STAFF_ROLES, SessionDep, bearer, unauthorized
from .fields import CallIdPath

LINK_TTL = 600.0
MOST_LINKS = 10_000


class RecordingLinks:
    """Tokens for one call's recording each, for one user, until they
    expire; `clock` is monotonic seconds, passed in for tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        ttl: float = LINK_TTL,
        most: int = MOST_LINKS,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.most = most
        self._links: OrderedDict[str, tuple[str, int, float]] = OrderedDict()

    def issue(self, call_id: str, user_id: int) -> tuple[str, float]:
        """A new token for `user_id` to play `call_id`'s recording, and the
        seconds it is good for."""
        token = secrets.token_urlsafe(24)
        self._links[token] = (call_id, user_id, self.clock() + self.ttl)
        while len(self._links) > self.most:
            self._links.popitem(last=False)
        return token, self.ttl

    def user_of(self, token: str, call_id: str) -> int | None:
        """The user a live token for `call_id` was issued to, else None."""
        found = self._links.get(token)
        if found is None:
            return None
        linked_call, user_id, expires = found
        if self.clock() >= expires:
            del self._links[token]
            return None
        return user_id if secrets.compare_digest(linked_call, call_id) else None


def links_of(request: Request) -> RecordingLinks:
    links: RecordingLinks = request.app.state.recording_links
    return links


LinksDep = Annotated[RecordingLinks, Depends(links_of)]


async def listener(
    call_id: CallIdPath,
    session: SessionDep,
    links: LinksDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    token: Annotated[
        str | None, Query(max_length=64, description="From .../recording/link")
    ] = None,
) -> User:
    """Who is asking for a recording: the bearer of an API token with a
    staff role, or of a recording link for this call (401 otherwise; the
    caller still checks that they may see the call)."""
    user: User | None = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        user = await user_for_token(session, credentials.credentials)
    elif token is not None:
        user_id = links.user_of(token, call_id)
        user = None if user_id is None else await session.get(User, user_id)
    if user is None or not user.active:
        raise unauthorized()
    if user.role not in STAFF_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not do this")
    return user


Listener = Annotated[User, Depends(listener)]
