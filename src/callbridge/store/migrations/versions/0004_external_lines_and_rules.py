"""External lines, routing rules and normalization rules, and the default
incoming rule (its internal line not set yet: an admin sets it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "external_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("server", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("register", sa.Boolean(), nullable=False),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("password", sa.String(length=128), nullable=False),
        sa.Column("total_lines", sa.Integer(), nullable=False),
        sa.Column("outgoing_lines", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("alt_addresses", sa.JSON(), nullable=False),
        sa.Column("default_region", sa.String(length=2), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("transport IN ('udp', 'tcp')", name=op.f("ck_external_lines_transport")),
        sa.CheckConstraint("total_lines >= 1", name=op.f("ck_external_lines_total_lines")),
        sa.CheckConstraint(
            "outgoing_lines >= 0 AND outgoing_lines <= total_lines",
            name=op.f("ck_external_lines_outgoing_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_lines")),
        sa.UniqueConstraint("code", name=op.f("uq_external_lines_code")),
    )
    routing_rules = op.create_table(
        "routing_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("external_line_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("action_type", sa.String(length=16), nullable=False),
        sa.Column("action_target", sa.String(length=64), nullable=True),
        sa.Column("source_mask", sa.String(length=64), nullable=False),
        sa.Column("destination_mask", sa.String(length=64), nullable=False),
        sa.Column("destination_rewrite", sa.String(length=128), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "direction IN ('incoming', 'outgoing')", name=op.f("ck_routing_rules_direction")
        ),
        sa.CheckConstraint(
            "action_type IN ('internal_line', 'external_line', 'ivr', 'deny')",
            name=op.f("ck_routing_rules_action_type"),
        ),
        sa.CheckConstraint("priority >= 0", name=op.f("ck_routing_rules_priority")),
        sa.ForeignKeyConstraint(
            ["external_line_id"],
            ["external_lines.id"],
            name=op.f("fk_routing_rules_external_line_id_external_lines"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    op.create_index(
        op.f("ix_routing_rules_external_line_id"),
        "routing_rules",
        ["external_line_id"],
        unique=False,
    )
    op.create_table(
        "normalization_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("external_line_id", sa.Integer(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("match", sa.String(length=500), nullable=True),
        sa.Column("replacement", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "direction IN ('incoming', 'outgoing')",
            name=op.f("ck_normalization_rules_direction"),
        ),
        sa.CheckConstraint(
            "method IN ('pattern', 'e164', 'e164_digits', 'national')",
            name=op.f("ck_normalization_rules_method"),
        ),
        sa.CheckConstraint("priority >= 0", name=op.f("ck_normalization_rules_priority")),
        sa.ForeignKeyConstraint(
            ["external_line_id"],
            ["external_lines.id"],
            name=op.f("fk_normalization_rules_external_line_id_external_lines"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_normalization_rules")),
    )
    op.create_index(
        op.f("ix_normalization_rules_external_line_id"),
        "normalization_rules",
        ["external_line_id"],
        unique=False,
    )
    # The fallback for incoming calls, from the first start. Its target (the
    # internal line it sends calls to) is NULL, "not set yet", until an admin
    # sets it; until then the calls it catches are answered 480.
    now = datetime.now(UTC)
    op.bulk_insert(
        routing_rules,
        [
            {
                "name": "Default incoming",
                "direction": "incoming",
                "external_line_id": None,
                "priority": 1_000_000,
                "action_type": "internal_line",
                "action_target": None,
                "source_mask": "*",
                "destination_mask": "*",
                "destination_rewrite": None,
                "is_default": True,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_normalization_rules_external_line_id"), table_name="normalization_rules")
    op.drop_table("normalization_rules")
    op.drop_index(op.f("ix_routing_rules_external_line_id"), table_name="routing_rules")
    op.drop_table("routing_rules")
    op.drop_table("external_lines")
