"""Short-lived SIP credentials for a signed-in employee's browser, so no
line's SIP password sits in a web page (docs/SECURITY.md argues the scheme).

The username says whose, until when and from which API token — `web/<employee
id>/<line number>/<expiry, Unix seconds>/<token tag>` — and the password is
an HMAC of it under the server's secret: nothing is stored, any node with
the secret checks it, and a changed character makes another password. They
sign requests only over a WebSocket, only for that employee's line while it
is theirs and enabled, only until they expire, and only while their token
is not revoked (`pbx/browser_revocation.py` finds out). No I/O here: the
wall clock is passed in, the secret read by whoever builds this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..sip.digest import DigestError, compute_ha1
from .lines import Line, Lines

# The transports a browser credential may sign on (RFC 7118).
WEBSOCKET_TRANSPORTS = frozenset({"ws", "wss"})
# '/' is in no line's username (api/internal_lines.py), so the two never meet.
# A token's tag: the start of the SHA-256 the store keeps of it (128 bits).
TAG_LENGTH = 32
_USERNAME = re.compile(r"web/([1-9][0-9]{0,17})/([0-9]{2,15})/([1-9][0-9]{0,11})/([0-9a-f]{32})")
_CONTEXT = b"callbridge browser SIP credential v1\x00"
SECRET_FILE = "browser-sip.secret"
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class BrowserCredential:
    """What the browser signs its SIP with (JsSIP's authorization_user and password)."""

    username: str
    password: str
    line_number: str
    employee_id: int
    expires_at: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class Claim:
    """What a browser username claims, before anyone believed it."""

    employee_id: int
    line_number: str
    expires_at: int
    token_tag: str


class Refused(Exception):
    """A browser credential whose digest was right but which may not sign
    now: expired, or its line no longer its employee's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrowserCredentials:
    """Issues and checks browser credentials under `secret` for the lines
    `lines()` gives (the running snapshot), each valid `ttl` seconds."""

    def __init__(
        self,
        secret: bytes,
        *,
        lines: Callable[[], Lines],
        ttl: float,
        clock: Callable[[], float],
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must have at least 16 bytes")
        self._key = hashlib.sha256(_CONTEXT + secret).digest()
        self.lines = lines
        self.ttl = ttl
        self.clock = clock
        # Tags of tokens found revoked, until their credentials expire.
        self._revoked: dict[str, float] = {}

    def issue(
        self, employee_id: int, *, token_tag: str, not_after: float | None = None
    ) -> BrowserCredential | None:
        """A credential for the employee's line (None: no enabled line of
        theirs runs), bound to the token `token_tag` names, valid `ttl`
        seconds and never past `not_after` (the token's own expiry)."""
        if len(token_tag) != TAG_LENGTH:
            raise ValueError("a token tag has 32 hexadecimal digits")
        line = self.line_of_employee(employee_id)
        if line is None:
            return None
        expires = self.clock() + self.ttl
        if not_after is not None:
            expires = min(expires, not_after)
        expires_at = int(expires)
        username = f"web/{employee_id}/{line.number}/{expires_at}/{token_tag}"
        return BrowserCredential(
            username=username,
            password=self._password(username),
            line_number=line.number,
            employee_id=employee_id,
            expires_at=float(expires_at),
        )

    def line_of_employee(self, employee_id: int) -> Line | None:
        """The employee's enabled line in the running snapshot (the lowest
        number, should they have several)."""
        theirs = [
            line
            for line in self.lines().by_number.values()
            if line.employee_id == employee_id and not line.disabled
        ]
        return min(theirs, key=lambda line: line.number, default=None)

    def ha1_of(self, username: str, realm: str, algorithm: str) -> str | None:
        """The HA1 of a well-formed browser username (None for any other):
        only who holds the password the server derived can answer with it."""
        if claim_of(username) is None:
            return None
        try:
            return compute_ha1(username, realm, self._password(username), algorithm)
        except DigestError:
            return None  # an algorithm we do not offer

    def line_for(self, username: str, lines: Lines) -> Line:
        """The line an authenticated browser username signs for; `Refused`
        when it has expired or the line is no longer its employee's."""
        claim = claim_of(username)
        if claim is None:
            raise Refused("Not A Browser Credential")
        if claim.expires_at <= self.clock():
            raise Refused("Credential Expired")
        if claim.token_tag in self._revoked:
            raise Refused("Credential Revoked")
        line = lines.by_number.get(claim.line_number)
        if line is None or line.employee_id != claim.employee_id:
            raise Refused("Not Your Line")
        return line

    def revoke(self, tags: dict[str, float]) -> None:
        """Refuse the credentials of the tokens `tags` names (each with the
        time its last credential expires: forgotten after it)."""
        now = self.clock()
        for tag, until in list(self._revoked.items()):
            if until <= now:
                del self._revoked[tag]
        self._revoked.update(tags)

    def is_revoked(self, tag: str) -> bool:
        return tag in self._revoked

    def seconds_left(self, username: str) -> int | None:
        """How long a browser credential still signs (None: not one)."""
        claim = claim_of(username)
        if claim is None:
            return None
        return max(0, int(claim.expires_at - self.clock()))

    def _password(self, username: str) -> str:
        digest = hmac.new(self._key, username.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def claim_of(username: str) -> Claim | None:
    match = _USERNAME.fullmatch(username)
    if match is None:
        return None
    employee, number, expires, tag = match.groups()
    return Claim(int(employee), number, int(expires), tag)


class Accounts:
    """Who may sign a request from a transport: every line by its own
    username and password; over a WebSocket, also browser credentials."""

    def __init__(
        self, lines: Lines, browser: BrowserCredentials | None, *, transport: str, realm: str
    ) -> None:
        self.lines = lines
        self.realm = realm
        self._browser = browser if transport.lower() in WEBSOCKET_TRANSPORTS else None

    def ha1_of(self, username: str, algorithm: str) -> str | None:
        if self._browser is not None and username.startswith("web/"):
            return self._browser.ha1_of(username, self.realm, algorithm)
        return self.lines.ha1_of(username, algorithm)

    def digest_algorithms_of(self, user: str) -> Sequence[str] | None:
        claim = claim_of(user) if self._browser is not None else None
        return self.lines.digest_algorithms_of(claim.line_number if claim else user)

    def line_of(self, username: str) -> Line:
        """The line an authenticated username signs for (`Refused`: none now)."""
        if self._browser is not None and username.startswith("web/"):
            return self._browser.line_for(username, self.lines)
        return self.lines.by_username[username]

    def seconds_left(self, username: str) -> int | None:
        """How long an authenticated username still signs: a browser
        credential's time left, None for a line's own account."""
        if self._browser is not None and username.startswith("web/"):
            return self._browser.seconds_left(username)
        return None


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The secret browser credentials are signed with: the setting's, else
    the one kept in `data_dir` (made on the first start, readable by the
    owner only). Blocking: call it in a thread."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(_SECRET_BYTES)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(descriptor, "w") as file:
        file.write(secret.hex() + "\n")
    return secret
