"""rankings: ranks stored at publication, town summaries, year-end award lists, and the
award_published notification kind

Revision ID: 005e29c3bc4e
Revises: 690503d45178
Create Date: 2026-12-02 05:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "005e29c3bc4e"
down_revision: str | None = "690503d45178"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = (
    "claim_decided",
    "period_published",
    "objection_ruled",
    "order_expiring",
    "award_published",
)


def upgrade() -> None:
    op.create_table(
        "ranking_summary",
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column(
            "span",
            sa.Enum(
                "month",
                "quarter",
                "year",
                name="rank_span",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("ranks_by_group", sa.Boolean(), nullable=False),
        sa.Column("lists_vetoed", sa.Boolean(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("participating", sa.Integer(), nullable=False),
        sa.Column("ranked", sa.Integer(), nullable=False),
        sa.Column("vetoed", sa.Integer(), nullable=False),
        sa.Column("average", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("median", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("top_score", sa.Integer(), nullable=True),
        sa.Column(
            "refreshed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["town_id"],
            ["town.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("village_id", "year", "span", "number"),
    )
    op.create_index(
        "ix_ranking_summary_town",
        "ranking_summary",
        ["town_id", "year", "span", "number"],
        unique=False,
    )
    op.create_table(
        "award_list",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "approved",
                "published",
                name="award_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("computed_by", sa.Uuid(), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", sa.Uuid(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["approved_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["computed_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["published_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["town_id"],
            ["town.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("village_id", "year"),
    )
    op.create_index(op.f("ix_award_list_village_id"), "award_list", ["village_id"], unique=False)
    op.create_table(
        "award_entry",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("award_list_id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("village_group_id", sa.Uuid(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("level_name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["award_list_id"], ["award_list.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_group_id"],
            ["village_group.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("award_list_id", "household_id"),
    )
    op.create_index(
        op.f("ix_award_entry_household_id"), "award_entry", ["household_id"], unique=False
    )
    op.create_table(
        "award_scope_count",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("award_list_id", sa.Uuid(), nullable=False),
        sa.Column("village_group_id", sa.Uuid(), nullable=True),
        sa.Column("eligible", sa.Integer(), nullable=False),
        sa.Column("places_exact", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("level_places", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("level_awarded", sa.ARRAY(sa.Integer()), nullable=False),
        sa.ForeignKeyConstraint(["award_list_id"], ["award_list.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["village_group_id"],
            ["village_group.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_award_scope_count_award_list_id"),
        "award_scope_count",
        ["award_list_id"],
        unique=False,
    )
    op.create_table(
        "household_rank",
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column(
            "span",
            sa.Enum(
                "month",
                "quarter",
                "year",
                name="rank_span",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("village_group_id", sa.Uuid(), nullable=True),
        sa.Column("household_number", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("vetoed", sa.Boolean(), nullable=False),
        sa.Column("village_rank", sa.Integer(), nullable=True),
        sa.Column("group_rank", sa.Integer(), nullable=True),
        sa.Column("village_position", sa.Integer(), nullable=False),
        sa.Column("group_position", sa.Integer(), nullable=False),
        sa.Column("board_position", sa.Integer(), nullable=False),
        sa.Column("village_ranked", sa.Integer(), nullable=False),
        sa.Column("group_ranked", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_group_id"],
            ["village_group.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("household_id", "year", "span", "number"),
    )
    op.create_index(
        "ix_household_rank_group_list",
        "household_rank",
        ["village_id", "year", "span", "number", "village_group_id", "group_position"],
        unique=False,
    )
    op.create_index(
        "ix_household_rank_village_list",
        "household_rank",
        ["village_id", "year", "span", "number", "village_position"],
        unique=True,
    )
    op.create_index(
        "ix_household_rank_board",
        "household_rank",
        ["village_id", "year", "span", "number", "board_position"],
        unique=True,
    )
    op.create_index(
        "ix_household_period_score_period",
        "household_period_score",
        ["period_id", "score"],
        unique=False,
    )
    op.drop_constraint(op.f("ck_notification_notification_kind"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_notification_kind"),
        "notification",
        "kind IN (" + ", ".join(f"'{k}'" for k in KINDS) + ")",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_notification_notification_kind"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_notification_kind"),
        "notification",
        "kind IN (" + ", ".join(f"'{k}'" for k in KINDS[:-1]) + ")",
    )
    op.drop_index("ix_household_period_score_period", table_name="household_period_score")
    op.drop_index("ix_household_rank_board", table_name="household_rank")
    op.drop_index("ix_household_rank_village_list", table_name="household_rank")
    op.drop_index("ix_household_rank_group_list", table_name="household_rank")
    op.drop_table("household_rank")
    op.drop_index(op.f("ix_award_scope_count_award_list_id"), table_name="award_scope_count")
    op.drop_table("award_scope_count")
    op.drop_index(op.f("ix_award_entry_household_id"), table_name="award_entry")
    op.drop_table("award_entry")
    op.drop_index(op.f("ix_award_list_village_id"), table_name="award_list")
    op.drop_table("award_list")
    op.drop_index("ix_ranking_summary_town", table_name="ranking_summary")
    op.drop_table("ranking_summary")
