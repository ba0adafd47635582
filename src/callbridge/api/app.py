"""The FastAPI application: routers, error shapes and the body size limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError

from .. import __version__
from ..events import EventBus
from ..media.greetings import Greetings
from ..media.music import MusicOnHold
from ..pbx.browser_credentials import BrowserCredentials
from ..pbx.dtmf import SendDigits
from ..pbx.guard import FloodGuard
from ..pbx.originate import Originator
from ..pbx.registrar import Location
from ..settings import Settings
from ..store import Database
from ..store.models import ConfigVersion
from ..transport import WsTransport
from . import (
    auth,
    calls,
    cards,
    click_to_call,
    config,
    dtmf,
    employees,
    events,
    external_lines,
    hang_up,
    hold,
    internal_lines,
    ivr_menus,
    me,
    music_on_hold,
    normalization_rules,
    notes,
    recordings,
    routing_rules,
    security,
    setup,
    sip_websocket,
)
from .errors import FieldError, field_error_handler, validation_error_handler
from .hang_up import EndCall
from .hold import HoldCall
from .limits import MAX_BODY_SIZE, BodySizeLimit
from .recording_links import RecordingLinks
from .setup import SetupToken
from .web import DEFAULT_DIST, mount_web


def create_app(
    settings: Settings,
    database: Database,
    *,
    on_apply: Callable[[ConfigVersion], Awaitable[None]] | None = None,
    guard: FloodGuard | None = None,
    location: Location | None = None,
    sip_clock: Callable[[], float] | None = None,
    registration_state: Callable[[int], Mapping[str, str | None]] | None = None,
    originator: Originator | None = None,
    event_bus: EventBus | None = None,
    on_employees_changed: Callable[[], Awaitable[None]] | None = None,
    hold_call: HoldCall | None = None,
    end_call: EndCall | None = None,
    send_digits: SendDigits | None = None,
    music: MusicOnHold | None = None,
    greetings: Greetings | None = None,
    setup_token: SetupToken | None = None,
    sip_ws: WsTransport | None = None,
    browser_credentials: BrowserCredentials | None = None,
    sip_domain: str | None = None,
) -> FastAPI:
    """The API over `database` (migrated by the caller). Edits to lines and
    rules are staged; `on_apply(version)` is awaited when a version is
    applied (`/config/apply`, or a rollback) and runs it. `guard`
    (shown under /security) and `location` (each line's registrations) are
    the SIP side's, and `sip_clock` is the monotonic clock they count in.
    `registration_state(external_line_id)` gives `{"state": "registered" |
    "registering" | "failed" | "unregistered", "reason": str | None}` for each external line
    (unregistered for all without it). `originator` places click-to-call
    calls (without it, `POST /calls` answers 503). `event_bus` carries the
    call events `/ws/events` streams (a bus of its own without one).
    `on_employees_changed()` is awaited after every change to an employee,
    so the SIP side sees a telephony switch at once, without an apply.
    `hold_call(call_id, employee_id, on)` holds or resumes a call in
    progress (`POST /calls/{id}/hold`, `/resume`; without it, 503).
    `end_call(call_id, employee_id)` hangs one up (`POST /calls/{id}/hangup`).
    `send_digits(call_id, employee_id, digits)` plays DTMF into a call
    (`POST /calls/{id}/dtmf`; without it, 503).
    `music` is the music on hold the SIP side plays (without it, the one
    stored under the data directory, read now). `greetings` are the IVR
    menus' (without it, those under the data directory).
    `sip_ws` is the SIP side's WebSocket transport: `/ws/sip` hands
    it every socket (refused without it). `browser_credentials` issues the
    softphone's SIP credential for `POST /me/sip-credentials` (503 without
    it), whose URI names `sip_domain`.
    `setup_token` lets the first admin be created (`POST /setup`): given
    on a start that found no admin. The built panel (`settings.web_dir`)
    is served at `/`."""
    app = FastAPI(
        title="callbridge",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.recordings_dir = settings.effective_recordings_dir()
    app.state.recording_links = RecordingLinks()
    if on_apply is not None:
        app.state.apply_config = on_apply
    app.state.guard = guard
    app.state.location = location
    app.state.originator = originator
    app.state.hold_call = hold_call
    app.state.end_call = end_call
    app.state.sip_ws = sip_ws
    app.state.browser_credentials = browser_credentials
    app.state.sip_domain = sip_domain
    app.state.send_digits = send_digits
    if sip_clock is not None:
        app.state.sip_clock = sip_clock
    if registration_state is not None:
        app.state.registration_state = registration_state
    app.state.events = event_bus if event_bus is not None else EventBus()
    app.state.on_employees_changed = on_employees_changed
    app.state.music = music if music is not None else MusicOnHold.load(settings.data_dir)
    app.state.greetings = (
        greetings
        if greetings is not None
        else Greetings(settings.data_dir, voice=settings.ivr_voice)
    )
    app.state.setup_token = setup_token
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(FieldError, field_error_handler)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=MAX_BODY_SIZE,
        # An audio file is larger: the route bounds it, after the role check.
        own_limits=[
            ("PUT", f"/api/v1{music_on_hold.PATH}"),
            ("PUT", f"/api/v1{ivr_menus.GREETING_PATH}"),
        ],
    )
    v1 = APIRouter(prefix="/api/v1")
    v1.include_router(auth.router)
    v1.include_router(setup.router)
    v1.include_router(internal_lines.router)
    v1.include_router(external_lines.router)
    v1.include_router(ivr_menus.router)
    v1.include_router(routing_rules.router)
    v1.include_router(normalization_rules.router)
    v1.include_router(config.router)
    v1.include_router(calls.router)
    v1.include_router(recordings.router)
    v1.include_router(click_to_call.router)
    v1.include_router(hold.router)
    v1.include_router(hang_up.router)
    v1.include_router(dtmf.router)
    v1.include_router(employees.router)
    v1.include_router(cards.contacts.router)
    v1.include_router(cards.accounts.router)
    v1.include_router(cards.leads.router)
    v1.include_router(notes.router)
    v1.include_router(security.router)
    v1.include_router(music_on_hold.router)
    v1.include_router(me.router)
    app.include_router(v1)
    app.include_router(events.router)
    app.include_router(sip_websocket.router)
    # Last: its catch-all route answers only what no route above took.
    mount_web(app, settings.web_dir or DEFAULT_DIST)
    return app
