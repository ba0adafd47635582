"""API users: argon2 password hashes, bearer tokens stored as their SHA-256
(issued, looked up and revoked), and the first admin account."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ScalarSelect, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ApiToken, Role, User, utcnow

_hasher = PasswordHasher()
# Verified when the username is unknown, so that answer costs what a wrong
# password costs and timing does not tell which usernames exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _lower_priority() -> None:
    # Linux niceness is per thread (and argon2's own lane threads inherit
    # it): under a login flood the loop that carries SIP and audio wins the CPU.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


# argon2 costs tens of milliseconds of CPU by design: never on the event
# loop, and at most two at once, so a flood of logins queues here (each
# waiting one is cheap) instead of taking every core.
ARGON2_WORKERS = 2
_argon2 = ThreadPoolExecutor(
    ARGON2_WORKERS, thread_name_prefix="argon2", initializer=_lower_priority
)


class AccountError(ValueError):
    """A user cannot be created as asked; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


async def hash_password(password: str) -> str:
    """The argon2 hash of `password`, computed off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_argon2, _hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`, checked off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        _argon2, _verify, password_hash, password
    )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    """The active user with this username and password, else None (in the same time)."""
    user = await session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        await verify_password(_DUMMY_HASH, password)
        return None
    return user if await verify_password(user.password_hash, password) else None


async def issue_token(session: AsyncSession, user: User, ttl: float) -> IssuedToken:
    """A new bearer token for `user`; only its hash is stored. Expired tokens are swept."""
    now = utcnow()
    await session.execute(delete(ApiToken).where(ApiToken.expires_at <= now))
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl)
    session.add(ApiToken(token_hash=token_hash(token), user_id=user.id, expires_at=expires_at))
    await session.commit()
    return IssuedToken(token, expires_at)


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    """The active user a valid, unexpired token belongs to."""
    found = await signed_in(session, token)
    return None if found is None else found.user


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who a token signs in, and until when."""

    user: User
    expires_at: datetime


async def signed_in(session: AsyncSession, token: str) -> SignedIn | None:
    """The active user of a valid, unexpired token and the token's expiry."""
    row = (
        await session.execute(
            select(User, ApiToken.expires_at)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == token_hash(token), ApiToken.expires_at > utcnow())
        )
    ).one_or_none()
    if row is None or not row[0].active:
        return None
    return SignedIn(row[0], row[1])


# Bumped whenever tokens are revoked here, so that a long-lived holder of a
# token (an event socket) knows when to look it up again without asking the
# store every second. Revocations by another process are not counted: such
# holders also look their token up again every so often regardless.
_revocations = 0


def revocations() -> int:
    """How many revocations this process has made (a generation number)."""
    return _revocations


def _revoked() -> None:
    global _revocations
    _revocations += 1


async def revoke_token(session: AsyncSession, token: str) -> None:
    """Sign out: the token stops working at once (commits)."""
    await session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(token)))
    await session.commit()
    _revoked()


async def revoke_tokens(session: AsyncSession, user_ids: Iterable[int] | ScalarSelect[Any]) -> None:
    """Revoke every token of the users `user_ids` (ids, or a subquery of
    them): after a password or role change, or when the login goes. The
    caller commits; until then the tokens still work."""
    await session.execute(delete(ApiToken).where(ApiToken.user_id.in_(user_ids)))
    _revoked()


async def create_user(
    session: AsyncSession, username: str, password: str, role: Role = "operator"
) -> User:
    if not username or len(username) > 64:
        raise AccountError("username", "must be 1 to 64 characters")
    if len(password) < 8:
        raise AccountError("password", "must be at least 8 characters")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AccountError("username", "already exists")
    password_hash = await hash_password(password)
    user = User(username=username, password_hash=password_hash, role=role, active=True)
    session.add(user)
    await session.commit()
    return user


async def ensure_admin(session: AsyncSession, password: str | None) -> User | None:
    """On first start: create the user `admin` with `password` when no admin exists."""
    if password is None:
        return None
    if await session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
        return None
    return await create_user(session, "admin", password, role="admin")
