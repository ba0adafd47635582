"""The error a caller of `media/` can act on."""

from __future__ import annotations


class MediaError(Exception):
    """A media request that cannot be met (no ports, a leg of another session,
    a closed session, an address that is not an IP literal)."""
