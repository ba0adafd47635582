"""`/api/v1/internal-lines`: the extensions employees' devices register to.
Admins write, admins and supervisors read. The SIP password is write-only."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ..crm.employees import reissue_line
from ..pbx.registrar import Location
from ..settings import normalized_digest_algorithms
from ..store import Employee, InternalLine
from .deps import Reader, SessionDep, SettingsDep, Writer
from .errors import FieldError, conflict, not_found_reference
from .fields import IdField, IdPath, Input, Limit, Offset

router = APIRouter(prefix="/internal-lines", tags=["internal lines"])


# SIP token characters (RFC 3261 §25.1) without `%` and "`", which would need
# escaping in a URI or a digest header.
USERNAME_PATTERN = r"^[A-Za-z0-9._~!*+'-]+$"

Number = Annotated[
    str, Field(pattern=r"^[0-9]{2,15}$", description="Digits only, 2 to 15 of them.")
]
MaxDevices = Annotated[int, Field(ge=1, le=20, description="Devices that may register at once.")]
RingTimeout = Annotated[int, Field(ge=5, le=600, description="Seconds before a call is missed.")]
MaxTalk = Annotated[int, Field(ge=0, le=86_400, description="Seconds of talk; 0 = no limit.")]
MaxIncoming = Annotated[int, Field(ge=1, le=50, description="Concurrent incoming calls.")]
Username = Annotated[
    str, Field(min_length=1, max_length=64, pattern=USERNAME_PATTERN, description="SIP username.")
]


def password_length(value: SecretStr) -> SecretStr:
    # Checked here rather than with min_length, whose message would tell the length.
    if not 8 <= len(value.get_secret_value()) <= 128:
        raise ValueError("must be 8 to 128 characters")
    return value


Password = Annotated[
    SecretStr,
    AfterValidator(password_length),
    Field(description="SIP password, 8 to 128 characters; write-only, never returned."),
]
Comment = Annotated[str, Field(max_length=2000)]
RecordingChoice = Annotated[
    bool | None,
    Field(
        description="Whether this line's calls are recorded: true, false, or null to "
        "follow CALLBRIDGE_RECORDING. A call any of its lines says false for is not "
        "recorded. Takes effect at the next apply."
    ),
]


DigestAlgorithms = Annotated[
    str,
    Field(
        max_length=64,
        description="Digest algorithms this line's phones are offered, one challenge each "
        "in this order: SHA-256 and/or MD5, comma separated (e.g. `MD5` for a desk phone "
        "that knows only MD5, `SHA-256` for a softphone that has it). Case and spaces do "
        "not matter; kept as `SHA-256,MD5`. null: CALLBRIDGE_SIP_DIGEST_ALGORITHMS. "
        "Takes effect at the next apply.",
    ),
    AfterValidator(normalized_digest_algorithms),
]


InbandDtmf = Annotated[
    bool,
    Field(
        description="Listen for DTMF tones in its phones' audio (G.711), for devices that "
        "send neither RFC 4733 events nor INFO. Off by default. Takes effect at the next apply.",
    ),
]


class InternalLineCreate(Input):
    model_config = ConfigDict(extra="forbid")

    number: Number
    employee_id: IdField | None = None
    max_devices: MaxDevices = 1
    ring_timeout: RingTimeout = 30
    max_talk_duration: MaxTalk = 0
    max_incoming_calls: MaxIncoming = 1
    username: Username
    password: Password
    digest_algorithms: DigestAlgorithms | None = None
    inband_dtmf: InbandDtmf = False
    recording: RecordingChoice = None
    comment: Comment = ""


class InternalLineUpdate(Input):
    """Only the fields sent change. Changing the username needs the password
    too: the stored digest values are derived from both."""

    model_config = ConfigDict(extra="forbid")

    number: Number | None = None
    employee_id: IdField | None = None
    max_devices: MaxDevices | None = None
    ring_timeout: RingTimeout | None = None
    max_talk_duration: MaxTalk | None = None
    max_incoming_calls: MaxIncoming | None = None
    username: Username | None = None
    password: Password | None = None
    # null puts the line back on the global setting.
    digest_algorithms: DigestAlgorithms | None = None
    inband_dtmf: InbandDtmf | None = None
    recording: RecordingChoice = None
    comment: Comment | None = None

    @field_validator(
        "number",
        "max_devices",
        "ring_timeout",
        "max_talk_duration",
        "max_incoming_calls",
        "username",
        "password",
        "inband_dtmf",
        "comment",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for fields the client sent: null is no way to change them.
        if value is None:
            raise ValueError("may not be null")
        return value


class InternalLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: str
    employee_id: int | None
    max_devices: int
    ring_timeout: int
    max_talk_duration: int
    max_incoming_calls: int
    username: str
    digest_algorithms: str | None = Field(
        description="Digest algorithms its phones are offered, in order; null: the "
        "global CALLBRIDGE_SIP_DIGEST_ALGORITHMS."
    )
    inband_dtmf: bool = Field(description="Whether DTMF tones in its phones' audio are digits.")
    recording: bool | None = Field(
        description="Whether its calls are recorded; null: CALLBRIDGE_RECORDING."
    )
    telephony_disabled: bool = Field(
        description="Its employee was deleted: the line neither registers, calls nor rings "
        "until a PATCH gives it another employee and a new password (then apply)."
    )
    comment: str
    created_at: datetime
    updated_at: datetime


class InternalLinePage(BaseModel):
    items: list[InternalLineOut]
    total: int


@router.get("")
async def list_lines(
    session: SessionDep,
    _user: Reader,
    limit: Limit = 50,
    offset: Offset = 0,
) -> InternalLinePage:
    total = await session.scalar(select(func.count()).select_from(InternalLine)) or 0
    rows = await session.scalars(
        select(InternalLine)
        .order_by(InternalLine.number, InternalLine.id)
        .limit(limit)
        .offset(offset)
    )
    return InternalLinePage(items=[InternalLineOut.model_validate(r) for r in rows], total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such internal line."},
    409: {"description": "The number or the username is taken; the field is named."},
    422: {"description": "A field is invalid or names an employee that does not exist."},
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_line(
    body: InternalLineCreate,
    session: SessionDep,
    settings: SettingsDep,
    _user: Writer,
) -> InternalLineOut:
    await _check_employee(session, body.employee_id)
    await _check_unique(session, number=body.number, username=body.username)
    line = InternalLine(
        number=body.number,
        employee_id=body.employee_id,
        max_devices=body.max_devices,
        ring_timeout=body.ring_timeout,
        max_talk_duration=body.max_talk_duration,
        max_incoming_calls=body.max_incoming_calls,
        username=body.username,
        digest_algorithms=body.digest_algorithms,
        inband_dtmf=body.inband_dtmf,
        recording=body.recording,
        comment=body.comment,
    )
    line.set_password(body.password.get_secret_value(), settings.sip_realm)
    session.add(line)
    await _commit(session, number=body.number, username=body.username)
    return InternalLineOut.model_validate(line)


@router.get("/{line_id}", responses=_RESPONSES)
async def read_line(line_id: IdPath, session: SessionDep, _user: Reader) -> InternalLineOut:
    return InternalLineOut.model_validate(await _get(session, line_id))


class RegistrationOut(BaseModel):
    contact: str
    expires_at: datetime
    expires_in: int
    source: str | None = Field(description="transport:host:port the device registered from")
    user_agent: str | None
    path: list[str] = Field(
        default_factory=list,
        description="The proxies the device registered through (RFC 3327 Path), nearest "
        "first: calls to it go through them.",
    )


class RegistrationList(BaseModel):
    items: list[RegistrationOut]
    total: int


@router.get("/{line_id}/registrations", responses=_RESPONSES)
async def list_registrations(
    line_id: IdPath, request: Request, session: SessionDep, _user: Reader
) -> RegistrationList:
    """The devices registered to the line now (none while SIP is not running)."""
    line = await _get(session, line_id)
    location: Location | None = getattr(request.app.state, "location", None)
    if location is None:
        return RegistrationList(items=[], total=0)
    clock: Callable[[], float] = getattr(request.app.state, "sip_clock", time.monotonic)
    now, wall = clock(), time.time()
    items = [
        RegistrationOut(
            contact=str(binding.contact),
            expires_at=datetime.fromtimestamp(wall + binding.expires_at - now, UTC),
            expires_in=binding.seconds_left(now),
            source=_flow_text(binding.source),
            user_agent=binding.user_agent,
            path=[str(entry) for entry in binding.path],
        )
        for binding in location.bindings(line.number, now)
    ]
    return RegistrationList(items=items, total=len(items))


def _flow_text(source: object) -> str | None:
    address = getattr(source, "address", None)
    return None if address is None else str(address)


@router.patch("/{line_id}", responses=_RESPONSES)
async def update_line(
    line_id: IdPath,
    body: InternalLineUpdate,
    session: SessionDep,
    settings: SettingsDep,
    _user: Writer,
) -> InternalLineOut:
    line = await _get(session, line_id)
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    if "username" in changes and changes["username"] != line.username and body.password is None:
        raise FieldError(422, "password", "required when the username changes", "missing")
    if "employee_id" in changes:
        await _check_employee(session, changes["employee_id"])
    await _check_unique(
        session, number=changes.get("number"), username=changes.get("username"), line_id=line.id
    )
    for name, value in changes.items():
        setattr(line, name, value)
    if body.password is not None:
        line.set_password(body.password.get_secret_value(), settings.sip_realm)
    await reissue_line(session, line, new_password=body.password is not None)
    await _commit(session, number=changes.get("number"), username=changes.get("username"))
    await session.refresh(line)
    return InternalLineOut.model_validate(line)


@router.delete("/{line_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_line(line_id: IdPath, session: SessionDep, _user: Writer) -> Response:
    await session.delete(await _get(session, line_id))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _get(session: SessionDep, line_id: int) -> InternalLine:
    line = await session.get(InternalLine, line_id)
    if line is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such internal line")
    return line


async def _check_employee(session: SessionDep, employee_id: int | None) -> None:
    if employee_id is None:
        return
    employee = await session.get(Employee, employee_id)
    if employee is None:
        raise not_found_reference("employee_id", f"no employee with id {employee_id}")
    if not employee.active:
        # A leaver's line would register and have its calls refused: as the
        # employees API says, a deleted employee gets no line again.
        raise conflict("employee_id", f"employee {employee_id} was deleted")


async def _check_unique(
    session: SessionDep,
    *,
    number: str | None,
    username: str | None,
    line_id: int | None = None,
) -> None:
    for field, column, value in (
        ("number", InternalLine.number, number),
        ("username", InternalLine.username, username),
    ):
        if value is None:
            continue
        query = select(InternalLine.id).where(column == value)
        if line_id is not None:
            query = query.where(InternalLine.id != line_id)
        if await session.scalar(query) is not None:
            raise conflict(field, f"{field} {value} is already used by another internal line")


async def _commit(session: SessionDep, *, number: str | None, username: str | None) -> None:
    """Commit; a unique violation that slipped past the check (a concurrent
    write) is still a 409 naming the field."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        taken = await session.scalar(
            select(InternalLine).where(
                or_(InternalLine.number == number, InternalLine.username == username)
            )
        )
        if taken is None:
            raise
        field = "number" if taken.number == number else "username"
        raise conflict(field, f"{field} is already used by another internal line") from None
