"""shop orders remember when their order_expiring reminder was queued

Revision ID: 12dc1d438b47
Revises: 6e598caa941a
Create Date: 2026-11-22 23:25:13.614505+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "12dc1d438b47"
down_revision: str | None = "6e598caa941a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shop_order", sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("shop_order", "reminded_at")
