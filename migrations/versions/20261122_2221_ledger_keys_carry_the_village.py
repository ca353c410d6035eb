"""ledger keys carry the village: household and period keys include village_id

Revision ID: 528e2efbc043
Revises: 160b70910c0d
Create Date: 2026-11-22 22:21:15.718423+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "528e2efbc043"
down_revision: str | None = "160b70910c0d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_unique_constraint("uq_household_id_village_id", "household", ["id", "village_id"])
    op.create_unique_constraint(
        "uq_scoring_period_id_village_id", "scoring_period", ["id", "village_id"]
    )
    op.drop_constraint("fk_ledger_entry_village_id_village", "ledger_entry", type_="foreignkey")
    op.drop_constraint("fk_ledger_entry_household_id_household", "ledger_entry", type_="foreignkey")
    op.drop_constraint(
        "fk_ledger_entry_period_id_scoring_period", "ledger_entry", type_="foreignkey"
    )
    op.create_foreign_key(
        "fk_ledger_entry_household_id_household",
        "ledger_entry",
        "household",
        ["household_id", "village_id"],
        ["id", "village_id"],
    )
    op.create_foreign_key(
        "fk_ledger_entry_period_id_scoring_period",
        "ledger_entry",
        "scoring_period",
        ["period_id", "village_id"],
        ["id", "village_id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "fk_ledger_entry_period_id_scoring_period", "ledger_entry", type_="foreignkey"
    )
    op.drop_constraint("fk_ledger_entry_household_id_household", "ledger_entry", type_="foreignkey")
    op.create_foreign_key(
        "fk_ledger_entry_period_id_scoring_period",
        "ledger_entry",
        "scoring_period",
        ["period_id"],
        ["id"],
    )
    op.create_foreign_key(
        "fk_ledger_entry_household_id_household",
        "ledger_entry",
        "household",
        ["household_id"],
        ["id"],
    )
    op.create_foreign_key(
        "fk_ledger_entry_village_id_village", "ledger_entry", "village", ["village_id"], ["id"]
    )
    op.drop_constraint("uq_scoring_period_id_village_id", "scoring_period", type_="unique")
    op.drop_constraint("uq_household_id_village_id", "household", type_="unique")
