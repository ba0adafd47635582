"""What in a server's log counts as a fuzzer's finding: a traceback, a line
logged at ERROR or CRITICAL (asyncio's exception handler logs an exception
that escaped a protocol callback or a task that way), or the parser failing
with something other than a ParseError (the transport turns that into a 400
and logs `sip.parser_failed` at debug: a bug all the same)."""

from __future__ import annotations

import re

_FINDING = re.compile(
    r"Traceback \(most recent call last\)"
    r"|^\S+ (?:ERROR|CRITICAL) "
    r"|\bsip\.parser_failed\b"
    r"|Exception in callback"
    r"|exception was never retrieved",
    re.MULTILINE,
)
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT")


def findings(log: str) -> list[str]:
    """Each finding in `log` with what follows it up to the next log record
    (its whole traceback, however deep)."""
    lines = log.splitlines()
    out = []
    index = 0
    while index < len(lines):
        if not _FINDING.search(lines[index]):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _RECORD_START.match(lines[end]):
            end += 1
        out.append("\n".join(lines[index:end]))
        index = end
    return out
