"""Dependencies every route shares: the settings, a database session, the
signed-in user with the role a route asks for, the music on hold and the
IVR greetings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from ..media.greetings import Greetings
from ..media.music import MusicOnHold
from ..settings import Settings
from ..store import Database, User
from ..store.accounts import user_for_token
from ..store.models import Role

bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/login.")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    async with database.session() as session:
        yield session


def get_music(request: Request) -> MusicOnHold:
    music: MusicOnHold = request.app.state.music
    return music


def get_greetings(request: Request) -> Greetings:
    greetings: Greetings = request.app.state.greetings
    return greetings


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MusicDep = Annotated[MusicOnHold, Depends(get_music)]
GreetingsDep = Annotated[Greetings, Depends(get_greetings)]


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing, invalid or expired token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def presented_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The bearer token of the request (401 without one)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    return credentials.credentials


TokenDep = Annotated[str, Depends(presented_token)]


async def current_user(session: SessionDep, token: TokenDep) -> User:
    user = await user_for_token(session, token)
    if user is None:
        raise unauthorized()
    return user


def require_role(*roles: Role) -> Callable[..., Coroutine[Any, Any, User]]:
    """A dependency that lets through a signed-in user with one of `roles` (else 403)."""

    async def check(user: Annotated[User, Depends(current_user)]) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not do this")
        return user

    return check


# Who may read and who may change the configuration (lines, rules, versions).
Reader = Annotated[User, Depends(require_role("admin", "supervisor"))]
Writer = Annotated[User, Depends(require_role("admin"))]
# Everyone signed in: what each may see is then narrowed per resource.
STAFF_ROLES: tuple[Role, ...] = ("admin", "supervisor", "operator")
Staff = Annotated[User, Depends(require_role(*STAFF_ROLES))]
