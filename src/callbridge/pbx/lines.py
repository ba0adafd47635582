"""The internal lines as the SIP side sees them: one immutable snapshot,
read without I/O on every request and swapped whole when the configuration
changes (calls in progress keep the snapshot they started with)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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
    # Its employee left: it neither registers, calls nor rings.
    disabled: bool = False
    # The digest algorithms its phones are offered, in order; None: the server's.
    digest_algorithms: tuple[str, ...] | None = None
    # Listen for DTMF tones in its phones' audio (for devices that send no
    # RFC 4733 events or INFO).
    inband_dtmf: bool = False
    # Whether its calls are recorded; None: as the global setting says.
    recording: bool | None = None


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

    def disabling(self, line_ids: Iterable[int]) -> Lines:
        """This snapshot with the lines `line_ids` disabled (a leaver's,
        effective at once rather than at the next apply)."""
        ids = set(line_ids)
        if not any(line.id in ids and not line.disabled for line in self.by_username.values()):
            return self
        return Lines.of(
            replace(line, disabled=True) if line.id in ids else line
            for line in self.by_username.values()
        )

    def ha1_of(self, username: str, algorithm: str) -> str | None:
        line = self.by_username.get(username)
        return None if line is None else line.ha1.get(algorithm)

    def digest_algorithms_of(self, user: str) -> tuple[str, ...] | None:
        """The algorithms of the line whose username or number is `user`;
        None for one that chose none, or no line (the server's apply)."""
        line = self.by_username.get(user) or self.by_number.get(user)
        return None if line is None else line.digest_algorithms

    def __len__(self) -> int:
        return len(self.by_username)


def lines_of(rows: Iterable[InternalLine]) -> Lines:
    """A snapshot of the internal lines `rows` hold."""
    return Lines.of(
        Line(
            number=row.number,
            username=row.username,
            # An empty HA1 is no password, not a password anyone can compute.
            ha1=MappingProxyType(
                {
                    algorithm: ha1
                    for algorithm, ha1 in (("MD5", row.ha1_md5), ("SHA-256", row.ha1_sha256))
                    if ha1
                }
            ),
            max_devices=row.max_devices,
            ring_timeout=row.ring_timeout,
            max_talk_duration=row.max_talk_duration,
            max_incoming_calls=row.max_incoming_calls,
            employee_id=row.employee_id,
            id=row.id,
            disabled=bool(row.telephony_disabled),
            digest_algorithms=_algorithms(row.digest_algorithms),
            inband_dtmf=bool(row.inband_dtmf),  # absent from versions before it
            recording=row.recording,
        )
        for row in rows
    )


def _algorithms(stored: str | None) -> tuple[str, ...] | None:
    # Stored normalized by the API ("SHA-256,MD5"); empty means none chosen.
    names = tuple(name for name in (stored or "").split(",") if name)
    return names or None


async def disabled_line_ids(session: AsyncSession) -> frozenset[int]:
    """The internal lines whose employee left, as the store has them now."""
    rows = await session.scalars(
        select(InternalLine.id).where(InternalLine.telephony_disabled.is_(True))
    )
    return frozenset(rows)
