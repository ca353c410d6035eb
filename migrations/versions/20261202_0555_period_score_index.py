"""indexes: a period's scores, best first (the publication list and rank reads)

Revision ID: 5f0c2a9e7d41
Revises: 690503d45178
Create Date: 2026-12-02 05:55:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5f0c2a9e7d41"
down_revision: str | None = "690503d45178"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_household_period_score_period_id_score",
        "household_period_score",
        ["period_id", "score"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_household_period_score_period_id_score", table_name="household_period_score")
