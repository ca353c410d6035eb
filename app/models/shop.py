import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class Shop(SQLModel, table=True):
    """积分超市: a village's own shop, or a town's shop serving listed villages."""

    id: uuid.UUID = uuid_pk()
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    # The village that runs the shop; None for a town shop.
    village_id: uuid.UUID | None = Field(default=None, foreign_key="village.id", index=True)
    # Villages whose households may redeem here (a village shop lists its own village).
    served_village_ids: list[uuid.UUID] = Field(
        sa_column=sa.Column(ARRAY(sa.Uuid()), nullable=False)
    )
    name: str = Field(max_length=100)
    created_at: datetime = created_at_field()


class ShopItem(SQLModel, table=True):
    __tablename__ = "shop_item"
    __table_args__ = (
        # The database itself refuses overselling, whatever the application does.
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
        sa.CheckConstraint("price_points > 0", name="price_positive"),
        sa.CheckConstraint(
            "limit_per_period IS NULL OR limit_per_period > 0", name="limit_positive"
        ),
    )

    id: uuid.UUID = uuid_pk()
    shop_id: uuid.UUID = Field(foreign_key="shop.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    name: str = Field(max_length=100)
    category: str = Field(max_length=20)
    photo_url: str | None = Field(default=None, max_length=500)
    price_points: int
    # None: a service, never out of stock.
    stock: int | None = None
    active: bool = True
    limit_per_period: int | None = None
    # The least latest-period score a household needs (a tier's floor in 翁源).
    min_period_score: int | None = None
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()


class StockChange(StrEnum):
    RESTOCK = "restock"
    CORRECTION = "correction"


class StockMovement(SQLModel, table=True):
    """Restocking, stock corrections and goods a refund put back (a restock naming the order),
    with who and why; orders move stock through orders."""

    __tablename__ = "stock_movement"

    id: uuid.UUID = uuid_pk()
    item_id: uuid.UUID = Field(foreign_key="shop_item.id", index=True)
    shop_id: uuid.UUID = Field(foreign_key="shop.id")
    kind: StockChange = enum_field(StockChange, "stock_change")
    delta: int
    stock_after: int
    reason: str = Field(max_length=200)
    actor_id: uuid.UUID = Field(foreign_key="person.id")
    created_at: datetime = created_at_field()


class OrderChannel(StrEnum):
    AHEAD = "ahead"  # ordered on the phone, collected with the pickup code
    PAY_CODE = "pay_code"  # the household's rotating code scanned at the counter
    CARD = "card"  # the printed household card, identity checked by the attendant


class OrderStatus(StrEnum):
    RESERVED = "reserved"
    COLLECTED = "collected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"


class ShopOrder(SQLModel, table=True):
    __tablename__ = "shop_order"
    __table_args__ = (
        sa.CheckConstraint("points >= 0", name="points_not_negative"),
        sa.CheckConstraint(
            "channel <> 'card' OR identity_checked", name="card_needs_identity_check"
        ),
        sa.Index(
            "ix_shop_order_due",
            "expires_at",
            postgresql_where=sa.text("status = 'reserved'"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    shop_id: uuid.UUID = Field(foreign_key="shop.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id")
    # The household's village: its chain and summaries are the ones that move.
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    channel: OrderChannel = enum_field(OrderChannel, "order_channel")
    status: OrderStatus = enum_field(OrderStatus, "order_status")
    points: int
    # Whether the points left the balance (False where goods go by tier, 翁源).
    spends_balance: bool
    # The redemption round the per-household limits count in (2026-11, or 2026-P4).
    round_key: str = Field(max_length=10)
    identity_checked: bool = False
    expires_at: datetime | None = timestamp_field()
    created_by: uuid.UUID = Field(foreign_key="person.id")
    created_at: datetime = created_at_field()
    collected_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    collected_at: datetime | None = timestamp_field()
    closed_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    closed_at: datetime | None = timestamp_field()
    close_reason: str = Field(default="", max_length=200)
    # When the order_expiring reminder was queued: set by the one job run that queues it.
    reminded_at: datetime | None = timestamp_field()
    # Whether the order took one of the household's orders_per_round, to give back once.
    counts_round: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class ShopOrderLine(SQLModel, table=True):
    __tablename__ = "shop_order_line"
    __table_args__ = (
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.UniqueConstraint("order_id", "item_id"),
    )

    id: uuid.UUID = uuid_pk()
    order_id: uuid.UUID = Field(foreign_key="shop_order.id", index=True)
    item_id: uuid.UUID = Field(foreign_key="shop_item.id", index=True)
    # As it was: renaming or repricing an item never rewrites an order.
    item_name: str = Field(max_length=100)
    unit_points: int
    quantity: int


class ShopAllowance(SQLModel, table=True):
    """How many of an item a household has taken in a redemption round; the limit is checked in
    the same conditional UPDATE that counts, so two orders racing for the last allowance cannot
    both pass."""

    __tablename__ = "shop_allowance"
    __table_args__ = (sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),)

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    item_id: uuid.UUID = Field(foreign_key="shop_item.id", primary_key=True)
    round_key: str = Field(max_length=10, primary_key=True)
    quantity: int


class ShopRoundUse(SQLModel, table=True):
    """How many orders a household has taken in a redemption round, where the policy limits
    them (orders_per_round); counted and checked in one conditional upsert, like allowances."""

    __tablename__ = "shop_round_use"
    __table_args__ = (sa.CheckConstraint("orders >= 0", name="orders_not_negative"),)

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    round_key: str = Field(max_length=10, primary_key=True)
    orders: int


class ShopCodeUse(SQLModel, table=True):
    """Each pay code's nonce, once: the primary key makes a replay fail however concurrent."""

    __tablename__ = "shop_code_use"

    nonce: uuid.UUID = Field(primary_key=True)
    shop_id: uuid.UUID = Field(foreign_key="shop.id")
    household_id: uuid.UUID = Field(foreign_key="household.id")
    # Deferred: the nonce is claimed first, so racing scans of one code stop before any work.
    order_id: uuid.UUID = Field(
        sa_column=sa.Column(
            sa.Uuid(),
            sa.ForeignKey("shop_order.id", deferrable=True, initially="DEFERRED"),
            nullable=False,
        )
    )
    used_at: datetime = created_at_field()


class HouseholdCard(SQLModel, table=True):
    """A printed card for members without a smartphone; revoking it voids its code."""

    __tablename__ = "household_card"
    __table_args__ = (
        sa.Index(
            "uq_household_card_current",
            "household_id",
            unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    issued_by: uuid.UUID = Field(foreign_key="person.id")
    issued_at: datetime = created_at_field()
    revoked_at: datetime | None = timestamp_field()
    revoked_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
