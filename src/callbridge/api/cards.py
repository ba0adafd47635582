"""`/api/v1/contacts`, `/api/v1/accounts`, `/api/v1/leads`: the CRM's cards,
with their phones, their call history, and a lead's qualification.

Admins and supervisors see and change every card. An operator sees the
cards their employee owns and those nobody owns, creates cards (their own by
default) and changes the cards they see, but deletes none; a card they cannot
see answers 404, as if it did not exist.

(No `from __future__ import annotations` here: the routes are built per kind
of card, and FastAPI reads each route's body type from its annotation.)"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..crm import cards
from ..crm.cards import ACCOUNT, CONTACT, LEAD, Card, CardKind
from ..store.models import (
    CallDirection,
    CallRecord,
    CallStatus,
    Contact,
    Employee,
    Lead,
    LeadStatus,
    PhoneType,
    User,
    utcnow,
)
from .calls import CallPage, history
from .deps import SessionDep, SettingsDep, Staff
from .errors import FieldError, not_found_reference
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

# ------------------------------------------------------------------ shapes


class PhoneIn(Input):
    model_config = ConfigDict(extra="forbid")

    type: PhoneType = "mobile"
    number: PhoneText


class PhoneOut(BaseModel):
    type: str
    number: str
    e164: str | None = Field(description="The number in E.164, null when it reads as none.")


Phones = Annotated[list[PhoneIn], Field(max_length=20)]
Comment = Annotated[str, Field(max_length=10_000)]
Short = Annotated[str, Field(max_length=200)]
CallId = Annotated[
    str | None,
    Field(max_length=32, description="A call record to link to the new card."),
]

# The fields every card has, and the card-specific ones below.
_NOT_NULL = ("name", "comment", "phones")


class _CardCreate(Input):
    model_config = ConfigDict(extra="forbid")

    name: Name
    email: Email | None = None
    owner_id: IdField | None = Field(None, description="Default: the creator's employee.")
    comment: Comment = ""
    phones: Phones = []
    call_id: CallId = None


class _CardUpdate(Input):
    """Only the fields sent change; `phones` replaces the whole list."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    owner_id: IdField | None = None
    comment: Comment | None = None
    phones: Phones | None = None


class _CardOut(BaseModel):
    id: int
    name: str
    email: str | None
    owner_id: int | None
    comment: str
    phones: list[PhoneOut]
    created_at: datetime
    updated_at: datetime


class ContactCreate(_CardCreate):
    company: Short | None = None
    position: Short | None = None
    account_id: IdField | None = None


class ContactUpdate(_CardUpdate):
    company: Short | None = None
    position: Short | None = None
    account_id: IdField | None = None

    _not_null = field_validator(*_NOT_NULL)(not_null)


class ContactOut(_CardOut):
    company: str | None
    position: str | None
    account_id: int | None


class AccountCreate(_CardCreate):
    website: Annotated[str, Field(max_length=500)] | None = None


class AccountUpdate(_CardUpdate):
    website: Annotated[str, Field(max_length=500)] | None = None

    _not_null = field_validator(*_NOT_NULL)(not_null)


class AccountOut(_CardOut):
    website: str | None


class LeadCreate(_CardCreate):
    company: Short | None = None
    status: LeadStatus = "new"
    contact_id: IdField | None = Field(None, description="The contact the lead was qualified into.")


class LeadUpdate(_CardUpdate):
    company: Short | None = None
    status: LeadStatus | None = None
    contact_id: IdField | None = None

    _not_null = field_validator(*_NOT_NULL, "status")(not_null)


class LeadOut(_CardOut):
    company: str | None
    status: str
    contact_id: int | None


# Fields that name another card: it must exist and be one the user sees.
_REFERENCES = {"account_id": ACCOUNT, "contact_id": CONTACT}
PLURALS = {"contact": "contacts", "account": "accounts", "lead": "leads"}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "An operator: deleting, or giving a card to another employee."},
    404: {"description": "No such card, or one the user cannot see."},
    422: {"description": "A field is invalid or names a card, employee or call that is not."},
}


# ------------------------------------------------------------------ rules


