"""points shop: shops, items, stock movements, orders, allowances, code uses, household cards;
attendant grants scoped to a shop; the ledger gives an order's points out and back once

Revision ID: 6e598caa941a
Revises: 211e0d3ec1a8
Create Date: 2026-11-22 22:16:25.525108+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "6e598caa941a"
down_revision: str | None = "211e0d3ec1a8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shop",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=True),
        sa.Column("served_village_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column(
            "created_at",
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
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_shop_town_id"), "shop", ["town_id"], unique=False)
    op.create_index(op.f("ix_shop_village_id"), "shop", ["village_id"], unique=False)
    op.create_table(
        "shop_item",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("photo_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("price_points", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("limit_per_period", sa.Integer(), nullable=True),
        sa.Column("min_period_score", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "limit_per_period IS NULL OR limit_per_period > 0", name="limit_positive"
        ),
        sa.CheckConstraint("price_points > 0", name="price_positive"),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shop.id"],
        ),
        sa.ForeignKeyConstraint(
            ["town_id"],
            ["town.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_shop_item_shop_id"), "shop_item", ["shop_id"], unique=False)
    op.create_index(op.f("ix_shop_item_town_id"), "shop_item", ["town_id"], unique=False)
    op.create_table(
        "household_card",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("issued_by", sa.Uuid(), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["issued_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["village.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_household_card_household_id"), "household_card", ["household_id"], unique=False
    )
    op.create_index(
        op.f("ix_household_card_village_id"), "household_card", ["village_id"], unique=False
    )
    op.create_index(
        "uq_household_card_current",
        "household_card",
        ["household_id"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "shop_allowance",
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("round_key", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["shop_item.id"],
        ),
        sa.PrimaryKeyConstraint("household_id", "item_id", "round_key"),
    )
    op.create_table(
        "shop_order",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("town_id", sa.Uuid(), nullable=False),
        sa.Column("village_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "ahead",
                "pay_code",
                "card",
                name="order_channel",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "reserved",
                "collected",
                "cancelled",
                "expired",
                "refunded",
                name="order_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("spends_balance", sa.Boolean(), nullable=False),
        sa.Column("round_key", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("identity_checked", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("collected_by", sa.Uuid(), nullable=True),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.Uuid(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.CheckConstraint(
            "channel <> 'card' OR identity_checked", name="card_needs_identity_check"
        ),
        sa.CheckConstraint("points >= 0", name="points_not_negative"),
        sa.ForeignKeyConstraint(
            ["closed_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["collected_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shop.id"],
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
    )
    op.create_index(
        "ix_shop_order_due",
        "shop_order",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index(
        op.f("ix_shop_order_household_id"), "shop_order", ["household_id"], unique=False
    )
    op.create_index(op.f("ix_shop_order_shop_id"), "shop_order", ["shop_id"], unique=False)
    op.create_index(op.f("ix_shop_order_village_id"), "shop_order", ["village_id"], unique=False)
    op.create_table(
        "stock_movement",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "restock",
                "correction",
                name="stock_change",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("stock_after", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["shop_item.id"],
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shop.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_stock_movement_item_id"), "stock_movement", ["item_id"], unique=False)
    op.create_table(
        "shop_code_use",
        sa.Column("nonce", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.Uuid(), nullable=False),
        sa.Column("household_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column(
            "used_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["household.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["shop_order.id"], deferrable=True, initially="DEFERRED"
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shop.id"],
        ),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "shop_order_line",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("item_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("unit_points", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["shop_item.id"],
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shop_order.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "item_id"),
    )
    op.create_index(
        op.f("ix_shop_order_line_item_id"), "shop_order_line", ["item_id"], unique=False
    )
    op.create_index(
        op.f("ix_shop_order_line_order_id"), "shop_order_line", ["order_id"], unique=False
    )
    op.create_index(
        "uq_ledger_entry_shop_order_redemption",
        "ledger_entry",
        ["source_id"],
        unique=True,
        postgresql_where=sa.text("source_type = 'shop_order' AND kind = 'redemption'"),
    )
    op.create_index(
        "uq_ledger_entry_shop_order_refund",
        "ledger_entry",
        ["source_id"],
        unique=True,
        postgresql_where=sa.text("source_type = 'shop_order' AND kind = 'refund'"),
    )
    op.add_column("role_grant", sa.Column("shop_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_role_grant_shop_id"), "role_grant", ["shop_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_role_grant_shop_id_shop"), "role_grant", "shop", ["shop_id"], ["id"]
    )
    op.create_check_constraint(
        op.f("ck_role_grant_shop_for_attendant"),
        "role_grant",
        "shop_id IS NULL OR role = 'shop_attendant'",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_role_grant_shop_for_attendant"), "role_grant", type_="check")
    op.drop_constraint(op.f("fk_role_grant_shop_id_shop"), "role_grant", type_="foreignkey")
    op.drop_index(op.f("ix_role_grant_shop_id"), table_name="role_grant")
    op.drop_column("role_grant", "shop_id")
    op.drop_index(
        "uq_ledger_entry_shop_order_refund",
        table_name="ledger_entry",
        postgresql_where=sa.text("source_type = 'shop_order' AND kind = 'refund'"),
    )
    op.drop_index(
        "uq_ledger_entry_shop_order_redemption",
        table_name="ledger_entry",
        postgresql_where=sa.text("source_type = 'shop_order' AND kind = 'redemption'"),
    )
    op.drop_index(op.f("ix_shop_order_line_order_id"), table_name="shop_order_line")
    op.drop_index(op.f("ix_shop_order_line_item_id"), table_name="shop_order_line")
    op.drop_table("shop_order_line")
    op.drop_table("shop_code_use")
    op.drop_index(op.f("ix_stock_movement_item_id"), table_name="stock_movement")
    op.drop_table("stock_movement")
    op.drop_index(op.f("ix_shop_order_village_id"), table_name="shop_order")
    op.drop_index(op.f("ix_shop_order_shop_id"), table_name="shop_order")
    op.drop_index(op.f("ix_shop_order_household_id"), table_name="shop_order")
    op.drop_index(
        "ix_shop_order_due",
        table_name="shop_order",
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.drop_table("shop_order")
    op.drop_table("shop_allowance")
    op.drop_index(
        "uq_household_card_current",
        table_name="household_card",
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.drop_index(op.f("ix_household_card_village_id"), table_name="household_card")
    op.drop_index(op.f("ix_household_card_household_id"), table_name="household_card")
    op.drop_table("household_card")
    op.drop_index(op.f("ix_shop_item_town_id"), table_name="shop_item")
    op.drop_index(op.f("ix_shop_item_shop_id"), table_name="shop_item")
    op.drop_table("shop_item")
    op.drop_index(op.f("ix_shop_village_id"), table_name="shop")
    op.drop_index(op.f("ix_shop_town_id"), table_name="shop")
    op.drop_table("shop")
