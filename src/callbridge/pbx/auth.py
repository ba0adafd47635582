"""Who sent this request: digest authentication of internal lines
(RFC 3261 §22 with RFC 8760), joined to the flood guard.

`Authenticator.check` returns one of three outcomes: the line's username
when the credentials are right, the challenge response to send (401 for
REGISTER, 407 for everything else), or `DROP` for a source that is blocked
or a scanner — those get no answer at all. A wrong password and an unknown
username get the same challenge, so usernames cannot be enumerated.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ..sip import Request, Response, make_response
from ..sip.digest import AuthStatus, Credentials, DigestError, DigestServer, parse_credentials
from .guard import FloodGuard

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
            self.guard.block(source, now, "scanner User-Agent")
            return DROP
        proxy = request.method != "REGISTER"
        credentials = self._credentials(request, proxy=proxy)
        if credentials is None:
            # No credentials yet is the normal first step, not a failure.
            return self._challenge(request, now, proxy=proxy, stale=False, to_tag=to_tag)
        ha1 = None
        if credentials.uri == str(request.uri):
            ha1 = ha1_of(credentials.username, credentials.effective_algorithm)
        result = self.digest.verify(credentials, method=request.method, ha1=ha1, now=now)
        if result.status is AuthStatus.OK:
            self.guard.succeeded(source)
            return Authenticated(credentials.username)
        if result.status is AuthStatus.STALE:
            return self._challenge(request, now, proxy=proxy, stale=True, to_tag=to_tag)
        if self.guard.failed(source, now) is not None:
            return DROP
        return self._challenge(request, now, proxy=proxy, stale=False, to_tag=to_tag)

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
