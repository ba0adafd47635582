"""One line per event, as key=value text or as JSON."""

from __future__ import annotations

import json
import logging

from callbridge.logs import JsonFormatter, TextFormatter, configure, log_event


def record(event: str, **fields: object) -> logging.LogRecord:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            captured.append(rec)

    logger = logging.getLogger("callbridge.test.logs")
    logger.handlers[:] = [Keep()]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    log_event(logger, logging.DEBUG, event, **fields)
    return captured[0]


def test_text_lines_are_key_value_with_quoting() -> None:
    line = TextFormatter().format(
        record("sip.recv", method="INVITE", reason="Bad Request", note='say "hi"')
    )
    assert " DEBUG callbridge.test.logs sip.recv method=INVITE " in line
    assert 'reason="Bad Request"' in line
    assert 'note="say \\"hi\\""' in line
    assert "\n" not in line


def test_a_full_message_stays_on_one_text_line() -> None:
    line = TextFormatter().format(record("sip.recv", message="OPTIONS sip:a SIP/2.0\r\nVia: x"))
    assert "\n" not in line and "\\r\\n" in line


def test_json_lines_carry_the_fields() -> None:
    out = json.loads(JsonFormatter().format(record("sip.send", status=200, dest="udp:1")))
    assert out["event"] == "sip.send"
    assert out["level"] == "debug"
    assert out["status"] == 200
    assert out["dest"] == "udp:1"


def test_disabled_level_builds_no_record() -> None:
    # The per-message path calls log_event for every datagram: with debug off
    # it must stop at the level check, before the logger makes a record.
    class Counting(logging.Logger):
        calls = 0

        def log(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            Counting.calls += 1

    quiet = Counting("callbridge.test.quiet", level=logging.INFO)
    log_event(quiet, logging.DEBUG, "sip.recv", method="OPTIONS")
    assert Counting.calls == 0
    log_event(quiet, logging.INFO, "sip.recv", method="OPTIONS")
    assert Counting.calls == 1


def test_debug_logging_never_shows_database_parameters() -> None:
    # aiosqlite's debug lines carry statement parameters: trunk passwords.
    configure("debug")
    try:
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    finally:
        configure("info")


def test_a_value_with_control_characters_is_written_escaped() -> None:
    line = TextFormatter().format(record("sip.recv", ua="phone\x1b[2J\x00\udcff"))
    assert "\x1b" not in line and "\x00" not in line and "\udcff" not in line
    assert 'ua="phone\\u001b[2J\\u0000\\udcff"' in line
