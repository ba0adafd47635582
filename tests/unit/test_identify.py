"""Caller identification against the phone index (SQLite and PostgreSQL):
one number in any format, several cards for one number, numbers that do
not read as E.164 matched by their last digits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from callbridge.crm.identify import Match, identify
from callbridge.numbers import phone_key
from callbridge.store import Database
from callbridge.store.models import Account, Contact, Lead, Phone

RU = "RU"


def _phone(number: str, **card: int) -> Phone:
    key = phone_key(number, RU)
    return Phone(number=number, e164=key.e164, tail=key.tail, type="mobile", **card)


async def _cards(session: AsyncSession) -> None:
    session.add_all(
        [
            Contact(id=1, name="Anna"),
            Contact(id=2, name="Boris"),
            Contact(id=3, name="Vera"),
            Account(id=1, name="Acme"),
            Lead(id=1, name="New lead", status="new"),
            Lead(id=2, name="Done lead", status="qualified"),
        ]
    )
    await session.flush()
    session.add_all(
        [
            _phone("+7 916 123-45-67", contact_id=1),
            _phone("8 (916) 1234567", contact_id=1),  # the same number again
            _phone("79161234568", contact_id=2),
            _phone("8 (916) 123-45-68", contact_id=3),
            _phone("+7 495 000-11-22", account_id=1),
            _phone("+7 495 000-11-22", lead_id=1),
            _phone("+7 495 000-11-22", lead_id=2),
            _phone("ext. 55 12 34 567", contact_id=3),  # reads as no number
        ]
    )
    await session.commit()


async def test_one_number_in_any_format_is_one_card(database: Database) -> None:
    async with database.session() as session:
        await _cards(session)
        for received in ("+79161234567", "89161234567", "79161234567", "+7 (916) 123-45-67"):
            identity = await identify(session, received, RU)
            assert identity.number == "+79161234567"
            assert identity.matches == (Match("contact", 1, "Anna"),)
            assert identity.card == Match("contact", 1, "Anna")


async def test_a_shared_number_lists_every_card_and_links_none(database: Database) -> None:
    async with database.session() as session:
        await _cards(session)
        identity = await identify(session, "+79161234568", RU)
        assert identity.matches == (Match("contact", 2, "Boris"), Match("contact", 3, "Vera"))
        assert identity.card is None
        # An account and an open lead; the qualified lead lives on as its contact.
        identity = await identify(session, "84950001122", RU)
        assert identity.matches == (Match("account", 1, "Acme"), Match("lead", 1, "New lead"))


async def test_unknown_and_unreadable_numbers(database: Database) -> None:
    async with database.session() as session:
        await _cards(session)
        assert (await identify(session, "+79990000000", RU)).matches == ()
        assert (await identify(session, "101", RU)).matches == ()  # an internal number
        # Not a valid number anywhere, but its last digits end a stored one's.
        identity = await identify(session, "0551234567", RU)
        assert identity.number == "0551234567"
        assert Match("contact", 3, "Vera") in identity.matches
