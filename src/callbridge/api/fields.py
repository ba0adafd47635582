"""Field types the routers share: ids, pages and instants in paths and
queries, names, emails, phone numbers as typed, and the small shapes that point at
another object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from ..numbers import MIN_PHONE_DIGITS, looks_like_phone

# Every id column is an INTEGER: a larger number names no row, and must not
# reach PostgreSQL, which refuses it with an error (a 500, not a 4xx).
MAX_ID = 2**31 - 1
# Further than any table reaches, and within PostgreSQL's BIGINT.
MAX_OFFSET = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="An id (1 to 2^31-1).")]
IdField = Annotated[int, Field(ge=1, le=MAX_ID, description="An id (1 to 2^31-1).")]
IdQuery = Annotated[int, Query(ge=1, le=MAX_ID, description="An id (1 to 2^31-1).")]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many items.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]


def _in_utc(value: datetime) -> datetime:
    # Timestamps are stored in UTC: an instant whose UTC date falls outside
    # Python's years (0001-01-01 at +01:00) must be refused here, not fail
    # (a 500) when the query binds it.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None


Instant = Annotated[AwareDatetime, AfterValidator(_in_utc)]

Name = Annotated[str, Field(min_length=1, max_length=200)]
# Checked loosely on purpose: the address is for people to read and write to,
# and the only reliable test of one is a message that arrives.
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
Text = Annotated[str, Field(max_length=10_000)]


def _phone_text(value: str) -> str:
    if not looks_like_phone(value):
        raise ValueError(
            "must hold only digits, a leading + and separators (space - . ( ) /), "
            f"and at least {MIN_PHONE_DIGITS} digits"
        )
    return value.strip()


PhoneText = Annotated[str, Field(max_length=32), AfterValidator(_phone_text)]


def not_null(value: Any) -> Any:
    """For partial updates: a field the client sent as null cannot be set to null."""
    if value is None:
        raise ValueError("may not be null")
    return value


class EmployeeRef(BaseModel):
    id: int
    name: str
