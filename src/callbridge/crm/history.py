"""A card's call history (and an employee's): one page of call records,
newest first, read straight off the (card, started_at) indexes so a page
costs the same with ten calls in the database as with ten million."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from ..store.models import CallRecord, Contact

HistoryOf = Literal["contact", "account", "lead", "employee"]


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def _newest_first(query: _Query) -> _Query:
    return query.order_by(CallRecord.started_at.desc(), CallRecord.id.desc())


def _owner_conditions(of: HistoryOf, owner_id: int) -> list[ColumnElement[bool]]:
    """The calls of one card or employee, as conditions each of which an index
    answers alone: an account's are its own and its contacts' (two)."""
    if of == "contact":
        return [CallRecord.contact_id == owner_id]
    if of == "lead":
        return [CallRecord.lead_id == owner_id]
    if of == "employee":
        return [CallRecord.employee_id == owner_id]
    contacts = select(Contact.id).where(Contact.account_id == owner_id).scalar_subquery()
    # A call linked to one of the account's contacts and to the account itself
    # is counted once, in the contacts' part: the account's own part leaves it
    # out by its contact_id, which ix_calls_account_started carries, so
    # neither part reads a table row to decide (the contacts' part is the
    # big one: a large account's contacts have most of its calls).
    return [
        (CallRecord.account_id == owner_id)
        & (CallRecord.contact_id.is_(None) | CallRecord.contact_id.not_in(contacts)),
        CallRecord.contact_id.in_(contacts),
    ]


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
    `where` (a status, a direction...), and how many there are in all."""
    parts = [(condition, *where) for condition in _owner_conditions(of, owner_id)]
    if len(parts) == 1:
        query = _newest_first(select(CallRecord).where(*parts[0])).limit(limit).offset(offset)
    else:
        # Each part walks its own index, newest first, no further than the
        # page needs; the union of those few keys is sorted once and only the
        # page's own rows are read in full.
        depth = limit + offset
        # (Each part a subquery of its own: SQLite takes no LIMIT on a bare
        # member of a UNION.)
        heads = [
            _newest_first(select(CallRecord.id, CallRecord.started_at).where(*part))
            .limit(depth)
            .subquery()
            for part in parts
        ]
        newest = union_all(*(select(head.c.id, head.c.started_at) for head in heads)).subquery()
        page = (
            select(newest.c.id)
            .order_by(newest.c.started_at.desc(), newest.c.id.desc())
            .limit(limit)
            .offset(offset)
            .subquery()
        )
        query = _newest_first(select(CallRecord).join(page, page.c.id == CallRecord.id))
    rows: list[CallRecord] = list(await session.scalars(query))
    total = 0
    for part in parts:
        counted = select(func.count()).select_from(CallRecord).where(*part)
        total += await session.scalar(counted) or 0
    return rows, total
