"""photo: scorecard evidence is attached to its card, so the unattached-upload cleanup keeps it

Revision ID: 8b2e4d6f0a13
Revises: 3f1c2a9b7d10
Create Date: 2026-12-02 05:10:30+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8b2e4d6f0a13"
down_revision: str | None = "3f1c2a9b7d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNATTACHED = "claim_id IS NULL AND objection_id IS NULL AND scorecard_id IS NULL"


def upgrade() -> None:
    op.add_column("photo", sa.Column("scorecard_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_photo_scorecard_id_scorecard"), "photo", "scorecard", ["scorecard_id"], ["id"]
    )
    op.create_index(op.f("ix_photo_scorecard_id"), "photo", ["scorecard_id"], unique=False)
    # A photo is evidence of one thing: a claim, an objection or a card.
    op.drop_constraint(op.f("ck_photo_attached_to_one_thing"), "photo", type_="check")
    op.create_check_constraint(
        op.f("ck_photo_attached_to_one_thing"),
        "photo",
        "num_nonnulls(claim_id, objection_id, scorecard_id) <= 1",
    )
    op.drop_index("ix_photo_unattached_created_at", table_name="photo")
    op.create_index(
        "ix_photo_unattached_created_at",
        "photo",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text(UNATTACHED),
    )


def downgrade() -> None:
    op.drop_index("ix_photo_unattached_created_at", table_name="photo")
    op.create_index(
        "ix_photo_unattached_created_at",
        "photo",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("claim_id IS NULL"),
    )
    op.drop_constraint(op.f("ck_photo_attached_to_one_thing"), "photo", type_="check")
    op.create_check_constraint(
        op.f("ck_photo_attached_to_one_thing"), "photo", "claim_id IS NULL OR objection_id IS NULL"
    )
    op.drop_index(op.f("ix_photo_scorecard_id"), table_name="photo")
    op.drop_constraint(op.f("fk_photo_scorecard_id_scorecard"), "photo", type_="foreignkey")
    op.drop_column("photo", "scorecard_id")
