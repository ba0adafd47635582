"""The FastAPI application: routers, error shapes and the body size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError

from .. import __version__
from ..pbx.guard import FloodGuard
from ..pbx.registrar import Location
from ..settings import Settings
from ..store import Database
from . import auth, calls, internal_lines, security
from .errors import FieldError, field_error_handler, validation_error_handler
from .limits import MAX_BODY_SIZE, BodySizeLimit


def create_app(
    settings: Settings,
    database: Database,
    *,
    on_lines_changed: Callable[[], Awaitable[None]] | None = None,
    guard: FloodGuard | None = None,
    location: Location | None = None,
    sip_clock: Callable[[], float] | None = None,
) -> FastAPI:
    """The API over `database` (migrated by the caller); `on_lines_changed`
    is awaited after every write to internal lines. `guard` (shown under
    /security) and `location` (each line's registrations) are the SIP side's,
    and `sip_clock` is the monotonic clock they count in."""
    app = FastAPI(
        title="callbridge",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    if on_lines_changed is not None:
        app.state.lines_changed = on_lines_changed
    app.state.guard = guard
    app.state.location = location
    if sip_clock is not None:
        app.state.sip_clock = sip_clock
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(FieldError, field_error_handler)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_SIZE)
    v1 = APIRouter(prefix="/api/v1")
    v1.include_router(auth.router)
    v1.include_router(internal_lines.router)
    v1.include_router(calls.router)
    v1.include_router(security.router)
    app.include_router(v1)
    return app
