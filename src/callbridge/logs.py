"""Structured logging: one line per event, as text (logfmt) or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_FIELDS = "callbridge_fields"


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log `event` with key=value fields; free when the level is off."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS: fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, _FIELDS, {})
    return fields


def _logfmt_value(value: Any) -> str:
    text = str(value)
    # A value may be a peer's: a control character (an escape sequence, a
    # NUL, a byte that was not UTF-8) is written escaped, never raw.
    if not text or not text.isprintable() or any(c in text for c in ' "='):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """`2026-11-26T10:00:00.123Z DEBUG callbridge.transport sip.recv k=v ...`"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            record.levelname,
            record.name,
            record.getMessage(),
        ]
        parts.extend(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every start-up at info (plugins, dialect); only its
    # warnings matter unless we are debugging.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    # aiosqlite logs every statement with its parameters at debug level: they
    # hold trunk passwords and digest hashes, which no log may show.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
