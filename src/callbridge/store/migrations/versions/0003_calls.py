"""Call records: one row per call, answered or not, started when the call starts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=False),
        sa.Column("callee_number", sa.String(length=32), nullable=False),
        sa.Column("caller_raw", sa.String(length=255), nullable=True),
        sa.Column("callee_raw", sa.String(length=255), nullable=True),
        sa.Column("internal_line_id", sa.Integer(), nullable=True),
        sa.Column("employee_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hangup_side", sa.String(length=8), nullable=True),
        sa.Column("hangup_cause", sa.String(length=128), nullable=True),
        sa.Column("sip_call_id", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "direction IN ('internal', 'incoming', 'outgoing')", name=op.f("ck_calls_direction")
        ),
        sa.CheckConstraint(
            "status IN ('in_progress', 'answered', 'missed', 'busy', 'rejected', 'failed', "
            "'cancelled')",
            name=op.f("ck_calls_status"),
        ),
        sa.CheckConstraint(
            "hangup_side IN ('caller', 'callee', 'system')", name=op.f("ck_calls_hangup_side")
        ),
        sa.ForeignKeyConstraint(
            ["employee_id"],
            ["employees.id"],
            name=op.f("fk_calls_employee_id_employees"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["internal_line_id"],
            ["internal_lines.id"],
            name=op.f("fk_calls_internal_line_id_internal_lines"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_employee_id"), "calls", ["employee_id"], unique=False)
    op.create_index(op.f("ix_calls_internal_line_id"), "calls", ["internal_line_id"], unique=False)
    op.create_index(op.f("ix_calls_sip_call_id"), "calls", ["sip_call_id"], unique=False)
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"], unique=False)
    op.create_index(op.f("ix_calls_status"), "calls", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_calls_status"), table_name="calls")
    op.drop_index(op.f("ix_calls_started_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_sip_call_id"), table_name="calls")
    op.drop_index(op.f("ix_calls_internal_line_id"), table_name="calls")
    op.drop_index(op.f("ix_calls_employee_id"), table_name="calls")
    op.drop_table("calls")
