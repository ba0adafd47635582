"""Who is calling: a client's number looked up in the phone index of
contacts, accounts and leads.

One indexed query whatever the size of the CRM: by E.164 when the number
reads as one, and by its last digits (`numbers.TAIL_DIGITS`) for numbers
stored or received in a form that does not — whose digits must then end
the same way, one the other's suffix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from ..numbers import TAIL_DIGITS, phone_key
from ..store.models import Account, CardType, Contact, Lead, Phone

# More candidates than an operator can choose from is a number shared by a
# whole switchboard; the first ones are enough to show.
MAX_MATCHES = 20


@dataclass(frozen=True, slots=True)
class Match:
    """One card the number belongs to."""

    type: CardType
    id: int
    name: str

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Identity:
    """The number as looked up (E.164 when it reads as one) and the cards
    it matched: none, one, or several for the employee to choose from."""

    number: str
    matches: tuple[Match, ...] = ()

    @property
    def card(self) -> Match | None:
        """The card a call is linked to: the one match, else none."""
        return self.matches[0] if len(self.matches) == 1 else None


def _card_query(
    card: type[Contact] | type[Account] | type[Lead], column: Any, kind: str, keys: Any
) -> Any:
    query = (
        select(literal(kind).label("type"), card.id, card.name, Phone.number, Phone.e164)
        .join(Phone, column == card.id)
        .where(keys)
    )
    if card is Lead:  # a qualified lead lives on as its contact
        query = query.where(Lead.status != "qualified")
    return query


def _lookup(keys: Any) -> Any:
    return union_all(
        _card_query(Contact, Phone.contact_id, "contact", keys),
        _card_query(Account, Phone.account_id, "account", keys),
        _card_query(Lead, Phone.lead_id, "lead", keys),
    )


# Built once: putting the statement together took a third of a lookup's time
# (bench/identify_load.py); only the keys change from call to call.
_BY_TAIL = _lookup(Phone.tail == bindparam("tail"))
_BY_E164_OR_TAIL = _lookup(
    or_(
        Phone.e164 == bindparam("e164"), and_(Phone.e164.is_(None), Phone.tail == bindparam("tail"))
    )
)


async def identify(session: AsyncSession, number: str, region: str) -> Identity:
    """The cards whose phones hold `number` (as received, read in `region`)."""
    key = phone_key(number, region)
    if len(key.digits) < TAIL_DIGITS and key.e164 is None:
        return Identity(number)  # too short to be a client's number
    if key.e164:
        rows = await session.execute(_BY_E164_OR_TAIL, {"e164": key.e164, "tail": key.tail})
    else:
        rows = await session.execute(_BY_TAIL, {"tail": key.tail})
    seen: dict[tuple[str, int], Match] = {}
    for kind, card_id, name, stored, e164 in rows:
        if (kind, card_id) in seen:
            continue
        if e164 is None or key.e164 is None:
            if not _same_tail(stored, key.digits):
                continue
        elif e164 != key.e164:
            continue
        seen[kind, card_id] = Match(kind, card_id, name)
    order = {"contact": 0, "account": 1, "lead": 2}
    matches = sorted(seen.values(), key=lambda m: (order[m.type], m.id))[:MAX_MATCHES]
    return Identity(key.e164 or number, tuple(matches))


def _same_tail(stored: str, digits: str) -> bool:
    """Numbers that do not read as E.164 match when one's digits end the other's."""
    stored_digits = "".join(ch for ch in stored if ch.isdigit())
    if len(stored_digits) < TAIL_DIGITS or len(digits) < TAIL_DIGITS:
        return False
    return stored_digits.endswith(digits) or digits.endswith(stored_digits)
