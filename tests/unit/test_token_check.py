"""When an open event socket looks its token up again (fake clock)."""

from __future__ import annotations

from callbridge.api.events import FULL_RECHECK, RECHECK_AFTER_REVOCATION, TokenCheck


def test_no_lookup_while_nothing_was_revoked_until_the_full_recheck() -> None:
    check = TokenCheck(generation=3, looked_up_at=100.0)
    assert not any(check.due(3, 100.0 + s) for s in range(1, int(FULL_RECHECK)))
    assert check.due(3, 100.0 + FULL_RECHECK)


def test_a_revocation_makes_every_tick_look_up_for_a_few_seconds() -> None:
    check = TokenCheck(generation=3, looked_up_at=100.0)
    assert check.due(4, 101.0)
    # The revoking request may commit a moment later: keep looking.
    assert check.due(4, 101.0 + RECHECK_AFTER_REVOCATION - 0.5)
    assert not check.due(4, 101.0 + RECHECK_AFTER_REVOCATION + 0.5)
