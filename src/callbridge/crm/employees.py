"""Employees: a person on the team, the login they sign in with (a User row
of their own), their internal line, and what deleting one keeps (the
person, for the history) and removes (the login)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.accounts import revoke_tokens
from ..store.models import Employee, InternalLine, User


class LineTaken(Exception):
    """The internal line belongs to another employee."""

    def __init__(self, line: InternalLine) -> None:
        super().__init__(f"internal line {line.number} is employee {line.employee_id}'s")
        self.line = line


async def logins_of(session: AsyncSession, employee_ids: Iterable[int]) -> dict[int, User]:
    """Each employee's login (User), for those that have one."""
    ids = list(employee_ids)
    if not ids:
        return {}
    users = await session.scalars(select(User).where(User.employee_id.in_(ids)))
    return {user.employee_id: user for user in users if user.employee_id is not None}


async def lines_of(session: AsyncSession, employee_ids: Iterable[int]) -> dict[int, InternalLine]:
    """Each employee's internal line (the lowest number, should one have several)."""
    ids = list(employee_ids)
    if not ids:
        return {}
    lines = await session.scalars(
        select(InternalLine)
        .where(InternalLine.employee_id.in_(ids))
        .order_by(InternalLine.number.desc())
    )
    return {line.employee_id: line for line in lines if line.employee_id is not None}


async def names_of(session: AsyncSession, employee_ids: Iterable[int]) -> dict[int, str]:
    ids = set(employee_ids)
    if not ids:
        return {}
    rows = await session.execute(select(Employee.id, Employee.name).where(Employee.id.in_(ids)))
    return {employee_id: name for employee_id, name in rows}


async def assign_line(session: AsyncSession, employee: Employee, line_id: int | None) -> None:
    """Give `employee` the internal line `line_id` (None: no line), freeing
    any other line of theirs. Like every line edit it is staged: calls see
    it after the next config apply. Raises LineTaken for another's line;
    the caller checks that the line exists."""
    if line_id is not None:
        line = await session.get(InternalLine, line_id)
        if line is not None and line.employee_id not in (None, employee.id):
            raise LineTaken(line)
    await session.execute(
        update(InternalLine)
        .where(InternalLine.employee_id == employee.id, InternalLine.id != (line_id or -1))
        .values(employee_id=None)
    )
    if line_id is not None:
        await session.execute(
            update(InternalLine).where(InternalLine.id == line_id).values(employee_id=employee.id)
        )


async def retire(session: AsyncSession, employee: Employee) -> None:
    """Delete what lets the employee act (their login and its tokens, their
    line), keeping the employee row: call records and cards still name them.
    Their line's telephony is switched off until it is given to someone
    else with a new password (`reissue_line`): the leaver's phone knows the
    old one."""
    user_ids = select(User.id).where(User.employee_id == employee.id).scalar_subquery()
    await revoke_tokens(session, user_ids)
    await session.execute(delete(User).where(User.employee_id == employee.id))
    await session.execute(
        update(InternalLine)
        .where(InternalLine.employee_id == employee.id)
        .values(telephony_disabled=True)
    )
    await assign_line(session, employee, None)
    employee.active = False


async def reissue_line(session: AsyncSession, line: InternalLine, *, new_password: bool) -> None:
    """Switch a leaver's line back on once it has a new password and an
    active employee (staged, like the password: calls see it after the
    next apply)."""
    if not (line.telephony_disabled and new_password and line.employee_id is not None):
        return
    employee = await session.get(Employee, line.employee_id)
    if employee is not None and employee.active:
        line.telephony_disabled = False
