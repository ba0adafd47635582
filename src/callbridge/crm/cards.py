"""Contacts, accounts and leads as the CRM's rules see them: who may see a
card (and so the calls linked to it), a card's phones in the phone index,
the search over cards, linking a call to a card, and qualifying a lead."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from ..numbers import TAIL_DIGITS, looks_like_phone, phone_key
from ..store.models import Account, CallRecord, CardType, Contact, Lead, Note, Phone, User

Card = Contact | Account | Lead
# (An alias: inside CardKind `type` is a field's name.)
CardModel = type[Card]


@dataclass(frozen=True, slots=True)
class CardKind:
    """One kind of card and the columns that point at it from elsewhere."""

    type: CardType
    model: CardModel
    # The column of Phone, CallRecord and Note that holds this kind's id.
    key: str
    # What `q` searches besides the phones.
    text_columns: tuple[str, ...]

    def phone_column(self) -> InstrumentedAttribute[int | None]:
        column: InstrumentedAttribute[int | None] = getattr(Phone, self.key)
        return column

    def call_column(self) -> InstrumentedAttribute[int | None]:
        column: InstrumentedAttribute[int | None] = getattr(CallRecord, self.key)
        return column

    def note_column(self) -> InstrumentedAttribute[int | None]:
        column: InstrumentedAttribute[int | None] = getattr(Note, self.key)
        return column


CONTACT = CardKind("contact", Contact, "contact_id", ("name", "email", "company"))
ACCOUNT = CardKind("account", Account, "account_id", ("name", "email", "website"))
LEAD = CardKind("lead", Lead, "lead_id", ("name", "email", "company"))
KINDS: dict[str, CardKind] = {kind.type: kind for kind in (CONTACT, ACCOUNT, LEAD)}
# The three columns a call or a note points at its card with. One is set, but
# for a contact's call, which also carries the contact's account.
CARD_KEYS = tuple(kind.key for kind in KINDS.values())


# ------------------------------------------------------------- visibility


def sees_everything(user: User) -> bool:
    """Admins and supervisors see and change every card and every call."""
    return user.role in ("admin", "supervisor")


def card_visible(kind: CardKind, user: User) -> ColumnElement[bool]:
    """The cards `user` may see: an operator sees the cards their employee
    owns and those nobody owns."""
    if sees_everything(user):
        return true()
    owner = kind.model.owner_id
    if user.employee_id is None:
        return owner.is_(None)
    return or_(owner == user.employee_id, owner.is_(None))


def call_visible(user: User) -> ColumnElement[bool]:
    """The calls `user` may see: an operator sees their employee's calls and
    the calls linked to a card they can see."""
    if sees_everything(user):
        return true()
    conditions: list[ColumnElement[bool]] = [
        exists().where(kind.model.id == kind.call_column(), card_visible(kind, user))
        for kind in KINDS.values()
    ]
    if user.employee_id is not None:
        conditions.append(CallRecord.employee_id == user.employee_id)
    return or_(*conditions) if conditions else false()


async def openable(
    session: AsyncSession, wanted: Iterable[tuple[str, int]], user: User
) -> set[tuple[str, int]]:
    """Of the cards `wanted` (type, id), those `user` may open; one query
    per kind. What else is shown of one they may not: its type only."""
    wanted = set(wanted)
    if sees_everything(user):
        return wanted
    by_type: dict[str, set[int]] = defaultdict(set)
    for type_, card_id in wanted:
        if type_ in KINDS:
            by_type[type_].add(card_id)
    found: set[tuple[str, int]] = set()
    for type_, ids in by_type.items():
        kind = KINDS[type_]
        rows = await session.scalars(
            select(kind.model.id).where(kind.model.id.in_(ids), card_visible(kind, user))
        )
        found.update((type_, card_id) for card_id in rows)
    return found


async def visible_card(
    session: AsyncSession, kind: CardKind, card_id: int, user: User
) -> Card | None:
    """The card, when it exists and `user` may see it."""
    card: Card | None = await session.scalar(
        select(kind.model).where(kind.model.id == card_id, card_visible(kind, user))
    )
    return card


async def can_see_call(session: AsyncSession, call_id: str, user: User) -> bool:
    if sees_everything(user):
        return True
    query = select(CallRecord.id).where(CallRecord.id == call_id, call_visible(user))
    return await session.scalar(query) is not None


# ---------------------------------------------------------------- phones


async def replace_phones(
    session: AsyncSession,
    kind: CardKind,
    card_id: int,
    phones: Sequence[tuple[str, str]],
    region: str,
) -> None:
    """The card's phones become `phones` ((type, number as typed) pairs),
    each indexed by its E.164 form and last digits (read in `region`)."""
    await session.execute(delete(Phone).where(kind.phone_column() == card_id))
    for phone_type, number in phones:
        key = phone_key(number, region)
        session.add(
            Phone(
                **{kind.key: card_id},
                type=phone_type,
                number=number,
                e164=key.e164,
                tail=key.tail,
            )
        )


async def phones_of(
    session: AsyncSession, kind: CardKind, card_ids: Iterable[int]
) -> dict[int, list[Phone]]:
    """Each card's phones, in the order they were given; one query for a page."""
    ids = list(card_ids)
    found: dict[int, list[Phone]] = defaultdict(list)
    if not ids:
        return found
    column = kind.phone_column()
    for phone in await session.scalars(select(Phone).where(column.in_(ids)).order_by(Phone.id)):
        found[getattr(phone, kind.key)].append(phone)
    return found


