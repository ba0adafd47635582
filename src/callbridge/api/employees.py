"""`/api/v1/employees`: the team. Each employee signs in with a login of their
own (`login`, `password`, `role`); the password is write-only. Admins write;
everyone signed in reads, since histories show employees' names. Deleting an
employee removes their login and line but keeps them for the history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import status as http_status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..crm import employees as crm
from ..crm.cards import sees_everything
from ..store.accounts import hash_password, revoke_tokens
from ..store.models import CallDirection, CallStatus, Employee, InternalLine, Role, User
from .calls import CallPage, history
from .deps import SessionDep, Staff, Writer
from .errors import conflict, not_found_reference
from .fields import (
    Email,
    IdField,
    IdPath,
    Input,
    Limit,
    Name,
    Offset,
    PhoneText,
    not_null,
    plain_text,
)
from .internal_lines import Password

router = APIRouter(prefix="/employees", tags=["employees"])

Login = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._@+-]+$",
        description="What the employee signs in with (POST /api/v1/auth/login `username`).",
    ),
]


class EmployeeCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: Name
    login: Login
    password: Password
    role: Role = "operator"
    telephony_enabled: bool = True
    email: Email | None = None
    phone: PhoneText | None = None
    internal_line_id: IdField | None = Field(
        None, description="The employee's internal line; staged until POST /config/apply."
    )


class EmployeeUpdate(Input):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    login: Login | None = None
    password: Password | None = None
    role: Role | None = None
    telephony_enabled: bool | None = None
    email: Email | None = None
    phone: PhoneText | None = None
    internal_line_id: IdField | None = None

    _not_null = field_validator("name", "login", "password", "role", "telephony_enabled")(not_null)


class LineRef(BaseModel):
    id: int
    number: str


class EmployeeOut(BaseModel):
    id: int
    name: str
    login: str | None = Field(description="Null once the employee is deleted.")
    role: str | None
    active: bool
    telephony_enabled: bool
    email: str | None
    phone: str | None
    internal_line: LineRef | None


class EmployeePage(BaseModel):
    items: list[EmployeeOut]
    total: int


async def _views(session: AsyncSession, employees: list[Employee]) -> list[EmployeeOut]:
    ids = [e.id for e in employees]
    logins = await crm.logins_of(session, ids)
    lines = await crm.lines_of(session, ids)
    views = []
    for employee in employees:
        user, line = logins.get(employee.id), lines.get(employee.id)
        views.append(
            EmployeeOut(
                id=employee.id,
                name=employee.name,
                login=user.username if user else None,
                role=user.role if user else None,
                active=employee.active,
                telephony_enabled=employee.telephony_enabled,
                email=employee.email,
                phone=employee.phone,
                internal_line=LineRef(id=line.id, number=line.number) if line else None,
            )
        )
    return views


async def _view(session: AsyncSession, employee: Employee) -> EmployeeOut:
    return (await _views(session, [employee]))[0]


@router.get("")
async def list_employees(
    session: SessionDep,
    _user: Staff,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Part of name or login."),
        AfterValidator(plain_text),
    ] = None,
    active: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EmployeePage:
    query = select(Employee).outerjoin(User, User.employee_id == Employee.id)
    if q:
        needle = q.strip().lower()
        query = query.where(
            or_(
                func.lower(Employee.name).contains(needle, autoescape=True),
                func.lower(User.username).contains(needle, autoescape=True),
            )
        )
    if active is not None:
        query = query.where(Employee.active.is_(active))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        await session.scalars(
            query.order_by(Employee.name, Employee.id).limit(limit).offset(offset)
        )
    )
    return EmployeePage(items=await _views(session, rows), total=total)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such employee."},
    409: {"description": "The login is taken, or the line is another employee's."},
    422: {"description": "A field is invalid or names an internal line that does not exist."},
}


@router.post("", status_code=http_status.HTTP_201_CREATED, responses=_RESPONSES)
async def create_employee(
    body: EmployeeCreate, request: Request, session: SessionDep, _user: Writer
) -> EmployeeOut:
    await _check_login(session, body.login)
    await _check_line(session, body.internal_line_id)
    employee = Employee(
        name=body.name,
        email=body.email,
        phone=body.phone,
        telephony_enabled=body.telephony_enabled,
        active=True,
    )
    session.add(employee)
    await session.flush()
    session.add(
        User(
            username=body.login,
            password_hash=await hash_password(body.password.get_secret_value()),
            role=body.role,
            employee_id=employee.id,
            active=True,
        )
    )
    await _assign_line(session, employee, body.internal_line_id)
    await _commit(session, body.login)
    await _changed(request)
    return await _view(session, employee)


@router.get("/{employee_id}", responses=_RESPONSES)
async def read_employee(employee_id: IdPath, session: SessionDep, _user: Staff) -> EmployeeOut:
    return await _view(session, await get_employee(session, employee_id))


@router.patch("/{employee_id}", responses=_RESPONSES)
async def update_employee(
    employee_id: IdPath,
    body: EmployeeUpdate,
    request: Request,
    session: SessionDep,
    _user: Writer,
) -> EmployeeOut:
    employee = await get_employee(session, employee_id)
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    login = (await crm.logins_of(session, [employee.id])).get(employee.id)
    # A deleted employee is kept for the history only: no login, no line.
    acts = "login" in changes or "role" in changes or body.password is not None
    if (login is None and acts) or (
        not employee.active and changes.get("internal_line_id") is not None
    ):
        raise HTTPException(
            http_status.HTTP_409_CONFLICT, "the employee was deleted or has no login"
        )
    if "login" in changes:
        await _check_login(session, changes["login"], employee_id=employee.id)
    if "internal_line_id" in changes:
        await _check_line(session, changes["internal_line_id"])
        await _assign_line(session, employee, changes["internal_line_id"])
    for name in ("name", "email", "phone", "telephony_enabled"):
        if name in changes:
            setattr(employee, name, changes[name])
    if login is not None:
        if "login" in changes:
            login.username = changes["login"]
        # A new password or role signs the login out everywhere: a token
        # issued before must not keep the old rights, or outlive a leak.
        if "role" in changes and changes["role"] != login.role:
            login.role = changes["role"]
            await revoke_tokens(session, [login.id])
        if body.password is not None:
            login.password_hash = await hash_password(body.password.get_secret_value())
            await revoke_tokens(session, [login.id])
    await _commit(session, changes.get("login"))
    await _changed(request)
    return await _view(session, employee)


@router.delete("/{employee_id}", status_code=http_status.HTTP_204_NO_CONTENT, responses=_RESPONSES)
async def delete_employee(
    employee_id: IdPath, request: Request, session: SessionDep, user: Writer
) -> Response:
    """The employee stays (inactive) for the history; their login, its tokens
    and their internal line go (the line is free after the next apply)."""
    employee = await get_employee(session, employee_id)
    if employee.id == user.employee_id:
        raise HTTPException(http_status.HTTP_409_CONFLICT, "you cannot delete yourself")
    await crm.retire(session, employee)
    await session.commit()
    await _changed(request)
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)


@router.get("/{employee_id}/calls", responses=_RESPONSES)
async def employee_history(
    employee_id: IdPath,
    session: SessionDep,
    user: Staff,
    status: CallStatus | None = None,
    direction: CallDirection | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> CallPage:
    """The calls the employee handled, newest first. An operator reads their own only (403)."""
    await get_employee(session, employee_id)
    if not sees_everything(user) and user.employee_id != employee_id:
        raise HTTPException(http_status.HTTP_403_FORBIDDEN, "another employee's calls")
    return await history(
        session,
        "employee",
        employee_id,
        viewer=user,
        status=status,
        direction=direction,
        limit=limit,
        offset=offset,
    )


async def get_employee(session: AsyncSession, employee_id: int) -> Employee:
    employee = await session.get(Employee, employee_id)
    if employee is None:
        raise HTTPException(http_status.HTTP_404_NOT_FOUND, "no such employee")
    return employee


async def _changed(request: Request) -> None:
    """Tell the PBX which employees may use telephony now (when it listens)."""
    hook: Callable[[], Awaitable[None]] | None = getattr(
        request.app.state, "on_employees_changed", None
    )
    if hook is not None:
        await hook()


async def _check_login(session: AsyncSession, login: str, employee_id: int | None = None) -> None:
    taken = await session.scalar(select(User).where(User.username == login))
    if taken is not None and (employee_id is None or taken.employee_id != employee_id):
        raise conflict("login", f"login {login} is taken")


async def _check_line(session: AsyncSession, line_id: int | None) -> None:
    if line_id is not None and await session.get(InternalLine, line_id) is None:
        raise not_found_reference("internal_line_id", f"no internal line with id {line_id}")


async def _assign_line(session: AsyncSession, employee: Employee, line_id: int | None) -> None:
    try:
        await crm.assign_line(session, employee, line_id)
    except crm.LineTaken as taken:
        raise conflict(
            "internal_line_id", f"internal line {taken.line.number} is another employee's"
        ) from None


async def _commit(session: AsyncSession, login: str | None) -> None:
    """Commit; a login taken by a concurrent write is still a 409 naming it."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if login is None:
            raise
        raise conflict("login", f"login {login} is taken") from None
