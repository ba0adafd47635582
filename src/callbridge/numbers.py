"""Phone numbers as people type them and as providers send them, read with
`phonenumbers`: the E.164 form that makes "+7 916 123-45-67",
"8 (916) 1234567" and "79161234567" one number, the other forms a provider
may want, and the keys of the CRM's phone index."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import phonenumbers

# How a provider wants numbers written:
#   e164         "+79161234567"  (E.164, with the plus)
#   e164_digits  "79161234567"   (E.164 without the plus)
#   national     "89161234567"   (dialled within the country: RU 8..., UA 0..., US 10 digits)
ProviderStyle = Literal["e164", "e164_digits", "national"]
PROVIDER_STYLES: frozenset[str] = frozenset(get_args(ProviderStyle))

# What a typed phone number may hold: digits, a leading plus, and the visual
# separators people and RFC 3966 write. Letters are refused rather than read
# as a vanity number, so a name is never taken for one.
_PHONE_TEXT_RE = re.compile(r"\s*\+?[0-9\s\-.()/]*")
_NOT_DIGIT_RE = re.compile(r"[^0-9]")


# A typed number needs this many digits at least to be anyone's phone.
MIN_PHONE_DIGITS = 3
# The longest number callbridge takes from a peer or lets a rule see: E.164
# allows 15 digits, and 32 leaves room for prefixes, extensions and a plus
# (the call records' number columns hold 32 characters).
MAX_NUMBER_LENGTH = 32


def looks_like_phone(text: str) -> bool:
    """Whether `text` is written the way a phone number is: only phone
    characters (digits, a leading plus, separators) and at least
    MIN_PHONE_DIGITS digits. Says nothing of whether the number is valid."""
    digits = _NOT_DIGIT_RE.sub("", text)
    return bool(_PHONE_TEXT_RE.fullmatch(text)) and len(digits) >= MIN_PHONE_DIGITS


def to_e164(text: str, region: str) -> str | None:
    """`text` as an E.164 number ("+79161234567"), read as dialled in `region`
    (ISO 3166 code: "RU", "UA", "US"); None when it is no valid phone number
    (an internal number such as "101", letters, an incomplete number).

    "+7 916 123-45-67", "8 (916) 1234567" and "79161234567" in RU all give
    "+79161234567": a number that is not valid in the region is tried as an
    international one written without its "+" (or with "00").
    """
    return convert(text, region.upper(), "e164")


def to_national(e164: str) -> str:
    """The digits an E.164 number is dialled with inside its own country
    ("+79161234567" -> "89161234567", "+380501234567" -> "0501234567").

    Raises ValueError when `e164` is not a number in international form.
    """
    return _NOT_DIGIT_RE.sub(
        "", phonenumbers.format_number(_parse_e164(e164), phonenumbers.PhoneNumberFormat.NATIONAL)
    )


def to_provider(e164: str, style: ProviderStyle) -> str:
    """An E.164 number written the way a provider wants it: `e164`
    ("+79161234567"), `e164_digits` ("79161234567") or `national`
    ("89161234567" for RU). Raises ValueError for an unknown style or a
    number not in international form."""
    if style not in PROVIDER_STYLES:
        raise ValueError(f"unknown number style {style!r}; one of {sorted(PROVIDER_STYLES)}")
    if style == "national":
        return to_national(e164)
    formatted = phonenumbers.format_number(_parse_e164(e164), phonenumbers.PhoneNumberFormat.E164)
    return formatted if style == "e164" else formatted[1:]


def _parse_e164(e164: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"not a number in international form: {e164!r}") from error


# The same numbers come by again and again (Request-URI and To, retransmissions,
# every rule of a chain), and phonenumbers takes tens of microseconds a parse.
@lru_cache(maxsize=4096)
def convert(text: str, region: str, style: ProviderStyle) -> str | None:
    """`text` read as a number dialled in `region` (upper case) and written
    in `style`; None when it is no valid phone number."""
    number = _read_number(text, region)
    if number is None:
        return None
    if style == "national":
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        return _NOT_DIGIT_RE.sub("", national)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if style == "e164" else e164[1:]


# Country code and subscriber number together: fewer digits are no
# international number outside a few tiny territories.
_MIN_INTERNATIONAL_DIGITS = 8


def _read_number(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    if not _PHONE_TEXT_RE.fullmatch(text):
        return None
    digits = _NOT_DIGIT_RE.sub("", text)
    if not digits:
        return None
    candidates = [text]
    # A number not valid in the region may be an international one written
    # without its "+" (or with "00") — but only when it is long enough to be:
    # a local "470-32-10" is not the Norwegian +47 03210.
    if not text.strip().startswith("+") and len(digits) >= _MIN_INTERNATIONAL_DIGITS:
        candidates.append("+" + digits)
        if digits.startswith("00"):
            candidates.append("+" + digits[2:])
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return number
    return None


# How many of a number's last digits the phone index keeps: enough to tell
# subscribers apart within a country, few enough to survive any prefix a
# provider or a person puts in front (trunk codes, "8", "00", a country code).
TAIL_DIGITS = 7


@dataclass(frozen=True, slots=True)
class PhoneKey:
    """Where a number sits in the phone index: its E.164 form (None when it
    reads as no valid number), its digits, and their last TAIL_DIGITS."""

    e164: str | None
    digits: str
    tail: str


def phone_key(text: str, region: str) -> PhoneKey:
    """The index keys of `text` typed or received in `region`."""
    digits = _NOT_DIGIT_RE.sub("", text)
    return PhoneKey(to_e164(text, region), digits, digits[-TAIL_DIGITS:])
