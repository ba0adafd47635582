"""The internal lines as the SIP side sees them: one immutable snapshot,
read without I/O on every request and swapped whole when the configuration
changes (calls in progress keep the snapshot they started with)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..store.models import InternalLine


@dataclass(frozen=True, slots=True)
class Line:
    """An employee's extension: its number, its SIP account and its limits.

    `ha1` maps a digest algorithm ("MD5", "SHA-256") to the stored
    H(username:realm:password); the password itself is never kept.
    """

    number: str
    username: str
    ha1: Mapping[str, str]
    max_devices: int = 1
    ring_timeout: int = 30
    max_talk_duration: int = 0
    max_incoming_calls: int = 1
    employee_id: int | None = None
    id: int | None = None  # the line's row in the store


@dataclass(frozen=True, slots=True)
class Lines:
    """All internal lines, by SIP username and by number."""

    by_username: Mapping[str, Line] = field(default_factory=dict)
    by_number: Mapping[str, Line] = field(default_factory=dict)

    @classmethod
    def of(cls, lines: Iterable[Line]) -> Lines:
        listed = list(lines)
        return cls(
            MappingProxyType({line.username: line for line in listed}),
            MappingProxyType({line.number: line for line in listed}),
        )

    def ha1_of(self, username: str, algorithm: str) -> str | None:
        line = self.by_username.get(username)
        return None if line is None else line.ha1.get(algorithm)

    def __len__(self) -> int:
        return len(self.by_username)


def lines_of(rows: Iterable[InternalLine]) -> Lines:
    """A snapshot of the internal lines `rows` hold."""
    return Lines.of(
        Line(
            number=row.number,
            username=row.username,
            ha1=MappingProxyType({"MD5": row.ha1_md5, "SHA-256": row.ha1_sha256}),
            max_devices=row.max_devices,
            ring_timeout=row.ring_timeout,
            max_talk_duration=row.max_talk_duration,
            max_incoming_calls=row.max_incoming_calls,
            employee_id=row.employee_id,
            id=row.id,
        )
        for row in rows
    )
