"""The internal lines snapshot: a leaver's line disabled without an apply,
and a line without a password that nothing authenticates as."""

from __future__ import annotations

from callbridge.pbx.lines import Line, Lines, lines_of
from callbridge.store.models import InternalLine


def _lines() -> Lines:
    return Lines.of(
        [
            Line("101", "alice", {"MD5": "a" * 32}, id=1),
            Line("102", "bob", {"MD5": "b" * 32}, id=2),
        ]
    )


def test_disabling_marks_only_the_lines_named() -> None:
    lines = _lines().disabling({1, 99})
    assert lines.by_number["101"].disabled and lines.by_username["alice"].disabled
    assert not lines.by_number["102"].disabled


def test_disabling_what_is_disabled_already_keeps_the_snapshot() -> None:
    once = _lines().disabling({1})
    assert once.disabling({1}) is once
    assert once.disabling(()) is once


def test_a_line_without_a_password_has_no_ha1_to_match() -> None:
    row = InternalLine(id=3, number="103", username="carol", ha1_md5="", ha1_sha256="")
    row.max_devices, row.ring_timeout, row.max_talk_duration, row.max_incoming_calls = 1, 30, 0, 1
    lines = lines_of([row])
    assert lines.ha1_of("carol", "MD5") is None
    assert lines.ha1_of("carol", "SHA-256") is None


def test_a_lines_digest_algorithms_are_found_by_username_or_number() -> None:
    row = InternalLine(id=4, number="104", username="dave", ha1_md5="d" * 32, ha1_sha256="")
    row.max_devices, row.ring_timeout, row.max_talk_duration, row.max_incoming_calls = 1, 30, 0, 1
    row.digest_algorithms = "SHA-256,MD5"
    lines = Lines.of([*lines_of([row]).by_username.values(), *_lines().by_username.values()])
    assert lines.digest_algorithms_of("dave") == ("SHA-256", "MD5")
    assert lines.digest_algorithms_of("104") == ("SHA-256", "MD5")
    assert lines.digest_algorithms_of("alice") is None  # chose none: the server's
    assert lines.digest_algorithms_of("nobody") is None


def test_a_line_listens_for_dtmf_tones_only_when_it_says_so() -> None:
    rows = []
    for number, inband in (("105", True), ("106", None)):  # None: a version before the column
        row = InternalLine(id=int(number), number=number, username=f"u{number}", ha1_md5="")
        row.max_devices, row.ring_timeout, row.max_talk_duration, row.max_incoming_calls = (
            1,
            30,
            0,
            1,
        )
        row.inband_dtmf = inband  # type: ignore[assignment]
        rows.append(row)
    lines = lines_of(rows)
    assert lines.by_number["105"].inband_dtmf is True
    assert lines.by_number["106"].inband_dtmf is False
