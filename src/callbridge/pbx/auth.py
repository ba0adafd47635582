"""Who sent this request: digest authentication of internal lines
(RFC 3261 §22 with RFC 8760), joined to the flood guard.

`Authenticator.check` returns one of three outcomes: the line's username
when the credentials are right, the challenge response to send (401 for
REGISTER, 407 for everything else), or `DROP` for a source that is blocked
or a scanner — those get no answer at all. A wrong password and an unknown
username get the same challenge, so usernames cannot be enumerated; an
account guessed at too often (known or not) gets 503 with Retry-After for a
while, from every source.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..sip import Request, Response, make_response
from ..sip.digest import AuthStatus, Credentials, DigestError, DigestServer, parse_credentials
from .guard import Block, FloodGuard

# username, algorithm ("MD5", "SHA-256", ...) -> the stored HA1, or None.
HA1Lookup = Callable[[str, str], str | None]


class Drop(enum.Enum):
    """Send nothing: the source is blocked or a scanner."""

    DROP = "drop"


DROP = Drop.DROP


@dataclass(frozen=True, slots=True)
class Authenticated:
    username: str


AuthOutcome = Authenticated | Response | Drop


class Authenticator:
    """Checks requests of internal lines against their stored HA1."""

    def __init__(self, digest: DigestServer, guard: FloodGuard, *, server_name: str) -> None:
        self.digest = digest
        self.guard = guard
        self.server_name = server_name

    def check(
        self, request: Request, *, source: str, ha1_of: HA1Lookup, now: float, to_tag: str
    ) -> AuthOutcome:
        if self.guard.is_blocked(source, now):
            return DROP
        if self.guard.is_scanner(request.headers.get("User-Agent")):
            # A provider's address is never blocked, but a scanner still gets nothing.
            self.guard.scanner(source, now)
            return DROP
        proxy = request.method != "REGISTER"
        credentials = self._credentials(request, proxy=proxy)
        if credentials is None:
            # No credentials yet is the normal first step, not a failure.
            return self._challenge(request, now, proxy=proxy, stale=False, to_tag=to_tag)
        attempt = self.guard.reserve(source, credentials.username, now)
        if isinstance(attempt, Block):
            return self._refusal(request, attempt, now, to_tag=to_tag)
        ha1 = None
        if credentials.uri == str(request.uri):
            ha1 = ha1_of(credentials.username, credentials.effective_algorithm)
        result = self.digest.verify(credentials, method=request.method, ha1=ha1, now=now)
        if result.status is AuthStatus.OK:
            self.guard.succeeded(attempt)
            return Authenticated(credentials.username)
        if result.status is AuthStatus.STALE:
            self.guard.succeeded(attempt)  # an old nonce is no wrong password
            return self._challenge(request, now, proxy=proxy, stale=True, to_tag=to_tag)
        block = self.guard.rejected(attempt, now)
        if block is not None:
            return self._refusal(request, block, now, to_tag=to_tag)
        return self._challenge(request, now, proxy=proxy, stale=False, to_tag=to_tag)

    @staticmethod
    def _refusal(request: Request, block: Block, now: float, *, to_tag: str) -> Response | Drop:
        if not block.account:
            return DROP
        # The account is refused for a while, whoever asks: its own phone
        # gets told when to come back, and the guesser learns nothing (an
        # unknown username is counted and refused the same way).
        retry = max(1, math.ceil(block.until - now))
        return make_response(
            request,
            503,
            "Account Temporarily Locked",
            to_tag=to_tag,
            headers=[("Retry-After", str(retry))],
        )

    def _credentials(self, request: Request, *, proxy: bool) -> Credentials | None:
        name = "Proxy-Authorization" if proxy else "Authorization"
        for value in request.headers.get_all(name):
            try:
                credentials = parse_credentials(value)
            except DigestError:
                continue
            if credentials.realm == self.digest.realm:
                return credentials
        return None

    def _challenge(
        self, request: Request, now: float, *, proxy: bool, stale: bool, to_tag: str
    ) -> Response:
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return make_response(
            request,
            407 if proxy else 401,
            to_tag=to_tag,
            headers=[
                *((name, c.to_header_value()) for c in self.digest.challenge(now, stale=stale)),
                ("Server", self.server_name),
            ],
        )
