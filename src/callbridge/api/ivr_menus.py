"""`/api/v1/ivr-menus`: the voice menus routing rules (action `ivr`) send
incoming calls to. Admins write, admins and supervisors read; every change
is staged until `config/apply`, like the lines and rules. A menu's
greeting is text espeak-ng speaks, or a WAV or MP3 uploaded at
`/ivr-menus/{id}/greeting`. What a menu does with a call, and the
destinations' shapes, are in `callbridge.pbx.ivr`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import func, select

from ..media.audio_files import AudioError, wav_bytes
from ..media.greetings import MAX_SECONDS
from ..pbx.ivr import (
    DEFAULT_REPEATS,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_GREETING_TEXT,
    REPEATS,
    TIMEOUT_SECONDS,
    DestinationType,
    GreetingKind,
    destination_problem,
    menu_of,
    menus_pointing_at,
)
from ..store import InternalLine
from ..store.models import IvrMenu, RoutingRule
from .audio_uploads import UPLOAD_RESPONSES, read_audio, stored_or_refused, upload_body
from .deps import GreetingsDep, Reader, SessionDep, Writer
from .external_lines import invalid, not_null
from .fields import IdPath, Input, Limit, Offset

router = APIRouter(prefix="/ivr-menus", tags=["IVR menus"])
GREETING_PATH = "/ivr-menus/{menu_id}/greeting"

Digit = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(?:.*\S)?$")]
GreetingText = Annotated[str, Field(max_length=MAX_GREETING_TEXT)]
Timeout = Annotated[int, Field(ge=TIMEOUT_SECONDS[0], le=TIMEOUT_SECONDS[1])]
Repeats = Annotated[int, Field(ge=REPEATS[0], le=REPEATS[1])]


class Destination(Input):
    """`{"type": "internal_line", "target": "101"}`, `{"type": "number",
    "target": "+74951234567"}` (dialled out through the outgoing rules),
    `{"type": "menu", "target": 2}`, `{"type": "repeat"}` or `{"type": "hangup"}`."""

    model_config = ConfigDict(extra="forbid")

    type: DestinationType
    target: str | int | None = Field(default=None, validate_default=True)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | int | None, info: ValidationInfo) -> str | int | None:
        kind = info.data.get("type")
        if kind is None:  # the type is wrong, and named already
            return value
        if kind == "menu" and isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        elif kind in ("internal_line", "number") and type(value) is int:
            value = str(value)
        problem = destination_problem({"type": kind, "target": value})
        if problem is not None:
            raise ValueError(problem[1])
        return value


Options = Annotated[
    dict[Digit, Destination],
    Field(description="By digit (0-9, * and #): where the call goes."),
]


class IvrMenuCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: Name
    greeting_kind: GreetingKind = Field(
        description="`text` (greeting_text, spoken by espeak-ng) or `audio` (the file "
        "uploaded at /ivr-menus/{id}/greeting)."
    )
    greeting_text: GreetingText | None = None
    timeout_seconds: Timeout = DEFAULT_TIMEOUT_SECONDS
    repeats: Repeats = Field(
        DEFAULT_REPEATS, description="How often the greeting plays again when no digit comes."
    )
    dial_by_extension: bool = Field(
        False, description="Digits that make an internal line's number ring that line."
    )
    options: Options = Field(default_factory=dict)
    on_timeout: Destination = Field(
        default_factory=lambda: Destination(type="hangup"),
        description="Where the call goes when no digit came after the last repeat.",
    )
    on_invalid: Destination = Field(
        default_factory=lambda: Destination(type="repeat"),
        description="Where a digit that is no option (nor a line) sends the call.",
    )


class IvrMenuUpdate(Input):
    """Only the fields sent change; `options` is replaced whole."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    greeting_kind: GreetingKind | None = None
    greeting_text: GreetingText | None = None
    timeout_seconds: Timeout | None = None
    repeats: Repeats | None = None
    dial_by_extension: bool | None = None
    options: Options | None = None
    on_timeout: Destination | None = None
    on_invalid: Destination | None = None

    _not_null = field_validator(
        "name",
        "greeting_kind",
        "timeout_seconds",
        "repeats",
        "dial_by_extension",
        "options",
        "on_timeout",
        "on_invalid",
    )(not_null)


