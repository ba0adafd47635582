"""The bounds the SIP edge puts on what a peer sends, read from the columns
that store it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callbridge.pbx import bounds
from callbridge.store.models import CallRecord


def test_the_bounds_are_the_columns_lengths() -> None:
    columns = CallRecord.__table__.c
    assert bounds.NUMBER_MAX == columns.caller_number.type.length == 32
    assert bounds.CALL_ID_MAX == columns.sip_call_id.type.length == 255


def test_a_number_keeps_digits_plus_star_and_hash_and_drops_visual_separators() -> None:
    assert bounds.number("+7 (916) 123-45-67") == "+79161234567"
    assert bounds.number("*97#") == "*97#"
    assert bounds.number("9" * bounds.NUMBER_MAX) == "9" * bounds.NUMBER_MAX


def test_anything_else_is_no_number() -> None:
    for text in ["", "9" * (bounds.NUMBER_MAX + 1), "anonymous", "1\r\n2", "1+2", "1\x002", "١٢٣"]:
        assert bounds.number(text) is None, text


@given(st.text())
def test_a_number_holds_only_what_a_keypad_sends(text: str) -> None:
    found = bounds.number(text)
    assert found is None or (
        len(found) <= bounds.NUMBER_MAX and set(found.lstrip("+")) <= set("0123456789*#")
    )


@given(st.text(), st.integers(0, 300))
def test_printable_text_fits_and_carries_no_control_character(text: str, limit: int) -> None:
    shown = bounds.printable(text, limit)
    assert len(shown) == min(len(text), limit)
    assert bounds.is_clean(shown)
    assert not any(c in shown for c in "\x00\r\n\x1b\u2028")
    shown.encode("utf-8")  # no lone surrogate: both databases can store it


def test_a_call_id_must_fit_and_be_visible_ascii() -> None:
    assert bounds.call_id_ok("a84b4c76e66710@pc33.atlanta.com")
    assert not bounds.call_id_ok("c" * (bounds.CALL_ID_MAX + 1))
    for bad in ["", "with space", "bad\udcffbyte", "nul\x00", "é@x"]:
        assert not bounds.call_id_ok(bad), bad
