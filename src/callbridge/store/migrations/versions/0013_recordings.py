"""Recordings: each call's recording (file, size, length), and a per line
choice, internal and external, of whether its calls are recorded (NULL:
the global CALLBRIDGE_RECORDING).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("internal_lines", "external_lines"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("recording", sa.Boolean(), nullable=True))
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("recording", sa.String(64), nullable=True))
        batch.add_column(sa.Column("recording_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("recording_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("recording_ms")
        batch.drop_column("recording_size")
        batch.drop_column("recording")
    for table in ("external_lines", "internal_lines"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("recording")
