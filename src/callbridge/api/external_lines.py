"""`/api/v1/external-lines`: SIP trunks at providers. Admins write, admins and
supervisors read. The password is write-only: it is kept as given (callbridge
answers the provider's digest challenges with it) and no answer contains it.

Also what the routers of the configuration share: the hook awaited after
every write (`ConfigChanged`) and the 422 for a field inside an object.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, NoReturn

import phonenumbers
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from ..store.models import DEFAULT_REGION, ExternalLine, NormalizationRule, RoutingRule
from .deps import Reader, SessionDep, Writer
from .errors import conflict
from .fields import IdPath, Input, Limit, Offset

router = APIRouter(prefix="/external-lines", tags=["external lines"])


RegistrationStateName = Literal["registered", "registering", "failed", "unregistered"]
RegistrationStateHook = Callable[[int], Mapping[str, str | None]]


def _unregistered(_line_id: int) -> Mapping[str, str | None]:
    return {"state": "unregistered", "reason": None}


def get_registration_state(request: Request) -> RegistrationStateHook:
    """Each line's registration state, from the SIP side (unregistered without it)."""
    hook: RegistrationStateHook = getattr(request.app.state, "registration_state", _unregistered)
    return hook


RegistrationState = Annotated[RegistrationStateHook, Depends(get_registration_state)]


def invalid(loc: tuple[str, ...], problem: str, kind: str = "value_error") -> NoReturn:
    """Answer 422 naming `loc` under the body, in FastAPI's validation shape
    (for a field inside an object, which `FieldError` cannot name)."""
    raise RequestValidationError([{"loc": ("body", *loc), "msg": problem, "type": kind}])


def not_null(value: Any) -> Any:
    # A field validator of update bodies: it runs only for fields the client
    # sent, and null is no way to change a field that cannot be empty.
    if value is None:
        raise ValueError("may not be null")
    return value


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")


