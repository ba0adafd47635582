"""The CRM: accounts, contacts, leads, their phone index and notes; calls
linked to a card; employees' telephony switch.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("website", sa.String(length=500), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["employees.id"],
            name=op.f("fk_accounts_owner_id_employees"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_accounts_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("position", sa.String(length=200), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_contacts_account_id_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["employees.id"],
            name=op.f("fk_contacts_owner_id_employees"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('new', 'working', 'qualified', 'lost')", name=op.f("ck_leads_status")
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_leads_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["employees.id"],
            name=op.f("fk_leads_owner_id_employees"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_leads_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_leads_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("e164", sa.String(length=16), nullable=True),
        sa.Column("tail", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "type IN ('mobile', 'work', 'home', 'fax', 'other')", name=op.f("ck_phones_type")
        ),
        sa.CheckConstraint(
            "(CASE WHEN contact_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN account_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN lead_id IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_phones_one_card"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_phones_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_phones_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_phones_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phones")),
    )
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phones_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_phones_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_phones_e164"), ["e164"], unique=False)
        batch_op.create_index(batch_op.f("ix_phones_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_phones_tail"), ["tail"], unique=False)

    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=32), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notes_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_notes_author_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_notes_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_notes_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_notes_lead_id_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notes_lead_id"), ["lead_id"], unique=False)

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_number", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("contact_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("lead_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("matches", sa.JSON(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_calls_employee_id"))
        batch_op.drop_index(batch_op.f("ix_calls_status"))
        batch_op.create_index("ix_calls_status_started", ["status", "started_at"], unique=False)
        batch_op.create_index(
            "ix_calls_account_started", ["account_id", "started_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_calls_client_number"), ["client_number"], unique=False)
        batch_op.create_index(
            "ix_calls_contact_started", ["contact_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_calls_employee_started", ["employee_id", "started_at"], unique=False
        )
        batch_op.create_index("ix_calls_lead_started", ["lead_id", "started_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_account_id_accounts"),
            "accounts",
            ["account_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_lead_id_leads"), "leads", ["lead_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_calls_contact_id_contacts"),
            "contacts",
            ["contact_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("telephony_enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("employees", schema=None) as batch_op:
        batch_op.drop_column("telephony_enabled")

    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_calls_contact_id_contacts"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_calls_lead_id_leads"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_calls_account_id_accounts"), type_="foreignkey")
        batch_op.drop_index("ix_calls_lead_started")
        batch_op.drop_index("ix_calls_employee_started")
        batch_op.drop_index("ix_calls_contact_started")
        batch_op.drop_index(batch_op.f("ix_calls_client_number"))
        batch_op.drop_index("ix_calls_account_started")
        batch_op.create_index(batch_op.f("ix_calls_employee_id"), ["employee_id"], unique=False)
        batch_op.drop_index("ix_calls_status_started")
        batch_op.create_index(batch_op.f("ix_calls_status"), ["status"], unique=False)
        batch_op.drop_column("matches")
        batch_op.drop_column("lead_id")
        batch_op.drop_column("account_id")
        batch_op.drop_column("contact_id")
        batch_op.drop_column("client_number")

    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notes_lead_id"))
        batch_op.drop_index(batch_op.f("ix_notes_contact_id"))
        batch_op.drop_index(batch_op.f("ix_notes_call_id"))
        batch_op.drop_index(batch_op.f("ix_notes_author_id"))
        batch_op.drop_index(batch_op.f("ix_notes_account_id"))

    op.drop_table("notes")
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phones_tail"))
        batch_op.drop_index(batch_op.f("ix_phones_lead_id"))
        batch_op.drop_index(batch_op.f("ix_phones_e164"))
        batch_op.drop_index(batch_op.f("ix_phones_contact_id"))
        batch_op.drop_index(batch_op.f("ix_phones_account_id"))

    op.drop_table("phones")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leads_owner_id"))
        batch_op.drop_index(batch_op.f("ix_leads_name"))
        batch_op.drop_index(batch_op.f("ix_leads_contact_id"))

    op.drop_table("leads")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_owner_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_name"))
        batch_op.drop_index(batch_op.f("ix_contacts_account_id"))

    op.drop_table("contacts")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_owner_id"))
        batch_op.drop_index(batch_op.f("ix_accounts_name"))

    op.drop_table("accounts")
