"""SIP Digest authentication (RFC 3261 §22, RFC 2617, RFC 8760) on header values.

Owns parsing and serializing WWW-/Proxy-Authenticate and (Proxy-)Authorization values,
the response computation, stateless nonces for the server side, and answering a
challenge on the client side. No sockets, no clock: ``now`` is always passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from .errors import ParseError
from .grammar import TOKEN_RE, quote, quote_if_needed, read_quoted

__all__ = [
    "AuthResult",
    "AuthStatus",
    "Challenge",
    "Credentials",
    "DigestError",
    "DigestServer",
    "answer_challenge",
    "compute_ha1",
    "compute_response",
    "parse_algorithm_list",
    "parse_challenge",
    "parse_credentials",
    "select_challenge",
]

MAX_HEADER_LENGTH = 4096
MAX_PARAMS = 32
MAX_NONCE_COUNT = 0xFFFFFFFF


class DigestError(ValueError):
    """A header value or an argument that Digest authentication cannot work with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- algorithms -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str
    hash_name: str
    session: bool
    preference: int  # lower is preferred when a client picks among challenges

    def digest(self, data: str) -> str:
        return hashlib.new(self.hash_name, data.encode("utf-8")).hexdigest()

    def digest_bytes(self, data: bytes) -> str:
        return hashlib.new(self.hash_name, data).hexdigest()


_ALGORITHMS: dict[str, _Algorithm] = {
    alg.name.upper(): alg
    for alg in (
        _Algorithm("SHA-256", "sha256", session=False, preference=0),
        _Algorithm("SHA-256-sess", "sha256", session=True, preference=1),
        _Algorithm("MD5", "md5", session=False, preference=2),
        _Algorithm("MD5-sess", "md5", session=True, preference=3),
    )
}

# RFC 2617 §3.2.1: an absent algorithm directive means MD5.
_DEFAULT_ALGORITHM = "MD5"
_SUPPORTED_QOP = ("auth", "auth-int")


def _canonical_algorithm(name: str) -> str:
    known = _ALGORITHMS.get(name.upper())
    return known.name if known else name


def _lookup_algorithm(name: str | None) -> _Algorithm | None:
    return _ALGORITHMS.get((name or _DEFAULT_ALGORITHM).upper())


def _require_algorithm(name: str | None) -> _Algorithm:
    alg = _lookup_algorithm(name)
    if alg is None:
        raise DigestError(f"unsupported algorithm: {name}")
    return alg


