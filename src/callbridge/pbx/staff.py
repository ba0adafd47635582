"""The employees as the SIP side sees them: their names for call events and
who may use telephony. One immutable snapshot, read without I/O on every
call and swapped whole the moment an employee changes (no config apply)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import Employee


@dataclass(frozen=True, slots=True)
class Staff:
    """One employee: who they are, and whether the admin lets them use
    telephony (without it their line neither rings nor calls out)."""

    id: int
    name: str
    telephony_enabled: bool = True

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Employees:
    """Every employee by id, and the ids of those whose telephony is off."""

    by_id: Mapping[int, Staff] = field(default_factory=dict)
    disabled: frozenset[int] = frozenset()

    @classmethod
    def of(cls, staff: Iterable[Staff]) -> Employees:
        listed = list(staff)
        return cls(
            MappingProxyType({member.id: member for member in listed}),
            frozenset(member.id for member in listed if not member.telephony_enabled),
        )

    def may_use_telephony(self, employee_id: int | None) -> bool:
        """A line without an employee is nobody's to switch off."""
        return employee_id is None or employee_id not in self.disabled

    def __len__(self) -> int:
        return len(self.by_id)


async def load_employees(session: AsyncSession) -> Employees:
    """The snapshot of every employee in the store; a deleted one (kept
    inactive for the history) may not use telephony."""
    rows = await session.execute(
        select(Employee.id, Employee.name, Employee.telephony_enabled, Employee.active)
    )
    return Employees.of(
        Staff(id, name, bool(enabled) and bool(active)) for id, name, enabled, active in rows
    )