def _server(value: str) -> str:
    """host[:port]: a host name, an IPv4 address or an IPv6 one in brackets."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise ValueError("unclosed [: expected [IPv6 address] or [IPv6 address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("not an IPv6 address inside [ ]") from None
        if rest and not rest.startswith(":"):
            raise ValueError("expected [IPv6 address] or [IPv6 address]:port")
        has_port, port = bool(rest), rest[1:]
    else:
        if value.count(":") > 1:
            raise ValueError("put an IPv6 address in brackets: [2001:db8::1]:5060")
        host, colon, port = value.partition(":")
        has_port = bool(colon)
        if len(host) > 253 or not _HOSTNAME.fullmatch(host):
            raise ValueError("expected host[:port], the host a name or an IP address")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host} is not an IPv4 address") from None
    if has_port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("the port must be a number from 1 to 65535")
    return value


def _address(value: str) -> str:
    """An IP address or a CIDR network, written the canonical way."""
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value))
        return str(ipaddress.ip_address(value))
    except ValueError as error:
        if "has host bits set" in str(error):
            raise ValueError(f"{value} has host bits set: write the network address") from None
        raise ValueError("expected an IP address or a network such as 203.0.113.0/24") from None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _region(value: str) -> str:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value} is not a country code known to the number library")
    return value


def _password_length(value: SecretStr) -> SecretStr:
    # Not max_length: its message would tell the length.
    if len(value.get_secret_value()) > 128:
        raise ValueError("must be at most 128 characters")
    return value


Code = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^\S(?:.*\S)?$", description="The line's name."),
]
Server = Annotated[
    str,
    Field(min_length=1, max_length=255, description="host[:port]; IPv6 as [addr]:port."),
    AfterValidator(_server),
]
# SIP token characters (RFC 3261 §25.1) without `%` and "`", as for internal lines.
SipUser = Annotated[
    str,
    Field(
        max_length=64,
        pattern=r"^[A-Za-z0-9._~!*+'-]*$",
        description="The user part callbridge presents to the provider; empty: the login.",
    ),
]
# A digest username is a quoted string: no quotes, backslashes or control characters.
Login = Annotated[
    str,
    Field(max_length=128, pattern=r'^[^\x00-\x1f\x7f"\\]*$', description="Digest username."),
]
Password = Annotated[
    SecretStr,
    AfterValidator(_password_length),
    Field(description="Digest password, up to 128 characters; write-only, never returned."),
]
TotalLines = Annotated[int, Field(ge=1, le=10_000, description="Simultaneous calls in all.")]
OutgoingLines = Annotated[
    int, Field(ge=0, le=10_000, description="Simultaneous outgoing calls; ≤ total_lines.")
]
TransportName = Annotated[
    Literal["udp", "tcp"],
    Field(description="How the provider is reached, and the only way its calls are taken."),
]
InbandDtmf = Annotated[
    bool,
    Field(
        description="Listen for DTMF tones in the provider's audio (G.711), for old gateways "
        "that send neither RFC 4733 events nor INFO. Off by default."
    ),
]
IncomingAuth = Annotated[
    bool,
    Field(
        description="Challenge the provider's INVITEs (407) and check them with login and "
        "password; for a provider that answers digest challenges."
    ),
]
AltAddresses = Annotated[
    list[Annotated[str, Field(max_length=64), AfterValidator(_address)]],
    Field(
        max_length=100,
        description="IP addresses or CIDR networks the provider may also send from.",
    ),
    AfterValidator(_unique),
]
Region = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country (UA, US, ...) national numbers are read in.",
    ),
    AfterValidator(_region),
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


class ExternalLineCreate(Input):
    """`outgoing_lines` left out is `total_lines`. With `register`, callbridge
    registers to the server with `login` and `password`, so both are needed;
    with `incoming_auth`, it checks the provider's calls with them."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    active: bool = True
    server: Server
    username: SipUser = ""
    register_: bool = Field(False, alias="register", description="Register to the server.")
    login: Login = ""
    password: Password | None = None
    total_lines: TotalLines = 1
    outgoing_lines: OutgoingLines | None = None
    transport: TransportName = "udp"
    incoming_auth: IncomingAuth = False
    inband_dtmf: InbandDtmf = False
    alt_addresses: AltAddresses = Field(default_factory=list)
    default_region: Region = DEFAULT_REGION
    recording: RecordingChoice = None
    comment: Comment = ""


class ExternalLineUpdate(Input):
    """Only the fields sent change; `"password": ""` clears the password."""

    model_config = ConfigDict(extra="forbid")

    code: Code | None = None
    active: bool | None = None
    server: Server | None = None
    username: SipUser | None = None
    register_: bool | None = Field(None, alias="register")
    login: Login | None = None
    password: Password | None = None
    total_lines: TotalLines | None = None
    outgoing_lines: OutgoingLines | None = None
    transport: TransportName | None = None
    incoming_auth: IncomingAuth | None = None
    inband_dtmf: InbandDtmf | None = None
    alt_addresses: AltAddresses | None = None
    default_region: Region | None = None
    recording: RecordingChoice = None
    comment: Comment | None = None

    _not_null = field_validator(
        "code",
        "active",
        "server",
        "username",
        "register_",
        "login",
        "password",
        "total_lines",
        "outgoing_lines",
        "transport",
        "incoming_auth",
        "inband_dtmf",
        "alt_addresses",
        "default_region",
        "comment",
    )(not_null)


class ExternalLineOut(BaseModel):
    id: int
    code: str
    active: bool
    server: str
    username: str
    register_: bool = Field(alias="register")
    login: str
    password_set: bool = Field(description="Whether a password is stored (never returned).")
    total_lines: int
    outgoing_lines: int
    transport: TransportName
    incoming_auth: bool
    inband_dtmf: bool
    alt_addresses: list[str]
    default_region: str
    recording: bool | None
    comment: str
    registration_state: RegistrationStateName = Field(
        description="registered, registering (waiting for the provider), "
        "failed (see registration_reason) or unregistered."
    )
    registration_reason: str | None = Field(
        description="Why the last registration failed, when it did."
    )
    created_at: datetime
    updated_at: datetime


