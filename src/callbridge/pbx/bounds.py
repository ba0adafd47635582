"""What the PBX keeps of a value a peer sent: the bounds, read from the
columns that store it, and the checks the SIP edge makes before a value
reaches the store, a header or an event."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import Column, String

from ..numbers import MAX_NUMBER_LENGTH
from ..store.models import CallRecord, Registration


def _length(column: Column[object] | object) -> int:
    assert isinstance(column, Column) and isinstance(column.type, String)
    length = column.type.length
    assert length is not None, f"{column} has no length"
    return length


_CALLS = CallRecord.__table__.c
_REGISTRATIONS = Registration.__table__.c

# A number as the call record stores it (caller, callee, customer): the one
# bound every number from the wire meets before a rule or the store sees it.
NUMBER_MAX = MAX_NUMBER_LENGTH
assert all(_length(_CALLS[name]) >= NUMBER_MAX for name in ("caller_number", "callee_number"))
# The text a number came as, kept beside it for display.
RAW_MAX = min(_length(_CALLS[name]) for name in ("caller_raw", "callee_raw"))
CALL_ID_MAX = min(_length(_CALLS.sip_call_id), _length(_REGISTRATIONS.call_id))
USER_AGENT_MAX = _length(_REGISTRATIONS.user_agent)
# The proxies a REGISTER came through (RFC 3327 Path): kept with its binding.
PATH_MAX_ENTRIES = 8
PATH_MAX = 2048
# A device's `+sip.instance` (RFC 5626 §4.1), kept in its Contact: a URN,
# `<urn:uuid:...>` (47 characters) from every phone seen.
INSTANCE_MAX = 256
# Why a call ended: ours, but it may quote a peer (a bad SDP's line).
CAUSE_MAX = _length(_CALLS.hangup_cause)

# Digits, a leading plus, and the * and # a keypad sends.
_NUMBER_RE = re.compile(r"\+?[0-9*#]+")
# RFC 3966 visual separators: written in numbers, meaning nothing.
_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")
# Call-ID = word ["@" word]: visible ASCII, no spaces (RFC 3261 §25.1).
_CALL_ID_RE = re.compile(r"[!-~]+")
# Control characters, lone surrogates (bytes that were not UTF-8) and the
# line and paragraph separators: nothing a header, a database or a log line
# may carry as text.
_UNPRINTABLE = frozenset({"Cc", "Cs", "Zl", "Zp"})
REPLACEMENT = "\ufffd"
# The caller of a call whose number is withheld or unusable (RFC 3323).
ANONYMOUS = "anonymous"


def number(text: str) -> str | None:
    """`text` as a number the PBX dials and stores (visual separators
    dropped), or None if it holds anything else or does not fit."""
    bare = text.translate(_VISUAL_SEPARATORS)
    if len(bare) > NUMBER_MAX or not _NUMBER_RE.fullmatch(bare):
        return None
    return bare


def call_id_ok(call_id: str) -> bool:
    """Whether a Call-ID is one the store can keep whole."""
    return len(call_id) <= CALL_ID_MAX and _CALL_ID_RE.fullmatch(call_id) is not None


def printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, each unprintable one replaced by
    U+FFFD: what a peer's free text may become in the store or an event."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(REPLACEMENT if _unprintable(char) else char for char in text)


def is_clean(text: str) -> bool:
    """Whether `text` holds nothing `printable` would replace."""
    return text.isprintable() or not any(_unprintable(char) for char in text)


def _unprintable(char: str) -> bool:
    return unicodedata.category(char) in _UNPRINTABLE