def parse_algorithm_list(text: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """The algorithms of a comma-separated list as people type it ("sha-256, md5"):
    their canonical names in the order given. Raises DigestError naming what is wrong
    and what ``allowed`` holds."""
    choices = ", ".join(allowed)
    names: list[str] = []
    for item in text.split(","):
        known = _lookup_algorithm(item.strip()) if item.strip() else None
        if known is None or known.name not in allowed:
            shown = item.strip()[:32]
            what = repr(shown) if shown else "an empty item"
            raise DigestError(f"{what} is not one of {choices} (comma separated, in order)")
        if known.name in names:
            raise DigestError(f"{known.name} is listed twice")
        names.append(known.name)
    return tuple(names)


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password): what a user store may keep instead of the password.

    For the ``-sess`` algorithms this is still the base value; the per-nonce session key
    is derived in `compute_response`, so one stored HA1 serves every request.
    """
    return _require_algorithm(algorithm).digest(f"{username}:{realm}:{password}")


def compute_response(
    *,
    ha1: str,
    algorithm: str | None,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 2617 §3.2.2.1 (RFC 2069 form when ``qop`` is None)."""
    alg = _require_algorithm(algorithm)
    if alg.session:
        if cnonce is None:
            raise DigestError(f"{alg.name} needs a cnonce")
        ha1 = alg.digest(f"{ha1}:{nonce}:{cnonce}")
    ha2_input = f"{method}:{uri}"
    if qop == "auth-int":
        ha2_input += ":" + alg.digest_bytes(body)
    ha2 = alg.digest(ha2_input)
    if qop is None:
        return alg.digest(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    return alg.digest(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


# --- auth-param parsing ---------------------------------------------------------------------

_LWS = " \t"
_BARE_STOP = _LWS + ',"'
_FOLD = re.compile(r"\r?\n[ \t]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class _Cursor:
    """Walks one header value; every method either consumes input or raises DigestError."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_lws(self) -> bool:
        start = self.pos
        while self.peek() and self.peek() in _LWS:
            self.pos += 1
        return self.pos > start

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise DigestError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1

    def token(self, what: str) -> str:
        match = TOKEN_RE.match(self.text, self.pos)
        if match is None:
            raise DigestError(f"expected {what} at offset {self.pos}")
        self.pos = match.end()
        return match.group()

    def quoted_string(self) -> str:
        try:
            value, self.pos = read_quoted(self.text, self.pos)
        except ParseError as error:
            raise DigestError(error.reason.lower()) from None
        return value

    def bare_value(self) -> str:
        # Laxer than RFC token: real phones send unquoted base64 nonces with '/' and '='.
        start = self.pos
        while self.peek() and self.peek() not in _BARE_STOP:
            self.pos += 1
        value = self.text[start : self.pos]
        if not value or not value.isascii():
            raise DigestError(f"expected a parameter value at offset {start}")
        return value


def _parse_auth_value(value: str) -> dict[str, str]:
    """Parse ``Digest name=value, ...`` into lower-cased names mapped to unquoted values."""
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError("header value too long")
    text = _FOLD.sub(" ", value).strip(_LWS)
    if _CONTROL.search(text):
        raise DigestError("control character in header value")
    cursor = _Cursor(text)
    scheme = cursor.token("auth scheme")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme: {scheme}")
    if not cursor.skip_lws():
        raise DigestError("expected parameters after the auth scheme")
    params: dict[str, str] = {}
    while True:
        name, param_value = _parse_param(cursor)
        if name in params:
            raise DigestError(f"duplicate parameter: {name}")
        if len(params) >= MAX_PARAMS:
            raise DigestError("too many parameters")
        params[name] = param_value
        cursor.skip_lws()
        if cursor.at_end():
            return params
        cursor.expect(",")
        cursor.skip_lws()


def _parse_param(cursor: _Cursor) -> tuple[str, str]:
    name = cursor.token("parameter name").lower()
    cursor.skip_lws()
    cursor.expect("=")
    cursor.skip_lws()
    value = cursor.quoted_string() if cursor.peek() == '"' else cursor.bare_value()
    return name, value


def _required(params: dict[str, str], name: str) -> str:
    if name not in params:
        raise DigestError(f"missing parameter: {name}")
    return params[name]


def _parse_nc(value: str | None) -> int | None:
    if value is None:
        return None
    if not _HEX8.fullmatch(value):
        raise DigestError("nc must be 8 hex digits")
    return int(value, 16)


def _optional_algorithm(params: dict[str, str]) -> str | None:
    name = params.get("algorithm")
    return None if name is None else _canonical_algorithm(name)


# --- serializing ----------------------------------------------------------------------------


def _refuse_control(value: str) -> str:
    # A CR or LF here would let a username inject header lines into the message.
    if _CONTROL.search(value):
        raise DigestError("control character in parameter value")
    return value


def _quote(value: str) -> str:
    return quote(_refuse_control(value))


def _token_or_quote(value: str) -> str:
    # Values the RFC sends bare are quoted anyway if they are not tokens, so they round-trip.
    return quote_if_needed(_refuse_control(value))


def _join(params: list[tuple[str, str]]) -> str:
    return "Digest " + ", ".join(f"{name}={value}" for name, value in params)


# --- header values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge: the value of a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    opaque: str | None = None
    stale: bool = False
    algorithm: str | None = None
    qop: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()

    def to_header_value(self) -> str:
        params = [("realm", _quote(self.realm))]
        if self.domain:
            params.append(("domain", _quote(" ".join(self.domain))))
        params.append(("nonce", _quote(self.nonce)))
        if self.opaque is not None:
            params.append(("opaque", _quote(self.opaque)))
        if self.stale:
            params.append(("stale", "true"))
        if self.algorithm is not None:
            params.append(("algorithm", _token_or_quote(self.algorithm)))
        if self.qop:
            params.append(("qop", _quote(",".join(self.qop))))
        return _join(params)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A Digest answer: the value of an Authorization or Proxy-Authorization header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None

    @property
    def effective_algorithm(self) -> str:
        """The algorithm the response was computed with; pick the stored HA1 by this."""
        return _canonical_algorithm(self.algorithm or _DEFAULT_ALGORITHM)

    def to_header_value(self) -> str:
        params = [
            ("username", _quote(self.username)),
            ("realm", _quote(self.realm)),
            ("nonce", _quote(self.nonce)),
            ("uri", _quote(self.uri)),
            ("response", _quote(self.response)),
        ]
        if self.algorithm is not None:
            params.append(("algorithm", _token_or_quote(self.algorithm)))
        if self.cnonce is not None:
            params.append(("cnonce", _quote(self.cnonce)))
        if self.opaque is not None:
            params.append(("opaque", _quote(self.opaque)))
        if self.qop is not None:
            params.append(("qop", _token_or_quote(self.qop)))
        if self.nc is not None:
            params.append(("nc", _format_nc(self.nc)))
        return _join(params)


def _format_nc(nc: int) -> str:
    if not 0 <= nc <= MAX_NONCE_COUNT:
        raise DigestError("nc out of range")
    return f"{nc:08x}"


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value; raise DigestError if malformed."""
    params = _parse_auth_value(value)
    qop = params.get("qop", "")
    return Challenge(
        realm=_required(params, "realm"),
        nonce=_required(params, "nonce"),
        opaque=params.get("opaque"),
        # RFC 2617 §3.2.1: anything but "true" means not stale.
        stale=params.get("stale", "").lower() == "true",
        algorithm=_optional_algorithm(params),
        qop=tuple(option.strip() for option in qop.split(",") if option.strip()),
        domain=tuple(params.get("domain", "").split()),
    )


def parse_credentials(value: str) -> Credentials:
    """Parse an Authorization / Proxy-Authorization value; raise DigestError if malformed."""
    params = _parse_auth_value(value)
    credentials = Credentials(
        username=_required(params, "username"),
        realm=_required(params, "realm"),
        nonce=_required(params, "nonce"),
        uri=_required(params, "uri"),
        response=_required(params, "response"),
        algorithm=_optional_algorithm(params),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        qop=params.get("qop"),
        nc=_parse_nc(params.get("nc")),
    )
    if credentials.qop is not None and (credentials.cnonce is None or credentials.nc is None):
        raise DigestError("qop needs cnonce and nc")
    return credentials


# --- client side ----------------------------------------------------------------------------


def _is_answerable(challenge: Challenge) -> bool:
    if _lookup_algorithm(challenge.algorithm) is None:
        return False
    return not challenge.qop or any(option in _SUPPORTED_QOP for option in challenge.qop)


def select_challenge(challenges: Sequence[Challenge]) -> Challenge:
    """The challenge to answer: SHA-256 before MD5, unsupported ones skipped (RFC 8760 §2.4)."""
    usable = [challenge for challenge in challenges if _is_answerable(challenge)]
    if not usable:
        raise DigestError("no supported challenge")
    return min(usable, key=lambda challenge: _require_algorithm(challenge.algorithm).preference)


def _choose_qop(offered: tuple[str, ...]) -> str | None:
    for option in _SUPPORTED_QOP:
        if option in offered:
            return option
    if offered:
        raise DigestError("no supported qop offered")
    return None


def answer_challenge(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> Credentials:
    """Credentials answering ``challenge``; qop=auth when offered, RFC 2069 form when no qop."""
    alg = _require_algorithm(challenge.algorithm)
    qop = _choose_qop(challenge.qop)
    if qop is None and alg.session:
        raise DigestError(f"{alg.name} challenge without qop")
    if qop is not None:
        _format_nc(nc)
        cnonce = cnonce if cnonce is not None else secrets.token_hex(16)
    else:
        cnonce = None
    response = compute_response(
        ha1=compute_ha1(username, challenge.realm, password, alg.name),
        algorithm=alg.name,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc if qop else None,
        cnonce=cnonce,
        body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop else None,
    )


# --- server side ----------------------------------------------------------------------------


class AuthStatus(Enum):
    OK = "ok"
    # The digest was right but the nonce is too old: challenge again with stale=true so
    # the phone retries without asking its user for the password.
    STALE = "stale"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of `DigestServer.verify`; ``reason`` is for logs, never for the wire."""

    status: AuthStatus
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


_OK = AuthResult(AuthStatus.OK)
# Same reason for unknown user and wrong password so logs shipped anywhere leak neither.
_MISMATCH = AuthResult(AuthStatus.FAILED, "response mismatch")

_NONCE_CONTEXT = b"callbridge sip digest nonce\x00"
_NONCE_RANDOM_BYTES = 8
_NONCE_MAC_BYTES = 16
_NONCE_PACK = struct.Struct(f">d{_NONCE_RANDOM_BYTES}s")
# Unpadded base64url of the packed time, random and MAC.
_NONCE_LENGTH = ((_NONCE_PACK.size + _NONCE_MAC_BYTES) * 4 + 2) // 3
# Larger than any 8-hex-digit nc: marks a nonce as used up.
_CONSUMED = MAX_NONCE_COUNT + 1
_UNKNOWN_USER_PASSWORD = "\x00callbridge: no such user\x00"


# A nonce's use: (issued at, last nc). A plain tuple of numbers, as the
# garbage collector stops tracking one (not a class's instance, nor a named
# tuple), and a busy server remembers a nonce for every call of 5 minutes.
_NonceUse = tuple[float, int]


class DigestServer:
    """Issues Digest challenges and checks answers for one realm.

    Nonces carry their issue time and are HMAC'd with ``secret``, so nothing is stored
    per challenge. Only nonces that were answered correctly are remembered, to reject
    replays: with qop the ``nc`` must grow; without qop (RFC 2069 phones, only if
    ``allow_legacy``) a nonce is good for one request, since nothing else stops a captured
    request from being replayed within the TTL. The table holds at most
    ``max_tracked_nonces`` entries; a nonce forgotten to honour that cap is answered
    STALE, never OK, so eviction cannot reopen a replay.

    Challenges go out in the order of ``algorithms``, the admin's preference (RFC 8760
    §2.3: the most preferred at the top); some phones answer only the first one.
    ``challenge`` and ``verify`` take another list for one account (a line's own choice).

    The caller still checks that ``credentials.uri`` matches the Request-URI.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes | None = None,
        *,
        nonce_ttl: float = 300.0,
        algorithms: Sequence[str] = ("MD5", "SHA-256"),
        allow_legacy: bool = False,
        max_tracked_nonces: int = 10_000,
    ) -> None:
        if max_tracked_nonces < 1:
            raise DigestError("max_tracked_nonces must be positive")
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self.allow_legacy = allow_legacy
        self.max_tracked_nonces = max_tracked_nonces
        self._algorithms = _resolve(algorithms)
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._uses: dict[str, _NonceUse] = {}
        # Nonces issued at or before this time and not in _uses were forgotten.
        self._forgotten_until = float("-inf")

    @property
    def tracked_nonce_count(self) -> int:
        return len(self._uses)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms offered when no other list is given, in their order."""
        return tuple(alg.name for alg in self._algorithms)

    def challenge(
        self, now: float, *, stale: bool = False, algorithms: Sequence[str] | None = None
    ) -> list[Challenge]:
        """One challenge per algorithm in the order given (``algorithms``, else the
        server's), all sharing one fresh nonce."""
        nonce = self._make_nonce(now)
        chosen = self._algorithms if algorithms is None else _resolve(algorithms)
        return [
            Challenge(self.realm, nonce, stale=stale, algorithm=alg.name, qop=("auth",))
            for alg in chosen
        ]

    def verify(
        self,
        credentials: Credentials,
        *,
        method: str,
        password: str | None = None,
        ha1: str | None = None,
        now: float,
        body: bytes = b"",
        algorithms: Sequence[str] | None = None,
    ) -> AuthResult:
        """Check an answer. Pass ``password`` or the stored ``ha1``; neither for an unknown user.
        An answer with an algorithm outside ``algorithms`` (else the server's) fails."""
        if password is not None and ha1 is not None:
            raise ValueError("pass password or ha1, not both")
        allowed = self._algorithms if algorithms is None else _resolve(algorithms)
        problem = self._shape_problem(credentials, allowed)
        if problem is not None:
            return AuthResult(AuthStatus.FAILED, problem)
        issued_at = self._nonce_issued_at(credentials.nonce)
        if not _response_matches(credentials, method, password, ha1, body):
            return (
                _MISMATCH
                if issued_at is not None
                else AuthResult(AuthStatus.FAILED, "unknown nonce")
            )
        if issued_at is None:
            # The right password on a nonce we did not make: one from before
            # a restart (the nonce key is new each start), answered like an
            # expired one, so phones re-registering after a restart are not
            # counted as failing (RFC 7616 §3.3 lets stale=true mean this).
            return AuthResult(AuthStatus.STALE, "nonce not ours")
        if self._is_stale(credentials.nonce, issued_at, now):
            return AuthResult(AuthStatus.STALE, "nonce expired")
        if not self._record_use(credentials, issued_at, now):
            return AuthResult(AuthStatus.FAILED, "replayed nonce count")
        return _OK

    def _shape_problem(
        self, credentials: Credentials, allowed: tuple[_Algorithm, ...]
    ) -> str | None:
        if credentials.realm != self.realm:
            return "realm mismatch"
        alg = _lookup_algorithm(credentials.algorithm)
        if alg is None or alg not in allowed:
            return "unsupported algorithm"
        if credentials.qop is None:
            if not self.allow_legacy or alg.session:
                return "qop required"
            return None
        if credentials.qop not in _SUPPORTED_QOP:
            return "unsupported qop"
        if credentials.cnonce is None or credentials.nc is None:
            return "qop needs cnonce and nc"
        if not 1 <= credentials.nc <= MAX_NONCE_COUNT:
            return "nc out of range"
        return None

    def _nonce_mac(self, payload: bytes) -> bytes:
        message = _NONCE_CONTEXT + self.realm.encode("utf-8") + b"\x00" + payload
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_NONCE_MAC_BYTES]

    def _make_nonce(self, now: float) -> str:
        payload = _NONCE_PACK.pack(now, secrets.token_bytes(_NONCE_RANDOM_BYTES))
        raw = payload + self._nonce_mac(payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def _nonce_issued_at(self, nonce: str) -> float | None:
        """The issue time of a nonce this server made, None if forged or altered."""
        if len(nonce) != _NONCE_LENGTH or not nonce.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        payload, mac = raw[: _NONCE_PACK.size], raw[_NONCE_PACK.size :]
        if not hmac.compare_digest(mac, self._nonce_mac(payload)):
            return None
        issued_at: float = _NONCE_PACK.unpack(payload)[0]
        return issued_at

    def _is_stale(self, nonce: str, issued_at: float, now: float) -> bool:
        if not 0 <= now - issued_at <= self.nonce_ttl:
            return True
        return nonce not in self._uses and issued_at <= self._forgotten_until

    def _record_use(self, credentials: Credentials, issued_at: float, now: float) -> bool:
        """Remember this use of the nonce; False if it replays an earlier one."""
        self._purge_expired(now)
        count = _CONSUMED if credentials.qop is None else (credentials.nc or 0)
        use = self._uses.get(credentials.nonce)
        if use is not None:
            issued, last_nc = use
            if credentials.qop is None or count <= last_nc:
                return False
            self._uses[credentials.nonce] = (issued, count)
            return True
        while len(self._uses) >= self.max_tracked_nonces:
            self._forget_oldest()
        self._uses[credentials.nonce] = (issued_at, count)
        return True

    def _purge_expired(self, now: float) -> None:
        # Entries sit in first-use order, which roughly follows issue order, so expired
        # ones gather at the front; the size cap bounds whatever lingers further back.
        while self._uses:
            issued_at, _ = next(iter(self._uses.values()))
            if now - issued_at <= self.nonce_ttl:
                return
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        nonce = next(iter(self._uses))
        issued_at, _ = self._uses.pop(nonce)
        self._forgotten_until = max(self._forgotten_until, issued_at)


def _resolve(algorithms: Sequence[str]) -> tuple[_Algorithm, ...]:
    """The algorithms named, in their order, each once."""
    chosen = tuple(dict.fromkeys(_require_algorithm(name) for name in algorithms))
    if not chosen:
        raise DigestError("at least one algorithm is needed")
    return chosen


def _response_matches(
    credentials: Credentials,
    method: str,
    password: str | None,
    ha1: str | None,
    body: bytes,
) -> bool:
    # Hash exactly as much for an unknown user or a stored HA1 as for a known password,
    # so response time does not tell which usernames exist.
    algorithm = credentials.effective_algorithm
    computed_ha1 = compute_ha1(
        credentials.username,
        credentials.realm,
        password if password is not None else _UNKNOWN_USER_PASSWORD,
        algorithm,
    )
    expected = compute_response(
        ha1=ha1.lower() if ha1 is not None else computed_ha1,
        algorithm=algorithm,
        method=method,
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
        body=body,
    )
    given = credentials.response.lower().encode("utf-8")
    matches = hmac.compare_digest(expected.encode("ascii"), given)
    return matches and (password is not None or ha1 is not None)
