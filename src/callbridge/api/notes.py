"""Notes on calls and on cards: `/api/v1/calls/{id}/notes`,
`/api/v1/{contacts|accounts|leads}/{id}/notes`, and `/api/v1/notes/{id}` to
change or delete one (its author or an admin).

A note written on a call belongs to the call's card too, and follows the
call when it is linked to another card; so a card's notes are its own and
those of its calls. Whoever may see the call or the card reads its notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..crm import cards
from ..crm.employees import names_of
from ..store.models import Note, User, utcnow
from .calls import CardRef, card_refs, get_call
from .cards import PLURALS, get_card
from .deps import SessionDep, Staff
from .fields import CallIdPath, EmployeeRef, IdPath, Input, Limit, Offset

router = APIRouter(tags=["notes"])


class NoteIn(Input):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=10_000)]


class NoteOut(BaseModel):
    id: int
    text: str
    author: EmployeeRef | None = Field(
        description="The user who wrote it: their employee's name, else their username; "
        "null once their login is deleted."
    )
    call_id: str | None
    card: CardRef | None
    created_at: datetime
    updated_at: datetime


class NotePage(BaseModel):
    items: list[NoteOut]
    total: int


async def _views(session: AsyncSession, notes: Sequence[Note], viewer: User) -> list[NoteOut]:
    author_ids = {n.author_id for n in notes if n.author_id is not None}
    authors: dict[int, User] = {}
    if author_ids:
        users = await session.scalars(select(User).where(User.id.in_(author_ids)))
        authors = {user.id: user for user in users}
    employees = await names_of(session, (u.employee_id for u in authors.values() if u.employee_id))
    linked = await card_refs(session, notes, viewer)
    views = []
    for note, card in zip(notes, linked, strict=True):
        author = authors.get(note.author_id or 0)
        views.append(
            NoteOut(
                id=note.id,
                text=note.text,
                author=None
                if author is None
                else EmployeeRef(
                    id=author.id, name=employees.get(author.employee_id or 0, author.username)
                ),
                call_id=note.call_id,
                card=card,
                created_at=note.created_at,
                updated_at=note.updated_at,
            )
        )
    return views


async def _page(
    session: AsyncSession, condition: ColumnElement[bool], viewer: User, limit: int, offset: int
) -> NotePage:
    total = await session.scalar(select(func.count()).select_from(Note).where(condition)) or 0
    rows = await session.scalars(
        select(Note)
        .where(condition)
        .order_by(Note.created_at.desc(), Note.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return NotePage(items=await _views(session, list(rows), viewer), total=total)


async def _write(session: AsyncSession, note: Note, viewer: User) -> NoteOut:
    session.add(note)
    await session.commit()
    return (await _views(session, [note], viewer))[0]


_CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "An operator's: the call is not theirs to see."},
    404: {"description": "No such call."},
}


@router.get("/calls/{call_id}/notes", responses=_CALL_RESPONSES)
async def call_notes(
    call_id: CallIdPath, session: SessionDep, user: Staff, limit: Limit = 50, offset: Offset = 0
) -> NotePage:
    await get_call(session, call_id, user)
    return await _page(session, Note.call_id == call_id, user, limit, offset)


@router.post(
    "/calls/{call_id}/notes", status_code=status.HTTP_201_CREATED, responses=_CALL_RESPONSES
)
async def write_call_note(
    call_id: CallIdPath, body: NoteIn, session: SessionDep, user: Staff
) -> NoteOut:
    call = await get_call(session, call_id, user)
    note = Note(text=body.text, author_id=user.id, call_id=call.id, **cards.card_of_call(call))
    return await _write(session, note, user)


def _card_note_routes(kind: cards.CardKind) -> None:
    path = f"/{PLURALS[kind.type]}/{{card_id}}/notes"
    responses: dict[int | str, dict[str, Any]] = {
        404: {"description": f"No such {kind.type}, or one the user cannot see."}
    }

    @router.get(path, responses=responses, name=f"{kind.type}_notes")
    async def card_notes(
        card_id: IdPath, session: SessionDep, user: Staff, limit: Limit = 50, offset: Offset = 0
    ) -> NotePage:
        await get_card(session, kind, card_id, user)
        return await _page(session, kind.note_column() == card_id, user, limit, offset)

    @router.post(
        path,
        status_code=status.HTTP_201_CREATED,
        responses=responses,
        name=f"write_{kind.type}_note",
    )
    async def write_card_note(
        card_id: IdPath, body: NoteIn, session: SessionDep, user: Staff
    ) -> NoteOut:
        await get_card(session, kind, card_id, user)
        note = Note(text=body.text, author_id=user.id, **{kind.key: card_id})
        return await _write(session, note, user)


for _kind in cards.KINDS.values():
    _card_note_routes(_kind)


_NOTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only the note's author or an admin changes it."},
    404: {"description": "No such note."},
}


async def _own_note(session: AsyncSession, note_id: int, user: User) -> Note:
    note = await session.get(Note, note_id)
    if note is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such note")
    if note.author_id != user.id and user.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only its author or an admin may")
    return note


@router.patch("/notes/{note_id}", responses=_NOTE_RESPONSES)
async def update_note(note_id: IdPath, body: NoteIn, session: SessionDep, user: Staff) -> NoteOut:
    note = await _own_note(session, note_id, user)
    note.text = body.text
    note.updated_at = utcnow()
    return await _write(session, note, user)


@router.delete(
    "/notes/{note_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOTE_RESPONSES
)
async def delete_note(note_id: IdPath, session: SessionDep, user: Staff) -> Response:
    await session.delete(await _own_note(session, note_id, user))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
