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


def findings(log: str, *, context: int = 30) -> list[str]:
    """Each finding in `log` with the lines that follow it (its traceback)."""
    lines = log.splitlines()
    out = []
    shown_to = 0  # a traceback under an ERROR line is part of that finding
    for index, line in enumerate(lines):
        if index >= shown_to and _FINDING.search(line):
            out.append("\n".join(lines[index : index + context]))
            shown_to = index + context
    return out
