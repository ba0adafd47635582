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


# Findings another change of issue 11 fixes; until it lands they are printed,
# not failed. Each names what it is so that nothing else hides behind it.
KNOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"calls\.write_failed[\s\S]*UnicodeEncodeError: .* surrogates not allowed"),
        "a Call-ID with bytes that are not UTF-8 reaches the call records and the "
        "writer retries the batch for ever (the wire change checks Call-IDs and sets "
        "refused rows aside)",
    ),
)


def known(finding: str) -> str | None:
    """Why `finding` is left to another change, or None if it is not."""
    for pattern, reason in KNOWN:
        if pattern.search(finding):
            return reason
    return None


def new_findings(log: str) -> list[str]:
    """The findings of `log` that no other change is known to fix."""
    return [finding for finding in findings(log) if known(finding) is None]
