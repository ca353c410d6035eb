"""ledger: a shop order spends and gives back once per year it draws from

Revision ID: 3f1c2a9b7d10
Revises: 91939e11643f
Create Date: 2026-12-02 05:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f1c2a9b7d10"
down_revision: str | None = "91939e11643f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("redemption", "refund")


def _index(kind: str, columns: list[str]) -> None:
    op.create_index(
        f"uq_ledger_entry_shop_order_{kind}",
        "ledger_entry",
        columns,
        unique=True,
        postgresql_where=sa.text(f"source_type = 'shop_order' AND kind = '{kind}'"),
    )


def upgrade() -> None:
    for kind in KINDS:
        op.drop_index(f"uq_ledger_entry_shop_order_{kind}", table_name="ledger_entry")
        _index(kind, ["source_id", "year"])


def downgrade() -> None:
    for kind in KINDS:
        op.drop_index(f"uq_ledger_entry_shop_order_{kind}", table_name="ledger_entry")
        _index(kind, ["source_id"])