class ExternalLinePage(BaseModel):
    items: list[ExternalLineOut]
    total: int


def _out(line: ExternalLine, registration: RegistrationStateHook) -> ExternalLineOut:
    state = registration(line.id)
    return ExternalLineOut(
        id=line.id,
        code=line.code,
        active=line.active,
        server=line.server,
        username=line.username,
        register=line.register,
        login=line.login,
        password_set=bool(line.password),
        total_lines=line.total_lines,
        outgoing_lines=line.outgoing_lines,
        transport=line.transport,
        incoming_auth=line.incoming_auth,
        inband_dtmf=line.inband_dtmf,
        alt_addresses=list(line.alt_addresses),
        default_region=line.default_region,
        recording=line.recording,
        comment=line.comment,
        registration_state=state.get("state") or "unregistered",
        registration_reason=state.get("reason"),
        created_at=line.created_at,
        updated_at=line.updated_at,
    )


@router.get("")
async def list_lines(
    session: SessionDep,
    _user: Reader,
    registration: RegistrationState,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ExternalLinePage:
    total = await session.scalar(select(func.count()).select_from(ExternalLine)) or 0
    rows = await session.scalars(
        select(ExternalLine)
        .order_by(ExternalLine.code, ExternalLine.id)
        .limit(limit)
        .offset(offset)
    )
    return ExternalLinePage(items=[_out(r, registration) for r in rows], total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such external line."},
    409: {
        "description": "The code is taken (the field is named), or on delete: rules "
        "refer to the line (they are named)."
    },
    422: {"description": "A field is invalid; it is named."},
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_line(
    body: ExternalLineCreate,
    session: SessionDep,
    _user: Writer,
    registration: RegistrationState,
) -> ExternalLineOut:
    password = "" if body.password is None else body.password.get_secret_value()
    outgoing = body.total_lines if body.outgoing_lines is None else body.outgoing_lines
    _check_consistent(
        total_lines=body.total_lines,
        outgoing_lines=outgoing,
        register=body.register_,
        incoming_auth=body.incoming_auth,
        login=body.login,
        password=password,
    )
    await _check_code(session, body.code)
    line = ExternalLine(
        code=body.code,
        active=body.active,
        server=body.server,
        username=body.username,
        register=body.register_,
        login=body.login,
        password=password,
        total_lines=body.total_lines,
        outgoing_lines=outgoing,
        transport=body.transport,
        incoming_auth=body.incoming_auth,
        inband_dtmf=body.inband_dtmf,
        alt_addresses=body.alt_addresses,
        default_region=body.default_region,
        recording=body.recording,
        comment=body.comment,
    )
    session.add(line)
    await _commit(session, body.code)
    return _out(line, registration)


@router.get("/{line_id}", responses=_RESPONSES)
async def read_line(
    line_id: IdPath, session: SessionDep, _user: Reader, registration: RegistrationState
) -> ExternalLineOut:
    return _out(await get_line(session, line_id), registration)


@router.patch("/{line_id}", responses=_RESPONSES)
async def update_line(
    line_id: IdPath,
    body: ExternalLineUpdate,
    session: SessionDep,
    _user: Writer,
    registration: RegistrationState,
) -> ExternalLineOut:
    line = await get_line(session, line_id)
    changes = body.model_dump(exclude_unset=True, exclude={"password"}, by_alias=True)
    password = line.password if body.password is None else body.password.get_secret_value()
    _check_consistent(
        total_lines=changes.get("total_lines", line.total_lines),
        outgoing_lines=changes.get("outgoing_lines", line.outgoing_lines),
        register=changes.get("register", line.register),
        incoming_auth=changes.get("incoming_auth", line.incoming_auth),
        login=changes.get("login", line.login),
        password=password,
    )
    if "code" in changes:
        await _check_code(session, changes["code"], line_id=line.id)
    for name, value in changes.items():
        setattr(line, name, value)
    line.password = password
    await _commit(session, changes.get("code"))
    await session.refresh(line)
    return _out(line, registration)


@router.delete("/{line_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_line(line_id: IdPath, session: SessionDep, _user: Writer) -> Response:
    line = await get_line(session, line_id)
    users = await _users_of(session, line.id)
    if users:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"external line {line.id} ({line.code}) is used by {users}: "
            "change or delete them first",
        )
    await session.delete(line)
    try:
        await session.commit()
    except IntegrityError:
        # A rule that came to refer to the line meanwhile (ON DELETE RESTRICT).
        await session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"external line {line_id} is used by {await _users_of(session, line_id)}: "
            "change or delete them first",
        ) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def get_line(session: SessionDep, line_id: int) -> ExternalLine:
    line = await session.get(ExternalLine, line_id)
    if line is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such external line")
    return line


def _check_consistent(
    *,
    total_lines: int,
    outgoing_lines: int,
    register: bool,
    incoming_auth: bool,
    login: str,
    password: str,
) -> None:
    """The rules between fields, on the line as it would be stored."""
    if outgoing_lines > total_lines:
        invalid(
            ("outgoing_lines",),
            f"must be at most total_lines ({total_lines})",
            "less_than_equal",
        )
    if register and not login:
        invalid(("login",), "required when the line registers", "missing")
    if register and not password:
        invalid(("password",), "required when the line registers", "missing")
    if incoming_auth and not login:
        invalid(("login",), "required to check the provider's calls", "missing")
    if incoming_auth and not password:
        invalid(("password",), "required to check the provider's calls", "missing")


async def _users_of(session: SessionDep, line_id: int) -> str:
    """The rules that refer to the line, named ("" for none)."""
    routing = list(
        await session.execute(
            select(RoutingRule.id, RoutingRule.name)
            .where(
                or_(
                    RoutingRule.external_line_id == line_id,
                    (RoutingRule.action_type == "external_line")
                    & (RoutingRule.action_target == str(line_id)),
                )
            )
            .order_by(RoutingRule.id)
        )
    )
    normalization = list(
        await session.execute(
            select(NormalizationRule.id, NormalizationRule.name)
            .where(NormalizationRule.external_line_id == line_id)
            .order_by(NormalizationRule.id)
        )
    )
    parts = []
    for kind, rows in (("routing rule", routing), ("normalization rule", normalization)):
        if rows:
            named = ", ".join(f"{rule_id} ({name!r})" for rule_id, name in rows)
            parts.append(f"{kind}{'s' if len(rows) > 1 else ''} {named}")
    return " and ".join(parts)


async def _check_code(session: SessionDep, code: str, line_id: int | None = None) -> None:
    query = select(ExternalLine.id).where(ExternalLine.code == code)
    if line_id is not None:
        query = query.where(ExternalLine.id != line_id)
    if await session.scalar(query) is not None:
        raise conflict("code", f"code {code} is already used by another external line")


async def _commit(session: SessionDep, code: str | None) -> None:
    """Commit; a taken code that slipped past the check (a concurrent write)
    is still a 409 naming it. Any other refusal is a 409 too, and the
    database's error is not passed on: its text carries the statement's
    parameters, the password among them."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if (
            code is not None
            and await session.scalar(select(ExternalLine.id).where(ExternalLine.code == code))
            is not None
        ):
            raise conflict(
                "code", f"code {code} is already used by another external line"
            ) from None
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "the database refused the external line, likely for a concurrent change: "
            "read it again and retry",
        ) from None