async def get_card(session: AsyncSession, kind: CardKind, card_id: int, user: User) -> Card:
    """The card `user` may see, else 404."""
    card = await cards.visible_card(session, kind, card_id, user)
    if card is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {kind.type}")
    return card


async def _check_fields(session: AsyncSession, user: User, fields: dict[str, Any]) -> None:
    """The cards and the owner the fields name exist and are the user's to name."""
    for field, target in _REFERENCES.items():
        card_id = fields.get(field)
        if card_id is not None and await cards.visible_card(session, target, card_id, user) is None:
            raise not_found_reference(field, f"no {target.type} with id {card_id}")
    owner_id = fields.get("owner_id")
    if owner_id is None:
        return
    if not cards.sees_everything(user) and owner_id != user.employee_id:
        raise FieldError(403, "owner_id", "an operator gives cards to no one else", "forbidden")
    if await session.get(Employee, owner_id) is None:
        raise not_found_reference("owner_id", f"no employee with id {owner_id}")


async def _call_to_link(session: AsyncSession, call_id: str, user: User) -> CallRecord:
    record = await session.get(CallRecord, call_id)
    if record is None:
        raise not_found_reference("call_id", f"no call with id {call_id}")
    if not await cards.can_see_call(session, call_id, user):
        raise FieldError(403, "call_id", "this call is not yours to see", "forbidden")
    return record


def _phone_pairs(phones: list[PhoneIn]) -> list[tuple[str, str]]:
    return [(phone.type, phone.number) for phone in phones]


# ----------------------------------------------------------------- routes


@dataclass(frozen=True)
class CardRoutes:
    """A kind of card's router, and how one of its cards reads in the API."""

    router: APIRouter
    view: Callable[[AsyncSession, Card], Awaitable[Any]]


