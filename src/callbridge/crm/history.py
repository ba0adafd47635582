"""A card's call history (and an employee's): one page of call records,
newest first, read straight off the (card, started_at) indexes so a page
costs the same with ten calls in the database as with ten million."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import CallRecord

HistoryOf = Literal["contact", "account", "lead", "employee"]


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def _newest_first(query: _Query) -> _Query:
    return query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc())


# An exact count of a card's calls grows with the card (a busy employee's
# 300,000 calls take tens of milliseconds to count); past this many, a
# history says "more than" instead of counting on.
COUNT_LIMIT = 10_000


def _owner_condition(of: HistoryOf, owner_id: int) -> ColumnElement[bool]:
    """The calls of one card or employee: one index range each. An account's
    are those linked to it, which includes its contacts' calls: a call linked
    to a contact carries the contact's account as well (crm.cards.link_call,
    crm.cards.contact_moved, and the call recorder's identification)."""
    column = {
        "contact": CallRecord.contact_id,
        "account": CallRecord.account_id,
        "lead": CallRecord.lead_id,
        "employee": CallRecord.employee_id,
    }[of]
    return column == owner_id


async def history_page(
    session: AsyncSession,
    of: HistoryOf,
    owner_id: int,
    *,
    limit: int = 50,
    offset: int = 0,
    where: Sequence[ColumnElement[bool]] = (),
) -> tuple[list[CallRecord], int]:
    """One page of the calls of `of` `owner_id` (newest first) that also meet
    `where` (a status, a direction...), and how many there are in all — up to
    COUNT_LIMIT + 1, which means "more than COUNT_LIMIT"."""
    conditions = (_owner_condition(of, owner_id), *where)
    query = _newest_first(select(CallRecord).where(*conditions)).limit(limit).offset(offset)
    rows: list[CallRecord] = list(await session.scalars(query))
    return rows, await count_calls(session, conditions)


async def count_calls(session: AsyncSession, conditions: Sequence[ColumnElement[bool]]) -> int:
    """How many calls meet `conditions`, counted no further than COUNT_LIMIT + 1."""
    # `1`, not a column: the history indexes answer it alone, reading no row.
    head = (
        select(literal(1))
        .select_from(CallRecord)  # also when no condition names the table
        .where(*conditions)
        .limit(COUNT_LIMIT + 1)
        .subquery()
    )
    return await session.scalar(select(func.count()).select_from(head)) or 0
