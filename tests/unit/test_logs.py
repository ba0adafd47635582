"""One line per event, as key=value text or as JSON."""

from __future__ import annotations

import json
import logging

import pytest

from callbridge.logs import JsonFormatter, TextFormatter, log_event


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


def test_disabled_level_costs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("callbridge.test.quiet")
    logger.setLevel(logging.INFO)

    class Explodes:
        def __str__(self) -> str:
            raise AssertionError("formatted although the level is off")

    log_event(logger, logging.DEBUG, "sip.recv", value=Explodes())
