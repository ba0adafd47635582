"""Browser credentials whose API token was revoked (a sign-out, a new
password or role, the login deleted): found by asking the store, in the
background and never on the SIP path, then refused (403 "Credential
Revoked") and the bindings they signed let go at once.

The store is asked about the tokens of the browsers bound now: every
second for a few seconds after this process revoked any token (the
revoking request may not have committed yet), and every `FULL_RECHECK`
seconds regardless, for revocations made by another process or node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from sqlalchemy import func, select

from ..logs import log_event
from ..store import Database
from ..store.accounts import revocations
from ..store.models import ApiToken
from .browser_credentials import TAG_LENGTH, BrowserCredentials, claim_of
from .registrar import Binding, Registrar

logger = logging.getLogger("callbridge.pbx")

CHECK_INTERVAL = 1.0
RECHECK_AFTER_REVOCATION = 5.0
FULL_RECHECK = 30.0
# Tags asked about in one query.
_CHUNK = 500


class RevocationWatch:
    """Watches the tokens behind the browsers bound in `registrar()`."""

    def __init__(
        self,
        database: Database,
        credentials: BrowserCredentials,
        registrar: Callable[[], Registrar | None],
        *,
        clock: Callable[[], float],
    ) -> None:
        self.database = database
        self.credentials = credentials
        self.registrar = registrar
        self.clock = clock
        self._generation = revocations()
        self._recheck_until = float("-inf")
        self._checked_at = clock()

    def due(self, now: float) -> bool:
        """Whether to ask the store now (a revocation here, or a while since)."""
        generation = revocations()
        if generation != self._generation:
            self._generation = generation
            self._recheck_until = now + RECHECK_AFTER_REVOCATION
        return now < self._recheck_until or now - self._checked_at >= FULL_RECHECK

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = self.clock()
            if not self.due(now):
                continue
            self._checked_at = now
            try:
                await self.check()
            except Exception:  # the store is away for a moment: ask again later
                logger.exception("pbx.revocation_check_failed")

    async def check(self) -> int:
        """Ask the store about the tokens of the browsers bound now; refuse
        and let go of those whose token is gone. Returns how many bindings
        went."""
        registrar = self.registrar()
        if registrar is None:
            return 0
        in_use = _tags_in_use(registrar, self.clock())
        if not in_use:
            return 0
        live = await self._live(in_use)
        gone = {tag: until for tag, until in in_use.items() if tag not in live}
        if not gone:
            return 0
        self.credentials.revoke(gone)
        dropped = registrar.forget(lambda b: _tag_of(b) in gone, self.clock())
        log_event(logger, logging.INFO, "pbx.browser_revoked", tokens=len(gone), bindings=dropped)
        return dropped

    async def _live(self, tags: Iterable[str]) -> set[str]:
        prefix = func.substr(ApiToken.token_hash, 1, TAG_LENGTH)
        wanted = sorted(tags)
        live: set[str] = set()
        async with self.database.session() as session:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                live.update(await session.scalars(select(prefix).where(prefix.in_(chunk))))
        return live


def _tag_of(binding: Binding) -> str | None:
    claim = claim_of(binding.signed_by) if binding.signed_by else None
    return None if claim is None else claim.token_tag


def _tags_in_use(registrar: Registrar, now: float) -> dict[str, float]:
    """The token tag of every browser binding, with when its credential expires."""
    in_use: dict[str, float] = {}
    location = registrar.location
    for aor in location.aors():
        for binding in location.bindings(aor, now):
            claim = claim_of(binding.signed_by) if binding.signed_by else None
            if claim is not None:
                in_use[claim.token_tag] = max(in_use.get(claim.token_tag, 0), claim.expires_at)
    return in_use