def card_routes(
    kind: CardKind,
    create_body: type[_CardCreate],
    update_body: type[_CardUpdate],
    out_model: type[_CardOut],
) -> CardRoutes:
    plural = PLURALS[kind.type]
    router = APIRouter(prefix=f"/{plural}", tags=[plural])

    columns = [name for name in out_model.model_fields if name != "phones"]

    async def views(session: AsyncSession, rows: list[Card]) -> list[Any]:
        phones = await cards.phones_of(session, kind, (row.id for row in rows))
        return [
            out_model.model_validate(
                {
                    **{name: getattr(row, name) for name in columns},
                    "phones": [
                        PhoneOut(type=p.type, number=p.number, e164=p.e164)
                        for p in phones.get(row.id, [])
                    ],
                }
            )
            for row in rows
        ]

    async def view(session: AsyncSession, card: Card) -> Any:
        return (await views(session, [card]))[0]

    page_model = create_model(
        f"{out_model.__name__.removesuffix('Out')}Page",
        items=(list[out_model], ...),  # type: ignore[valid-type]
        total=(int, ...),
    )

    @router.get("", response_model=page_model, name=f"list_{plural}")
    async def list_cards(
        session: SessionDep,
        settings: SettingsDep,
        user: Staff,
        q: Annotated[
            str | None,
            Query(max_length=200, description="Part of a name, email or company; or a phone."),
            AfterValidator(plain_text),
        ] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Any:
        query: Select[Any] = select(kind.model).where(cards.card_visible(kind, user))
        if q and q.strip():
            query = query.where(cards.search(kind, q, settings.default_region))
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        page = query.order_by(kind.model.name, kind.model.id).limit(limit).offset(offset)
        rows: list[Card] = list(await session.scalars(page))
        return {"items": await views(session, rows), "total": total}

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=out_model,
        responses=_RESPONSES,
        name=f"create_{kind.type}",
    )
    async def create_card(
        form: create_body,  # type: ignore[valid-type]
        session: SessionDep,
        settings: SettingsDep,
        user: Staff,
    ) -> Any:
        body = cast(_CardCreate, form)
        fields = body.model_dump(exclude={"phones", "call_id"})
        if "owner_id" not in body.model_fields_set:
            fields["owner_id"] = user.employee_id
        await _check_fields(session, user, fields)
        call = None if body.call_id is None else await _call_to_link(session, body.call_id, user)
        card = kind.model(**fields)
        session.add(card)
        await session.flush()
        await cards.replace_phones(
            session, kind, card.id, _phone_pairs(body.phones), settings.default_region
        )
        if call is not None:
            await cards.link_call(session, call, kind, card.id)
        await session.commit()
        return await view(session, card)

    @router.get(
        "/{card_id}", response_model=out_model, responses=_RESPONSES, name=f"read_{kind.type}"
    )
    async def read_card(card_id: IdPath, session: SessionDep, user: Staff) -> Any:
        return await view(session, await get_card(session, kind, card_id, user))

    @router.patch(
        "/{card_id}", response_model=out_model, responses=_RESPONSES, name=f"update_{kind.type}"
    )
    async def update_card(
        card_id: IdPath,
        form: update_body,  # type: ignore[valid-type]
        session: SessionDep,
        settings: SettingsDep,
        user: Staff,
    ) -> Any:
        card = await get_card(session, kind, card_id, user)
        body = cast(_CardUpdate, form)
        changes = body.model_dump(exclude_unset=True, exclude={"phones"})
        await _check_fields(session, user, changes)
        for name, value in changes.items():
            setattr(card, name, value)
        if kind is CONTACT and "account_id" in changes:
            await cards.contact_moved(session, cast(Contact, card))
        if body.phones is not None:
            await cards.replace_phones(
                session, kind, card.id, _phone_pairs(body.phones), settings.default_region
            )
        card.updated_at = utcnow()
        await session.commit()
        return await view(session, card)

    @router.delete(
        "/{card_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=_RESPONSES,
        name=f"delete_{kind.type}",
    )
    async def delete_card(card_id: IdPath, session: SessionDep, user: Staff) -> Response:
        if not cards.sees_everything(user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "an operator deletes no cards")
        await cards.delete_card(session, kind, await get_card(session, kind, card_id, user))
        await session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/{card_id}/calls", responses=_RESPONSES, name=f"{kind.type}_history")
    async def card_history(
        card_id: IdPath,
        session: SessionDep,
        user: Staff,
        status: CallStatus | None = None,
        direction: CallDirection | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> CallPage:
        """The card's calls, newest first (an account's include its contacts')."""
        await get_card(session, kind, card_id, user)
        return await history(
            session,
            kind.type,
            card_id,
            viewer=user,
            status=status,
            direction=direction,
            limit=limit,
            offset=offset,
        )

    return CardRoutes(router, view)


contacts = card_routes(CONTACT, ContactCreate, ContactUpdate, ContactOut)
accounts = card_routes(ACCOUNT, AccountCreate, AccountUpdate, AccountOut)
leads = card_routes(LEAD, LeadCreate, LeadUpdate, LeadOut)


class QualifyIn(Input):
    model_config = ConfigDict(extra="forbid")

    contact_id: IdField | None = Field(None, description="An existing contact; default: a new one.")


@leads.router.post(
    "/{card_id}/qualify",
    status_code=status.HTTP_201_CREATED,
    responses={**_RESPONSES, 409: {"description": "The lead is qualified already."}},
)
async def qualify_lead(
    card_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    user: Staff,
    body: Annotated[QualifyIn | None, Body()] = None,
) -> ContactOut:
    """Make a contact of the lead (name, email, company, phones), or name an
    existing one; the lead becomes `qualified`. Its calls stay with the lead."""
    lead = await get_card(session, LEAD, card_id, user)
    assert isinstance(lead, Lead)
    if lead.status == "qualified":
        raise HTTPException(status.HTTP_409_CONFLICT, "the lead is qualified already")
    contact: Contact | None = None
    if body is not None and body.contact_id is not None:
        found = await cards.visible_card(session, CONTACT, body.contact_id, user)
        if not isinstance(found, Contact):
            raise not_found_reference("contact_id", f"no contact with id {body.contact_id}")
        contact = found
    made = await cards.qualify(session, lead, contact, settings.default_region)
    await session.commit()
    out: ContactOut = await contacts.view(session, made)
    return out
