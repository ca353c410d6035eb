"""A village with a shop, an attendant scoped to it, an admin, and a villager whose household
has points; helpers that read back what the database holds."""

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    LedgerEntry,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
    Shop,
    ShopItem,
    ShopOrder,
    Village,
    VillageGroup,
)
from app.schemas.rules import Policy
from app.services.rankings import refresh_period_ranks
from tests import factories as f
from tests.ledger.conftest import balance_of, post_entry

API = "/api/v1"
TODAY = clock.today()


@dataclass
class Scene:
    village: Village
    group: VillageGroup
    rule_set: RuleSet
    shop: Shop
    soap: ShopItem  # 20 points, 10 in stock
    haircut: ShopItem  # a service: 30 points, no stock
    admin: Person
    admin_headers: dict[str, str]
    attendant: Person
    attendant_headers: dict[str, str]
    household: Household
    villager: Person
    villager_headers: dict[str, str]


async def create_shop(db: AsyncSession, village: Village, name: str = "积分超市") -> Shop:
    shop = Shop(
        town_id=village.town_id, village_id=village.id, served_village_ids=[village.id], name=name
    )
    db.add(shop)
    await db.flush()
    return shop


async def create_item(db: AsyncSession, shop: Shop, **overrides: Any) -> ShopItem:
    item = ShopItem(
        **{
            "shop_id": shop.id,
            "town_id": shop.town_id,
            "name": "洗衣皂",
            "category": "清洁用品",
            "price_points": 20,
            "stock": 10,
            **overrides,
        }
    )
    db.add(item)
    await db.flush()
    return item


async def build_scene(
    db: AsyncSession,
    settings: Settings,
    policy: Policy | None = None,
    rule_status: RuleSetStatus = RuleSetStatus.APPROVED,
) -> Scene:
    village = await f.create_village(db)
    group = await f.create_group(db, village)
    rule_set, _, _ = await f.create_rule_set(
        db, village, year=TODAY.year, policy=policy, status=rule_status
    )
    shop = await create_shop(db, village)
    soap = await create_item(db, shop)
    haircut = await create_item(db, shop, name="理发", category="服务", price_points=30, stock=None)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    attendant = await f.create_person(db, village)
    attendant_grant = await f.grant(db, attendant, Role.SHOP_ATTENDANT, village=village)
    attendant_grant.shop_id = shop.id
    household = await f.create_household(db, village, group)
    villager = await f.create_person(db, village, name="王秀英")
    await f.add_member(db, household, villager, is_head=True)
    await post_entry(db, household, 100)
    await db.flush()
    return Scene(
        village=village,
        group=group,
        rule_set=rule_set,
        shop=shop,
        soap=soap,
        haircut=haircut,
        admin=admin,
        admin_headers=await f.login_headers(db, settings, admin),
        attendant=attendant,
        attendant_headers=await f.login_headers(db, settings, attendant),
        household=household,
        villager=villager,
        villager_headers=await f.login_headers(db, settings, villager),
    )


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    return await build_scene(db, settings)


async def publish_scores(
    db: AsyncSession, village: Village, rule_set: RuleSet, scores: dict[uuid.UUID, int],
    *, vetoed: set[uuid.UUID] | None = None,
) -> ScoringPeriod:  # fmt: skip
    """Last month published with these period scores."""
    last = TODAY.replace(day=1)
    starts = (last.replace(month=last.month - 1) if last.month > 1 else last).replace(day=1)
    period = ScoringPeriod(
        village_id=village.id,
        town_id=village.town_id,
        rule_set_id=rule_set.id,
        year=starts.year,
        kind=PeriodKind.MONTH,
        number=starts.month,
        starts_on=starts,
        ends_on=starts.replace(day=28),
        status=PeriodStatus.PUBLISHED,
    )
    db.add(period)
    await db.flush()
    db.add_all(
        HouseholdPeriodScore(
            household_id=h, period_id=period.id, village_id=village.id, score=s,
            vetoed=h in (vetoed or set()),
        )
        for h, s in scores.items()
    )  # fmt: skip
    await db.flush()
    await refresh_period_ranks(db, period.id)  # as publication does
    return period


@dataclass
class Snapshot:
    """Everything an order could have written, to compare before and after a refusal."""

    balance: int
    entries: int
    orders: int
    stock: dict[uuid.UUID, int | None]
    allowances: int
    rounds: int
    code_uses: int


async def snapshot(db: AsyncSession, household: Household) -> Snapshot:
    entries = await db.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(col(LedgerEntry.household_id) == household.id)
    )
    orders = await db.scalar(
        select(func.count())
        .select_from(ShopOrder)
        .where(col(ShopOrder.household_id) == household.id)
    )
    rows = await db.execute(select(col(ShopItem.id), col(ShopItem.stock)))
    stock: dict[uuid.UUID, int | None] = {item_id: count for item_id, count in rows}
    allowances = await db.scalar(
        text("SELECT coalesce(sum(quantity), 0) FROM shop_allowance WHERE household_id = :h"),
        {"h": household.id},
    )
    rounds = await db.scalar(
        text("SELECT coalesce(sum(orders), 0) FROM shop_round_use WHERE household_id = :h"),
        {"h": household.id},
    )
    code_uses = await db.scalar(
        text("SELECT count(*) FROM shop_code_use WHERE household_id = :h"), {"h": household.id}
    )
    return Snapshot(
        balance=await balance_of(db, household.id),
        entries=int(entries or 0),
        orders=int(orders or 0),
        stock=stock,
        allowances=int(allowances or 0),
        rounds=int(rounds or 0),
        code_uses=int(code_uses or 0),
    )


async def stock_of(db: AsyncSession, item: ShopItem) -> int | None:
    return await db.scalar(select(col(ShopItem.stock)).where(col(ShopItem.id) == item.id))
