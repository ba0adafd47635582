"""Field types the routers share: ids, pages and instants in paths and
queries, names, emails, phone numbers as typed, and the small shapes that point at
another object."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, SecretStr, field_validator

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
# A call's id is 32 hex digits (uuid4); the bound keeps anything the column
# could not hold, or a byte PostgreSQL refuses, from reaching the query.
CallIdPath = Annotated[
    str, Path(max_length=32, pattern=r"^[!-~]+$", description="A call's id (32 hex digits).")
]
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


# What no text from a client may hold: C0 control characters but tab, line
# feed and carriage return, DEL, and lone surrogates (JSON's "\ud800", which
# is no character: UTF-8 cannot encode it). PostgreSQL refuses NUL in text,
# both drivers refuse a surrogate, and the rest would reach logs, events and
# the panel as invisible bytes.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def plain_text(value: Any) -> Any:
    """`value` unchanged, or a ValueError naming the first character no text
    may hold; lists, mappings and secrets are looked through."""
    if isinstance(value, SecretStr):
        plain_text(value.get_secret_value())  # the message names no character of it
    elif isinstance(value, str):
        if (found := _FORBIDDEN.search(value)) is not None:
            raise ValueError(f"must not contain the character U+{ord(found.group()):04X}")
    elif isinstance(value, list | tuple):
        for item in value:
            plain_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            plain_text(key)
            plain_text(item)
    return value


class Input(BaseModel):
    """A request body: every text field in it is plain text (`plain_text`),
    so a 422 names the field before the store sees a byte it cannot keep."""

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        return plain_text(value)


class EmployeeRef(BaseModel):
    id: int
    name: str
