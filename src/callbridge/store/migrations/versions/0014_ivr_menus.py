"""IVR menus: a greeting (an uploaded file or text to speak), the digits'
destinations, what a timeout and a wrong digit do, and how often the
greeting repeats. Staged and versioned with the lines and rules.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_menus",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("greeting_kind", sa.String(length=8), nullable=False),
        sa.Column("greeting_text", sa.String(length=1000), nullable=True),
        sa.Column("greeting_file", sa.String(length=64), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("dial_by_extension", sa.Boolean(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("on_timeout", sa.JSON(), nullable=False),
        sa.Column("on_invalid", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "greeting_kind IN ('audio', 'text')", name=op.f("ck_ivr_menus_greeting_kind")
        ),
        sa.CheckConstraint(
            "timeout_seconds >= 1 AND timeout_seconds <= 60",
            name=op.f("ck_ivr_menus_timeout_seconds"),
        ),
        sa.CheckConstraint("repeats >= 0 AND repeats <= 5", name=op.f("ck_ivr_menus_repeats")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_menus")),
    )


def downgrade() -> None:
    op.drop_table("ivr_menus")
