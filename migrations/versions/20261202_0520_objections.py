"""objections (异议): filed by a household, ruled by the village, escalated to the town;
photos attach to an objection as to a claim

Revision ID: 91939e11643f
Revises: 005e29c3bc4e
Create Date: 2026-12-02 04:23:58.424725+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "91939e11643f"
down_revision: str | None = "005e29c3bc4e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "objection",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("period_id", sa.Uuid(), nullable=False),
        sa.Column("ledger_entry_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "upheld",
                "dismissed",
                "escalated",
                name="objection_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("filed_by", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ruled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ruled_by", sa.Uuid(), nullable=True),
        sa.Column("ruling_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("escalation_closes_on", sa.Date(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_by", sa.Uuid(), nullable=True),
        sa.Column(
            "escalation_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True
        ),
        sa.Column("town_ruled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("town_ruled_by", sa.Uuid(), nullable=True),
        sa.Column(
            "town_ruling_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True
        ),
        sa.Column("score_before", sa.Integer(), nullable=True),
        sa.Column("score_after", sa.Integer(), nullable=True),
        sa.Column("vetoed_before", sa.Boolean(), nullable=True),
        sa.Column("vetoed_after", sa.Boolean(), nullable=True),
        sa.Column("amended_lines", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("upheld_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("(status = 'open') = (ruled_at IS NULL)", name="ruled_unless_open"),
        sa.CheckConstraint(
            "escalated_at IS NULL OR ruled_at IS NOT NULL", name="escalated_after_ruling"
        ),
        sa.CheckConstraint(
            "town_ruled_at IS NULL OR escalated_at IS NOT NULL", name="town_rules_escalations"
        ),
        sa.ForeignKeyConstraint(
            ["escalated_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["filed_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["scoring_period.id"],
        ),
        sa.ForeignKeyConstraint(
            ["ruled_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["town_id"],
            ["town.id"],
        ),
        sa.ForeignKeyConstraint(
            ["town_ruled_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_objection_household_id"), "objection", ["household_id"], unique=False)
    op.create_index(op.f("ix_objection_period_id"), "objection", ["period_id"], unique=False)
    op.create_index(
        "ix_objection_town_status_escalated",
        "objection",
        ["town_id", "status", "escalated_at"],
        unique=False,
    )
    op.create_index(
        "ix_objection_village_status_created",
        "objection",
        ["village_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_objection_live_entry",
        "objection",
        ["ledger_entry_id"],
        unique=True,
        postgresql_where=sa.text("ledger_entry_id IS NOT NULL AND status IN ('open', 'escalated')"),
    )
    op.create_index(
        "uq_objection_live_period_score",
        "objection",
        ["household_id", "period_id"],
        unique=True,
        postgresql_where=sa.text("ledger_entry_id IS NULL AND status IN ('open', 'escalated')"),
    )
    op.add_column("photo", sa.Column("objection_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_photo_objection_id"), "photo", ["objection_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_photo_objection_id_objection"), "photo", "objection", ["objection_id"], ["id"]
    )
    op.create_check_constraint(
        "attached_to_one_thing", "photo", "claim_id IS NULL OR objection_id IS NULL"
    )


def downgrade() -> None:
    op.drop_constraint("attached_to_one_thing", "photo", type_="check")
    op.drop_constraint(op.f("fk_photo_objection_id_objection"), "photo", type_="foreignkey")
    op.drop_index(op.f("ix_photo_objection_id"), table_name="photo")
    op.drop_column("photo", "objection_id")
    op.drop_index(
        "uq_objection_live_period_score",
        table_name="objection",
        postgresql_where=sa.text("ledger_entry_id IS NULL AND status IN ('open', 'escalated')"),
    )
    op.drop_index(
        "uq_objection_live_entry",
        table_name="objection",
        postgresql_where=sa.text("ledger_entry_id IS NOT NULL AND status IN ('open', 'escalated')"),
    )
    op.drop_index("ix_objection_village_status_created", table_name="objection")
    op.drop_index("ix_objection_town_status_escalated", table_name="objection")
    op.drop_index(op.f("ix_objection_period_id"), table_name="objection")
    op.drop_index(op.f("ix_objection_household_id"), table_name="objection")
    op.drop_table("objection")
