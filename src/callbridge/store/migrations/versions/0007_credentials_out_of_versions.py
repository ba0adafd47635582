"""Credentials out of configuration versions (a rollback no longer brings a
rotated password back); internal lines disabled when their employee leaves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What versions stored before this revision and must not keep (pbx/config.py
# keeps the same list for new versions).
_CREDENTIALS = {
    "internal_lines": ("ha1_md5", "ha1_sha256"),
    "external_lines": ("password",),
}

_versions = sa.table(
    "config_versions", sa.column("id", sa.Integer()), sa.column("snapshot", sa.JSON())
)


def upgrade() -> None:
    with op.batch_alter_table("internal_lines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("telephony_disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    connection = op.get_bind()
    for version_id, snapshot in connection.execute(sa.select(_versions.c.id, _versions.c.snapshot)):
        scrubbed = _scrubbed(snapshot)
        if scrubbed != snapshot:
            connection.execute(
                _versions.update().where(_versions.c.id == version_id).values(snapshot=scrubbed)
            )


def _scrubbed(snapshot: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    return {
        table: [
            {key: value for key, value in row.items() if key not in _CREDENTIALS.get(table, ())}
            for row in rows
        ]
        if isinstance(rows, list)
        else rows
        for table, rows in snapshot.items()
    }


def downgrade() -> None:
    # The scrubbed credentials are gone for good; only the column goes back.
    with op.batch_alter_table("internal_lines", schema=None) as batch_op:
        batch_op.drop_column("telephony_disabled")
