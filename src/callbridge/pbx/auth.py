"""Who sent this request: digest authentication of internal lines
(RFC 3261 §22 with RFC 8760), joined to the flood guard.

`Authenticator.check` returns one of three outcomes: the line's username
when the credentials are right, the challenge response to send (401 for
REGISTER, 407 for everything else), or `DROP` for a source that is blocked
or a scanner — those get no answer at all. A wrong password and an unknown
username get the same challenge, so usernames cannot be enumerated; an
account guessed at too often (known or not) gets 503 with Retry-After for a
while, from every source.

The challenge offers the algorithms of the line the request names (its own
`digest_algorithms`, else the server's), and only those are accepted in its
answer. Each failure is logged once at info (`auth.failed`) with the account
tried, the source and the reason, never the response or a hash; the first
request, which only gets its challenge, is no failure.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..logs import log_event
from ..sip import Request, Response, make_response
from ..sip.digest import (
    AuthResult,
    AuthStatus,
    Credentials,
    DigestError,
    DigestServer,
    parse_credentials,
)
from .guard import Attempt, Block, FloodGuard

logger = logging.getLogger("callbridge.pbx")

# username, algorithm ("MD5", "SHA-256", ...) -> the stored HA1, or None.
HA1Lookup = Callable[[str, str], str | None]
# A line's username or number -> the digest algorithms it is offered, in
# order; None: the server's.
AlgorithmsLookup = Callable[[str], Sequence[str] | None]

# Characters of the username tried that a log line shows.
_MAX_LOGGED_ACCOUNT = 64
# DigestServer's reasons in the words of `auth.failed`.
_REASONS = {
    "realm mismatch": "wrong realm",
    "unsupported algorithm": "algorithm not allowed",
    "unknown nonce": "bad nonce",
    "replayed nonce count": "replay",
}


def _no_choice(user: str) -> Sequence[str] | None:
    return None


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
        self,
        request: Request,
        *,
        source: str,
        ha1_of: HA1Lookup,
        now: float,
        to_tag: str,
        algorithms_of: AlgorithmsLookup = _no_choice,
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
            algorithms = algorithms_of(_named_user(request))
            return self._challenge(request, now, algorithms, stale=False, to_tag=to_tag)
        algorithms = algorithms_of(credentials.username)
        attempt = self.guard.reserve(source, credentials.username, now)
        if isinstance(attempt, Block):
            log_event(
                logger,
                logging.DEBUG,
                "auth.refused",
                account=_shown(credentials.username),
                src=source,
                blocked="account" if attempt.account else "source",
            )
            return self._refusal(request, attempt, now, to_tag=to_tag)
        if credentials.realm != self.digest.realm:
            reason = "wrong realm"
            return self._failed(request, credentials, attempt, reason, algorithms, now, to_tag)
        uri_matches = credentials.uri == str(request.uri)
        ha1 = None
        if uri_matches:
            ha1 = ha1_of(credentials.username, credentials.effective_algorithm)
        result = self.digest.verify(
            credentials, method=request.method, ha1=ha1, now=now, algorithms=algorithms
        )
        if result.status is AuthStatus.OK:
            self.guard.succeeded(attempt)
            return Authenticated(credentials.username)
        if result.status is AuthStatus.STALE:
            # An old nonce with the right password: the phone answers the fresh
            # challenge by itself. No failure, and routine: not at info.
            self.guard.succeeded(attempt)
            log_event(
                logger,
                logging.DEBUG,
                "auth.stale_nonce",
                account=_shown(credentials.username),
                src=source,
            )
            return self._challenge(request, now, algorithms, stale=True, to_tag=to_tag)
        reason = _failure_reason(result, uri_matches=uri_matches, known=ha1 is not None)
        return self._failed(request, credentials, attempt, reason, algorithms, now, to_tag)

    def _failed(
        self,
        request: Request,
        credentials: Credentials,
        attempt: Attempt,
        reason: str,
        algorithms: Sequence[str] | None,
        now: float,
        to_tag: str,
    ) -> Response | Drop:
        """A wrong answer: logged once, counted by the guard, challenged again
        (or refused, when this failure earned a block)."""
        log_event(
            logger,
            logging.INFO,
            "auth.failed",
            account=_shown(credentials.username),
            src=attempt.source,
            method=request.method,
            reason=reason,
        )
        block = self.guard.rejected(attempt, now)
        if block is not None:
            return self._refusal(request, block, now, to_tag=to_tag)
        return self._challenge(request, now, algorithms, stale=False, to_tag=to_tag)

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
        """Our realm's credentials. A REGISTER's for another realm are a
        wrong answer (only we challenge it); a request's Proxy-Authorization
        for another realm may be a proxy's on the way, and is passed over."""
        name = "Proxy-Authorization" if proxy else "Authorization"
        other = None
        for value in request.headers.get_all(name):
            try:
                credentials = parse_credentials(value)
            except DigestError:
                continue
            if credentials.realm == self.digest.realm:
                return credentials
            other = other or credentials
        return None if proxy else other

    def _challenge(
        self,
        request: Request,
        now: float,
        algorithms: Sequence[str] | None,
        *,
        stale: bool,
        to_tag: str,
    ) -> Response:
        proxy = request.method != "REGISTER"
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        challenges = self.digest.challenge(now, stale=stale, algorithms=algorithms)
        return make_response(
            request,
            407 if proxy else 401,
            to_tag=to_tag,
            headers=[
                *((name, c.to_header_value()) for c in challenges),
                ("Server", self.server_name),
            ],
        )


def _named_user(request: Request) -> str:
    """The user a request without credentials is for: a REGISTER's To (the
    line it registers), anything else's From (the line that sends it)."""
    uri = request.to.uri if request.method == "REGISTER" else request.from_.uri
    return str(getattr(uri, "user_unescaped", None) or "")


def _failure_reason(result: AuthResult, *, uri_matches: bool, known: bool) -> str:
    if result.reason != "response mismatch":
        return _REASONS.get(result.reason, result.reason)
    if not uri_matches:
        return "digest URI mismatch"
    return "wrong password" if known else "unknown user"


def _shown(account: str) -> str:
    # The username is the sender's text: bounded here, escaped by log_event.
    if len(account) > _MAX_LOGGED_ACCOUNT:
        return account[:_MAX_LOGGED_ACCOUNT] + "..."
    return account
