"""shop: orders per household per redemption round (orders_per_round, 翁源)

Revision ID: 690503d45178
Revises: 12dc1d438b47
Create Date: 2026-11-23 02:08:41.873622+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "690503d45178"
down_revision: str | None = "12dc1d438b47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shop_round_use",
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("round_key", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.CheckConstraint("orders >= 0", name="orders_not_negative"),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.PrimaryKeyConstraint("household_id", "round_key"),
    )
    op.add_column(
        "shop_order",
        sa.Column("counts_round", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("shop_order", "counts_round")
    op.drop_table("shop_round_use")