class DestinationOut(BaseModel):
    type: DestinationType
    target: str | int | None = None


class IvrMenuOut(BaseModel):
    id: int
    name: str
    greeting_kind: GreetingKind
    greeting_text: str | None
    greeting_file: str | None = Field(
        description="The uploaded greeting's id (read-only; set by PUT .../greeting)."
    )
    timeout_seconds: int
    repeats: int
    dial_by_extension: bool
    options: dict[str, DestinationOut]
    on_timeout: DestinationOut
    on_invalid: DestinationOut
    created_at: datetime
    updated_at: datetime


class IvrMenuPage(BaseModel):
    items: list[IvrMenuOut]
    total: int


def _out(menu: IvrMenu) -> IvrMenuOut:
    return IvrMenuOut.model_validate(menu, from_attributes=True)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such IVR menu."},
    409: {"description": "A routing rule or another menu points at the menu; each is named."},
    422: {
        "description": "A field is invalid, or names an internal line or menu that does not "
        "exist; it is named (`options.1.target`)."
    },
}


@router.get("")
async def list_menus(
    session: SessionDep, _user: Reader, limit: Limit = 50, offset: Offset = 0
) -> IvrMenuPage:
    """By id."""
    total = await session.scalar(select(func.count()).select_from(IvrMenu)) or 0
    rows = await session.scalars(select(IvrMenu).order_by(IvrMenu.id).limit(limit).offset(offset))
    return IvrMenuPage(items=[_out(m) for m in rows], total=total)


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_menu(body: IvrMenuCreate, session: SessionDep, _user: Writer) -> IvrMenuOut:
    _check_greeting(body.greeting_kind, body.greeting_text)
    await _check_references(session, body.model_dump(), None)
    menu = IvrMenu(**body.model_dump(), greeting_file=None)
    session.add(menu)
    await session.commit()
    return _out(menu)


@router.get("/{menu_id}", responses=_RESPONSES)
async def read_menu(menu_id: IdPath, session: SessionDep, _user: Reader) -> IvrMenuOut:
    return _out(await _get(session, menu_id))


@router.patch("/{menu_id}", responses=_RESPONSES)
async def update_menu(
    menu_id: IdPath, body: IvrMenuUpdate, session: SessionDep, _user: Writer
) -> IvrMenuOut:
    menu = await _get(session, menu_id)
    changes = body.model_dump(exclude_unset=True)
    _check_greeting(
        changes.get("greeting_kind", menu.greeting_kind),
        changes.get("greeting_text", menu.greeting_text),
    )
    await _check_references(session, changes, menu_id)
    for name, value in changes.items():
        setattr(menu, name, value)
    await session.commit()
    await session.refresh(menu)
    return _out(menu)


@router.delete("/{menu_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_menu(menu_id: IdPath, session: SessionDep, _user: Writer) -> Response:
    menu = await _get(session, menu_id)
    pointing = await _pointing_at(session, menu_id)
    if pointing:
        raise HTTPException(status.HTTP_409_CONFLICT, pointing)
    await session.delete(menu)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/{menu_id}/greeting",
    openapi_extra=upload_body(MAX_SECONDS),
    responses={404: {"description": "No such IVR menu."}, **UPLOAD_RESPONSES},
)
async def upload_greeting(
    menu_id: IdPath, request: Request, session: SessionDep, _user: Writer, greetings: GreetingsDep
) -> IvrMenuOut:
    """Make a WAV or MP3 the menu's greeting (staged: calls hear it after
    the next apply, if the menu's `greeting_kind` is `audio`). It is
    converted to 8 kHz mono and kept under the data directory."""
    menu = await _get(session, menu_id)
    data, content_type = await read_audio(request)
    with stored_or_refused():
        name, _seconds = await greetings.store(data, content_type)
    menu.greeting_file = name
    await session.commit()
    await session.refresh(menu)
    return _out(menu)