def search(kind: CardKind, q: str, region: str) -> ColumnElement[bool]:
    """The cards `q` finds: a piece of the name, email, company (or website),
    and — when `q` is written like a phone number — the cards holding that
    number in any format, through the phone index."""
    needle = q.strip().lower()
    conditions: list[ColumnElement[bool]] = [
        func.lower(getattr(kind.model, name)).contains(needle, autoescape=True)
        for name in kind.text_columns
    ]
    if looks_like_phone(q):
        key = phone_key(q, region)
        keys: list[ColumnElement[bool]] = []
        if key.e164 is not None:
            keys.append(Phone.e164 == key.e164)
        if len(key.digits) >= TAIL_DIGITS:
            keys.append(Phone.tail == key.tail)
        if keys:
            holders = select(kind.phone_column()).where(or_(*keys))
            conditions.append(kind.model.id.in_(holders))
    return or_(*conditions)


async def delete_card(session: AsyncSession, kind: CardKind, card: Card) -> None:
    """Delete `card` with its phones and notes; the notes written on its
    calls stay with the calls, and the calls stay (unlinked)."""
    await session.execute(
        update(Note)
        .where(kind.note_column() == card.id, Note.call_id.is_not(None))
        .values({kind.key: None})
    )
    await session.delete(card)


# ------------------------------------------------------------------ calls


def linked_card(row: CallRecord | Note) -> tuple[CardKind, int] | None:
    """The card a call or a note is linked to, if any."""
    for kind in KINDS.values():
        card_id = getattr(row, kind.key)
        if card_id is not None:
            return kind, card_id
    return None


async def link_call(
    session: AsyncSession, call: CallRecord, kind: CardKind | None, card_id: int | None
) -> None:
    """Link `call` to one card (or to none): a call belongs to one card, so
    the other links and the candidates of identification go. The call's
    notes follow it to the card's notes."""
    card: dict[str, int | None] = {key: None for key in CARD_KEYS}
    if kind is not None:
        card[kind.key] = card_id
    if kind is CONTACT:
        # The account's history is then one index range (crm.history).
        card[ACCOUNT.key] = await session.scalar(
            select(Contact.account_id).where(Contact.id == card_id)
        )
    for key, value in card.items():
        setattr(call, key, value)
    call.matches = None
    await session.execute(update(Note).where(Note.call_id == call.id).values(**card))


async def contact_moved(session: AsyncSession, contact: Contact) -> None:
    """A contact joined another account (or left one): its calls follow, so
    the account's history, which reads the calls' own account, stays right."""
    await session.execute(
        update(CallRecord)
        .where(CallRecord.contact_id == contact.id)
        .values(account_id=contact.account_id)
    )


def card_of_call(call: CallRecord) -> dict[str, Any]:
    """The card columns a note on `call` carries: those of the call's card."""
    return {key: getattr(call, key) for key in CARD_KEYS}


async def card_names(
    session: AsyncSession, wanted: Iterable[tuple[CardKind, int]]
) -> dict[tuple[str, int], str]:
    """The names of the cards `wanted`, by (type, id); one query per kind."""
    by_kind: dict[str, set[int]] = defaultdict(set)
    for kind, card_id in wanted:
        by_kind[kind.type].add(card_id)
    names: dict[tuple[str, int], str] = {}
    for type_, ids in by_kind.items():
        model = KINDS[type_].model
        for card_id, name in await session.execute(
            select(model.id, model.name).where(model.id.in_(ids))
        ):
            names[type_, card_id] = name
    return names


# ------------------------------------------------------------------ leads


async def qualify(
    session: AsyncSession, lead: Lead, contact: Contact | None, region: str
) -> Contact:
    """Qualify `lead` into `contact`, or into a new contact made from the
    lead (name, email, company, phones, owner). The lead's calls stay where
    they are: they happened with the lead."""
    if contact is None:
        contact = Contact(
            name=lead.name, email=lead.email, company=lead.company, owner_id=lead.owner_id
        )
        session.add(contact)
        await session.flush()
        phones = (await phones_of(session, LEAD, [lead.id])).get(lead.id, [])
        await replace_phones(
            session, CONTACT, contact.id, [(p.type, p.number) for p in phones], region
        )
    lead.status = "qualified"
    lead.contact_id = contact.id
    return contact
