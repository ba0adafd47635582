"""A card's call history: newest first, paged, an account's including its
contacts' calls (which carry the account), the total counted up to a limit
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callbridge.crm import history
from callbridge.crm.history import history_page
from callbridge.store import Database
from callbridge.store.models import Account, CallRecord, Contact

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _call(n: int, **links: int | None) -> CallRecord:
    return CallRecord(
        id=f"call{n:04d}",
        direction="incoming",
        caller_number="+15550100",
        callee_number="100",
        started_at=T0 + timedelta(minutes=n),
        talk_seconds=0,
        status="missed" if n % 3 == 0 else "answered",
        **links,
    )


async def test_an_accounts_history_holds_its_contacts_calls(database: Database) -> None:
    async with database.session() as session:
        session.add_all([Account(id=1, name="Acme"), Account(id=2, name="Other")])
        session.add_all(
            [
                Contact(id=1, name="Ann", account_id=1),
                Contact(id=2, name="Bob", account_id=2),
                Contact(id=3, name="Cy"),
            ]
        )
        await session.flush()
        session.add_all(
            [
                _call(1, account_id=1),
                _call(2, contact_id=1, account_id=1),  # a contact's, with its account
                _call(3, contact_id=1, account_id=1),
                _call(4, contact_id=2, account_id=2),
                _call(5, contact_id=3),
                _call(6, account_id=1),
            ]
        )
        await session.commit()

        rows, total = await history_page(session, "account", 1)
        assert [r.id for r in rows] == ["call0006", "call0003", "call0002", "call0001"]
        assert total == 4

        rows, total = await history_page(session, "account", 1, limit=2, offset=1)
        assert [r.id for r in rows] == ["call0003", "call0002"]
        assert total == 4

        rows, total = await history_page(
            session, "account", 1, where=[CallRecord.status == "missed"]
        )
        assert [r.id for r in rows] == ["call0006", "call0003"]
        assert total == 2

        rows, total = await history_page(session, "contact", 1)
        assert [r.id for r in rows] == ["call0003", "call0002"]
        assert total == 2
        rows, total = await history_page(session, "contact", 99)
        assert (rows, total) == ([], 0)


async def test_the_total_is_counted_up_to_the_limit(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "COUNT_LIMIT", 3)
    async with database.session() as session:
        session.add(Contact(id=1, name="Ann"))
        await session.flush()
        session.add_all([_call(n, contact_id=1) for n in range(1, 7)])
        await session.commit()
        rows, total = await history.history_page(session, "contact", 1, limit=2)
        assert [r.id for r in rows] == ["call0006", "call0005"]
        assert total == 4  # more than 3
        rows, total = await history.history_page(
            session, "contact", 1, where=[CallRecord.status == "missed"]
        )
        assert total == 2
