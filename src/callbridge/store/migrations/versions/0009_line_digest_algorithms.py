"""Internal lines: the digest algorithms their phones are offered, in order
(NULL: the global setting).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("internal_lines") as batch:
        batch.add_column(sa.Column("digest_algorithms", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("internal_lines") as batch:
        batch.drop_column("digest_algorithms")
