import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models import OrderChannel, OrderStatus, StockChange

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShopCreate(Strict):
    name: Name


class TownShopCreate(Strict):
    name: Name
    # The villages of the town whose households redeem here.
    village_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class ShopRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    town_id: uuid.UUID
    village_id: uuid.UUID | None
    served_village_ids: list[uuid.UUID]
    name: str


class ShopItemCreate(Strict):
    name: Name
    category: Category
    photo_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    price_points: int = Field(ge=1, le=100_000)
    # Leave out for a service, which is never out of stock.
    stock: int | None = Field(default=None, ge=0, le=1_000_000)
    active: bool = True
    limit_per_period: int | None = Field(default=None, ge=1, le=1000)
    min_period_score: int | None = Field(default=None, ge=-10_000, le=10_000)


class ShopItemUpdate(Strict):
    name: Name | None = None
    category: Category | None = None
    photo_url: Annotated[str, StringConstraints(max_length=500)] | None = None
    price_points: int | None = Field(default=None, ge=1, le=100_000)
    active: bool | None = None
    limit_per_period: int | None = Field(default=None, ge=1, le=1000)
    min_period_score: int | None = Field(default=None, ge=-10_000, le=10_000)


class ShopItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    shop_id: uuid.UUID
    name: str
    category: str
    photo_url: str | None
    price_points: int
    stock: int | None
    active: bool
    limit_per_period: int | None
    min_period_score: int | None
    # For a villager: whether their household may redeem it now, and if not, why.
    redeemable_now: bool | None = None
    refusal_code: str | None = None
    refusal: str | None = None


class StockChangeCreate(Strict):
    kind: StockChange
    delta: int = Field(ge=-1_000_000, le=1_000_000)
    reason: Reason

    @model_validator(mode="after")
    def restock_adds(self) -> "StockChangeCreate":
        if self.delta == 0:
            raise ValueError("a stock change moves stock")
        if self.kind is StockChange.RESTOCK and self.delta < 0:
            raise ValueError("restocking adds stock; a loss is a correction")
        return self


class StockMovementRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    item_id: uuid.UUID
    kind: StockChange
    delta: int
    stock_after: int
    reason: str
    actor_id: uuid.UUID
    created_at: datetime


class OrderLineCreate(Strict):
    item_id: uuid.UUID
    quantity: int = Field(ge=1, le=100)


class OrderCreate(Strict):
    lines: list[OrderLineCreate] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def items_once(self) -> "OrderCreate":
        if len({line.item_id for line in self.lines}) != len(self.lines):
            raise ValueError("each item appears once; give it a quantity")
        return self


class CounterRedemptionCreate(OrderCreate):
    code: Code
    # The attendant looked at the member's identity (required with a household card).
    identity_checked: bool = False


class OrderLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: uuid.UUID
    item_name: str
    unit_points: int
    quantity: int


class OrderRead(BaseModel):
    id: uuid.UUID
    shop_id: uuid.UUID
    household_id: uuid.UUID
    channel: OrderChannel
    status: OrderStatus
    points: int
    spends_balance: bool
    identity_checked: bool
    expires_at: datetime | None
    created_at: datetime
    collected_at: datetime | None
    closed_at: datetime | None
    close_reason: str
    lines: list[OrderLineRead]
    # Shown to the villager while the order waits to be collected.
    pickup_code: str | None = None


class CodeRead(BaseModel):
    code: str
    expires_at: datetime | None


class ScanCreate(Strict):
    code: Code


class CodeKind(StrEnum):
    PAY = "pay"
    CARD = "card"
    PICKUP = "pickup"


class ScanRead(BaseModel):
    """What the attendant checks before handing goods over."""

    kind: CodeKind
    household_id: uuid.UUID
    household_number: str
    # As the notice board shows it (张**): enough to recognise, not to expose.
    head_name: str | None
    # Spendable: points of periods approved but not yet published are not counted.
    balance: int
    tier: str | None
    redeemable_now: bool
    refusal_code: str | None
    refusal: str | None
    expires_at: datetime | None
    order: OrderRead | None = None


class RefundCreate(Strict):
    reason: Reason


class CardRead(BaseModel):
    id: uuid.UUID
    household_id: uuid.UUID
    code: str
    issued_at: datetime


class LiabilityRead(BaseModel):
    """What a village's shop has handed out and still owes, in points and in yuan of goods."""

    village_id: uuid.UUID
    year: int
    yuan_per_point: Decimal | None
    points_redeemed: int
    yuan_redeemed: Decimal | None
    outstanding_points: int
    outstanding_yuan: Decimal | None