@router.get(
    "/{menu_id}/greeting",
    response_class=Response,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "8 kHz mono 16-bit WAV."},
        404: {"description": "No such menu, or it has no greeting yet."},
        422: {"description": "Its text cannot be spoken here (see `msg`)."},
    },
)
async def download_greeting(
    menu_id: IdPath, session: SessionDep, _user: Reader, greetings: GreetingsDep
) -> Response:
    """The greeting as callers will hear it (the staged one): the uploaded
    file for `audio`, the text spoken for `text`."""
    menu = await _get(session, menu_id)
    if menu.greeting_kind == "audio" and menu.greeting_file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the menu has no greeting uploaded")
    try:
        samples = await greetings.greeting_samples(menu_of(_row(menu)))
    except AudioError as error:
        if menu.greeting_kind == "audio":
            raise HTTPException(status.HTTP_404_NOT_FOUND, error.problem) from None
        invalid(("greeting_text",), error.problem)
    return Response(wav_bytes(samples), media_type="audio/wav")


@router.delete("/{menu_id}/greeting", responses={404: {"description": "No such IVR menu."}})
async def remove_greeting(menu_id: IdPath, session: SessionDep, _user: Writer) -> IvrMenuOut:
    """Forget the uploaded greeting (staged). The file stays on disk for
    the versions that play it."""
    menu = await _get(session, menu_id)
    menu.greeting_file = None
    await session.commit()
    await session.refresh(menu)
    return _out(menu)


async def _get(session: SessionDep, menu_id: int) -> IvrMenu:
    menu = await session.get(IvrMenu, menu_id)
    if menu is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such IVR menu")
    return menu


def _row(menu: IvrMenu) -> dict[str, Any]:
    return {column.key: getattr(menu, column.key) for column in IvrMenu.__table__.columns}


def _check_greeting(kind: str, text: str | None) -> None:
    if kind == "text" and not (text or "").strip():
        invalid(("greeting_text",), "a text greeting needs the text to speak")


async def _check_references(
    session: SessionDep, fields: dict[str, Any], menu_id: int | None
) -> None:
    """422 naming the first destination whose internal line or menu is not staged."""
    named: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("options", digit), destination)
        for digit, destination in (fields.get("options") or {}).items()
    ]
    named += [((key,), fields[key]) for key in ("on_timeout", "on_invalid") if fields.get(key)]
    for loc, destination in named:
        kind, target = destination["type"], destination.get("target")
        if kind == "internal_line":
            found = await session.scalar(
                select(InternalLine.id).where(InternalLine.number == target)
            )
            if found is None:
                invalid((*loc, "target"), f"no internal line {target}", "not_found")
        elif kind == "menu" and target != menu_id and await session.get(IvrMenu, target) is None:
            invalid((*loc, "target"), f"no IVR menu with id {target}", "not_found")


async def _pointing_at(session: SessionDep, menu_id: int) -> list[dict[str, Any]]:
    """What points at the menu, in the validation shape: each routing rule
    and other menu, by id and field."""
    rules = await session.scalars(
        select(RoutingRule)
        .where(RoutingRule.action_type == "ivr", RoutingRule.action_target == str(menu_id))
        .order_by(RoutingRule.id)
    )
    found = [
        {
            "loc": ["routing_rules", rule.id, "action", "target"],
            "msg": f"routing rule {rule.id} ({rule.name}) sends calls to this menu",
            "type": "conflict",
        }
        for rule in rules
    ]
    menus = (await session.scalars(select(IvrMenu).order_by(IvrMenu.id))).all()
    found += [
        {
            "loc": ["ivr_menus", other_id],
            "msg": f"IVR menu {other_id} ({name}) sends calls to this menu",
            "type": "conflict",
        }
        for other_id, name in menus_pointing_at(menu_id, [_row(m) for m in menus])
    ]
    return found
