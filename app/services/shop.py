"""积分超市 catalog, stock and who may redeem what, when.

Orders and counter redemptions are in shop_orders.py, codes in shop_codes.py.
"""

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    ScalarSelect,
    Select,
    String,
    Text,
    any_,
    case,
    cast,
    exists,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app import clock
from app.authz import (
    SCOPE_DISTRICT,
    SCOPE_PARAMETERS,
    SCOPE_TOWNS,
    SCOPE_VILLAGES,
    STAFF_READ_ROLES,
    scope_values,
    village_sets,
)
from app.db import DriverSource
from app.driver import DriverStatement, param
from app.errors import Conflict, NotFound, Unprocessable
from app.models import (
    Household,
    HouseholdBalance,
    HouseholdMember,
    HouseholdPeriodScore,
    HouseholdRank,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    RuleSet,
    ScoringPeriod,
    Shop,
    ShopCodeUse,
    ShopItem,
    ShopOrder,
    ShopRoundUse,
    StockMovement,
    Village,
)
from app.schemas.rules import RedemptionPolicy, ScoreTier, VetoScope
from app.schemas.shop import (
    ShopCreate,
    ShopItemCreate,
    ShopItemUpdate,
    StockChangeCreate,
    TownShopCreate,
)
from app.security import Principal
from app.services import audit, ledger
from app.services.organisation import get_town, get_village, get_village_for_admin
from app.services.points_year import (
    PointsCalendar,
    calendar_of,
    vetoed_in_year_clause,
)
from app.services.rankings import SPAN_OF
from app.services.rules import in_effect_statement, policy_of

# Points buy goods and services, never money: these never enter a catalog, whatever the
# category is called (旧县: 不兑现金). Matched on folded text (see _folded), so spacing,
# full-width letters and case do not slip past; kept narrow enough for 金桔 and 金银花.
MONEY_PATTERN = re.compile(
    "|".join((
        "现金", "现钞", "人民币", "红包", "充值", "储值", "提现", "兑现", "零钱", "转账",
        "支付宝", "微信支付", "话费", "彩票", "金条", "金币", "q币",
        "黄金(?!玉米|瓜|糕|薯|梨|桃|果|菇)",  # gold, not the golden varieties of produce
        "(购物|超市|加油|充值|礼品|储值|提货|商场|消费)卡", "(?<![a-z])e卡",
        "(元|超市|购物|代金|现金|消费|电子|抵用|提货)券",
        "[¥$][0-9]", "[0-9一二两三四五六七八九十百千万]元", "rmb",
        "cash(?!ew)", "money", "prepaid", "giftcard", "voucher", "coupon",
    ))
)  # fmt: skip

# Scope


def served_by(shop_villages: Any, village_ids: set[uuid.UUID]) -> ColumnElement[bool]:
    return shop_villages.overlap(list(village_ids)) if village_ids else false()


def shop_readable(principal: Principal) -> ColumnElement[bool]:
    """Shops a caller sees: staff of a served village or its town, residents of one."""
    if principal.is_district_admin:
        return true()
    villages, towns = village_sets(principal, STAFF_READ_ROLES, towns=True, residents=True)
    return or_(served_by(col(Shop.served_village_ids), villages), col(Shop.town_id).in_(towns))


def shop_readable_parameters() -> ColumnElement[bool]:
    """shop_readable on app.authz's scope parameters (values: _readable_values)."""
    served: Any = col(Shop.served_village_ids)
    return or_(
        SCOPE_DISTRICT, served.overlap(SCOPE_VILLAGES), col(Shop.town_id) == any_(SCOPE_TOWNS)
    )


def _readable_values(principal: Principal) -> dict[str, Any]:
    return scope_values(principal, roles=STAFF_READ_ROLES, towns=True, residents=True)


def shop_managed(principal: Principal) -> ColumnElement[bool]:
    """Shops whose catalog the caller keeps: the running village's admin (town shops: the
    district)."""
    if principal.is_district_admin:
        return true()
    return col(Shop.village_id).in_(_managed_villages(principal))


def _managed_villages(principal: Principal) -> set[uuid.UUID]:
    return principal.village_ids(Role.VILLAGE_ADMIN)


def _attended_values(principal: Principal) -> dict[str, Any]:
    """Shops whose counter the caller serves: an attendant's shop (or every shop serving their
    village, for a grant without a shop), and the running village's admin (shop_managed's)."""
    shops, villages = set(), set()
    for grant in principal.grants:
        if grant.role is not Role.SHOP_ATTENDANT or grant.village_id is None:
            continue
        if grant.shop_id is not None:
            shops.add(grant.shop_id)
        else:
            villages.add(grant.village_id)
    return {
        "scope_district": principal.is_district_admin,
        "managed_villages": list(_managed_villages(principal)),
        "attended_shops": list(shops),
        "attended_villages": list(villages),
    }


_MANAGED_VILLAGES = param("managed_villages", ARRAY(PG_UUID(as_uuid=True)))
_ATTENDED_SHOPS = param("attended_shops", ARRAY(PG_UUID(as_uuid=True)))
_ATTENDED_VILLAGES = param("attended_villages", ARRAY(PG_UUID(as_uuid=True)))
_ATTENDED_PARAMETERS = ("scope_district", "managed_villages", "attended_shops", "attended_villages")


def _shop_attended_parameters() -> ColumnElement[bool]:
    """shop_attended on parameters (values: _attended_values)."""
    return or_(
        SCOPE_DISTRICT,
        col(Shop.village_id) == any_(_MANAGED_VILLAGES),
        col(Shop.id) == any_(_ATTENDED_SHOPS),
        col(Shop.village_id) == any_(_ATTENDED_VILLAGES),
    )


def shop_attended(principal: Principal) -> ColumnElement[bool]:
    """_shop_attended_parameters with the caller's values, for statements built per call."""
    values = _attended_values(principal)
    if values["scope_district"]:
        return true()
    return or_(
        col(Shop.village_id).in_(values["managed_villages"]),
        col(Shop.id).in_(values["attended_shops"]),
        col(Shop.village_id).in_(values["attended_villages"]),
    )


class ShopKey(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def village_id(self) -> uuid.UUID | None: ...


def attended_villages(principal: Principal, shop: ShopKey) -> set[uuid.UUID] | None:
    """Villages whose orders and households the caller serves at this (attended) shop; None:
    all it serves. An attendant placed at a town shop by a village's grant acts for that
    village only: another village's refunds are not theirs to give."""
    if principal.is_district_admin or principal.is_village_admin_of(shop.village_id):
        return None
    villages: set[uuid.UUID] = set()
    for grant in principal.grants:
        if grant.role is not Role.SHOP_ATTENDANT or grant.village_id is None:
            continue
        if grant.village_id == shop.village_id and grant.shop_id in (None, shop.id):
            return None
        if grant.shop_id == shop.id:
            villages.add(grant.village_id)
    return villages


def shop_not_found() -> NotFound:
    return NotFound("No such shop.", code="shop.not_found", title="积分超市不存在")


async def get_shop(session: AsyncSession, shop_id: uuid.UUID, scope: ColumnElement[bool]) -> Shop:
    statement = select(Shop).where(col(Shop.id) == shop_id, scope)
    shop = (await session.execute(statement)).scalar_one_or_none()
    if shop is None:
        raise shop_not_found()
    return shop


async def get_item(
    session: AsyncSession, item_id: uuid.UUID, scope: ColumnElement[bool]
) -> tuple[ShopItem, Shop]:
    row = (
        await session.execute(
            select(ShopItem, Shop)
            .join(Shop, col(Shop.id) == col(ShopItem.shop_id))
            .where(col(ShopItem.id) == item_id, scope)
        )
    ).first()
    if row is None:
        raise NotFound("No such item.", code="shop_item.not_found", title="商品不存在")
    return row[0], row[1]


# Catalog


async def create_shop(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: ShopCreate
) -> Shop:
    village = await get_village_for_admin(session, principal, village_id)
    shop = Shop(
        town_id=village.town_id,
        village_id=village.id,
        served_village_ids=[village.id],
        name=data.name,
    )
    session.add(shop)
    await session.flush()
    audit.record(
        session, principal, "shop.create", "shop", shop.id,
        after=audit.snapshot(shop), town_id=shop.town_id, village_id=village.id,
    )  # fmt: skip
    return shop


async def create_town_shop(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID, data: TownShopCreate
) -> Shop:
    """A town's shop serving listed villages of the town; its catalog is the district's to keep,
    and attendants are granted in a served village with the shop named."""
    town = await get_town(session, principal, town_id)
    wanted = set(data.village_ids)
    found = set(
        (
            await session.execute(
                select(col(Village.id)).where(
                    col(Village.id).in_(wanted), col(Village.town_id) == town.id
                )
            )
        ).scalars()
    )
    if found != wanted:
        raise Unprocessable(
            "Every served village must belong to the town.",
            code="shop.village_not_in_town",
            title="服务的村须属于本镇",
        )
    shop = Shop(town_id=town.id, served_village_ids=sorted(wanted, key=str), name=data.name)
    session.add(shop)
    await session.flush()
    audit.record(
        session, principal, "shop.create", "shop", shop.id,
        after=audit.snapshot(shop), town_id=town.id,
    )  # fmt: skip
    return shop


async def list_shops(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> list[Shop]:
    village = await get_village(session, principal, village_id)
    rows = await session.execute(
        select(Shop)
        .where(col(Shop.served_village_ids).contains([village.id]), shop_readable(principal))
        .order_by(col(Shop.created_at), col(Shop.id))
    )
    return list(rows.scalars())


def _folded(text: str) -> str:
    """Full-width forms made plain, case folded, spaces and invisible characters dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


def refuse_money(*texts: str) -> None:
    if any(MONEY_PATTERN.search(_folded(text)) for text in texts):
        raise Unprocessable(
            "Points buy goods and services, never money or its equivalents.",
            code="shop.money_item",
            title="积分只能兑换物品或服务，不能兑换现金或等价物",
        )


async def create_item(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, data: ShopItemCreate
) -> ShopItem:
    shop = await get_shop(session, shop_id, shop_managed(principal))
    refuse_money(data.name, data.category)
    item = ShopItem(shop_id=shop.id, town_id=shop.town_id, **data.model_dump())
    session.add(item)
    await session.flush()
    audit.record(
        session, principal, "shop_item.create", "shop_item", item.id,
        after=audit.snapshot(item), town_id=shop.town_id, village_id=shop.village_id,
    )  # fmt: skip
    return item


async def update_item(
    session: AsyncSession, principal: Principal, item_id: uuid.UUID, data: ShopItemUpdate
) -> ShopItem:
    item, shop = await get_item(session, item_id, shop_managed(principal))
    changes = data.model_dump(exclude_unset=True)
    for required in ("name", "category", "price_points", "active"):
        if required in changes and changes[required] is None:
            raise Unprocessable(f"{required} cannot be empty.", code="shop_item.required")
    refuse_money(changes.get("name") or item.name, changes.get("category") or item.category)
    before = audit.snapshot(item)
    for key, value in changes.items():
        setattr(item, key, value)
    item.updated_at = clock.now()
    await session.flush()
    audit.record(
        session, principal, "shop_item.update", "shop_item", item.id,
        before=before, after=audit.snapshot(item), town_id=shop.town_id,
        village_id=shop.village_id,
    )  # fmt: skip
    return item


async def change_stock(
    session: AsyncSession, principal: Principal, item_id: uuid.UUID, data: StockChangeCreate
) -> ShopItem:
    item, shop = await get_item(session, item_id, shop_managed(principal))
    if item.stock is None:
        raise Conflict(
            "A service has no stock.", code="shop.service_has_no_stock", title="服务类商品没有库存"
        )
    # Guarded in the database: a correction never takes stock below zero, even racing orders.
    moved = (
        await session.execute(
            update(ShopItem)
            .where(col(ShopItem.id) == item.id, col(ShopItem.stock) + data.delta >= 0)
            .values(stock=col(ShopItem.stock) + data.delta, updated_at=clock.now())
            .returning(col(ShopItem.stock))
        )
    ).scalar_one_or_none()
    if moved is None:
        raise Conflict(
            "Stock cannot go below zero.", code="shop.stock_negative", title="库存不能小于零"
        )
    before = item.stock
    await session.refresh(item)
    movement = StockMovement(
        item_id=item.id,
        shop_id=shop.id,
        kind=data.kind,
        delta=data.delta,
        stock_after=moved,
        reason=data.reason,
        actor_id=principal.person_id,
    )
    session.add(movement)
    await session.flush()
    audit.record(
        session, principal, f"shop_item.{data.kind.value}", "shop_item", item.id,
        before={"stock": before}, after={"stock": moved, "reason": data.reason},
        town_id=shop.town_id, village_id=shop.village_id,
    )  # fmt: skip
    return item


async def list_movements(
    session: AsyncSession, principal: Principal, item_id: uuid.UUID
) -> list[StockMovement]:
    item, _ = await get_item(session, item_id, shop_managed(principal))
    rows = await session.execute(
        select(StockMovement)
        .where(col(StockMovement.item_id) == item.id)
        .order_by(col(StockMovement.created_at), col(StockMovement.id))
    )
    return list(rows.scalars())


# Eligibility


@dataclass(frozen=True)
class Refusal:
    code: str
    title: str

    def error(self) -> Conflict:
        return Conflict(self.title, code=self.code, title=self.title)


ITEM_INACTIVE = Refusal("shop.item_inactive", "该商品已下架")


class ItemTerms(Protocol):
    """What an item's refusal depends on (a ShopItem, or a CatalogItem row)."""

    @property
    def active(self) -> bool: ...
    @property
    def min_period_score(self) -> int | None: ...
    @property
    def stock(self) -> int | None: ...


@dataclass
class Standing:
    """What the policy asks of a household, read once per request."""

    policy: RedemptionPolicy
    round_key: str
    score: int | None
    rank_in_group: int | None
    vetoed: bool
    refusal: Refusal | None

    @property
    def tier(self) -> str | None:
        own = self._own_tier
        return own.label if own else None

    @property
    def _own_tier(self) -> ScoreTier | None:
        if self.score is None:
            return None
        return next((t for t in self.policy.tiers if self.score >= t.min_score), None)

    def item_refusal(self, item: ItemTerms) -> Refusal | None:
        if self.refusal:
            return self.refusal
        if not item.active:
            return ITEM_INACTIVE
        if item.min_period_score is not None and (
            self.score is None or self.score < item.min_period_score
        ):
            return Refusal("shop.below_item_tier", f"该商品需当期积分达到{item.min_period_score}分")
        own = self._own_tier
        if item.min_period_score is not None and own and item.min_period_score < own.min_score:
            # 翁源: four tiers of goods, and a household takes its own tier's in a round, not
            # a lower tier's besides.
            return Refusal("shop.other_tier", f"本户本期只能兑换{own.label}的物品")
        if item.stock is not None and item.stock <= 0:
            return Refusal("shop.out_of_stock", "该商品库存不足")
        return None


NO_RULES = Refusal("shop.no_rules", "本村暂无生效的积分细则，暂不能兑换")
VETOED_FOR_YEAR = Refusal("shop.vetoed_for_year", "本户本年度已被一票否决，不能兑换")


def _standing(
    points_calendar: PointsCalendar, day: date, latest: tuple[int | None, int | None, bool]
) -> Standing:
    """The standing from the latest period's (score, rank in group, vetoed); the year's veto
    and the round's orders are checked after, where they are asked (_asks_year_veto,
    _asks_round_use)."""
    score, rank, vetoed = latest
    policy = points_calendar.policy.redemption
    standing = Standing(policy, points_calendar.round_key(day), score, rank, vetoed, None)
    standing.refusal = _household_refusal(standing, points_calendar.in_redemption_window(day))
    return standing


def _asks_year_veto(standing: Standing, points_calendar: PointsCalendar) -> bool:
    return (
        standing.refusal is None
        and not standing.policy.vetoed_may_redeem
        and points_calendar.policy.veto_scope is VetoScope.YEAR
    )


def _asks_round_use(standing: Standing) -> bool:
    return standing.refusal is None and standing.policy.orders_per_round is not None


def _count_round_use(standing: Standing, used: int | None) -> None:
    limit = standing.policy.orders_per_round
    if limit is not None and (used or 0) >= limit:
        standing.refusal = round_used(limit)


def round_used(limit: int) -> Refusal:
    if limit == 1:
        return Refusal("shop.round_used", "本期已兑换过，下期再来")
    return Refusal("shop.round_used", f"每户每期限兑{limit}次，本期已用完")


def _household_refusal(standing: Standing, in_window: bool) -> Refusal | None:
    policy = standing.policy
    if not in_window:
        return Refusal("shop.outside_window", "现在不是积分兑换时间")
    if not _asks_score(policy):
        return None
    if standing.vetoed:
        return Refusal("shop.vetoed", "本期因一票否决不能兑换")
    if standing.score is None:
        return Refusal("shop.no_period_score", "尚无已公示的当期积分，暂不能兑换")
    if policy.min_period_score is not None and standing.score < policy.min_period_score:
        return Refusal("shop.below_min_score", f"当期积分需达到{policy.min_period_score}分")
    if policy.top_n_in_group and (
        standing.rank_in_group is None or standing.rank_in_group > policy.top_n_in_group
    ):
        return Refusal("shop.not_top_n", f"须在本村民小组排名前{policy.top_n_in_group}名")
    if policy.tiers and standing.tier is None:
        return Refusal("shop.below_tier", "当期积分未达到最低兑换档次")
    return None


def _asks_score(policy: RedemptionPolicy) -> bool:
    return bool(policy.min_period_score is not None or policy.top_n_in_group or policy.tiers)


def _latest_published(village_id: Any) -> Select[uuid.UUID, int, PeriodKind, int]:
    """The village's latest published (or closed) period: id, year, kind, number."""
    return (
        select(
            col(ScoringPeriod.id),
            col(ScoringPeriod.year),
            col(ScoringPeriod.kind),
            col(ScoringPeriod.number),
        )
        .where(
            col(ScoringPeriod.village_id) == village_id,
            col(ScoringPeriod.status).in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]),
        )
        .order_by(col(ScoringPeriod.starts_on).desc())
        .limit(1)
    )


async def spendable_points(session: AsyncSession, household: Household) -> int:
    """The balance less the points of periods approved but not yet published: a villager does
    not see those yet (ledger.UNPUBLISHED_READERS), so they cannot spend them either. A deduction
    waiting for publication (a veto) has already left the balance, and what is not there cannot
    be spent: never more than the balance. Exact only under the village's chain lock (a
    redemption checks it there: ledger.post's spend_published_only)."""
    spendable = await session.scalar(select(spendable_figure(household)))
    return int(spendable or 0)


def spendable_figure(household: Household) -> ColumnElement[int]:
    """spendable_points as an expression of the household's id and village (a row in hand, or
    the household's columns in an enclosing statement that reads more besides)."""
    balance = (
        select(col(HouseholdBalance.balance))
        .where(col(HouseholdBalance.household_id) == household.id)
        .scalar_subquery()
    )
    hidden = ledger.unpublished_balance_points(household)
    return func.coalesce(balance, 0) - func.greatest(hidden, 0)


def insufficient_points() -> Refusal:
    return Refusal("ledger.insufficient_balance", "可用积分不足")


class CatalogItem(NamedTuple):
    """A row of the catalog, in ShopItemRead's order."""

    id: str
    shop_id: str
    name: str
    category: str
    photo_url: str | None
    price_points: int
    stock: int | None
    active: bool
    limit_per_period: int | None
    min_period_score: int | None


class ShopRow(NamedTuple):
    """The shop as a redemption reads it (a ShopKey)."""

    id: uuid.UUID
    town_id: uuid.UUID
    village_id: uuid.UUID | None
    served_village_ids: list[uuid.UUID]


class HouseholdRow(NamedTuple):
    id: uuid.UUID
    village_id: uuid.UUID
    number: str


_SHOP = param("shop_id", PG_UUID(as_uuid=True))
_HOUSEHOLD = param("household_id", PG_UUID(as_uuid=True))
_NONCE = param("nonce", PG_UUID(as_uuid=True))
_DAY = param("day", Date())
_YEAR = param("year", Integer())
_ROUNDS = param("rounds", String())
_STANDING_PARAMETERS = ("shop_id", "household_id", "day", "year", "rounds")


def _with_household(
    scope: ColumnElement[bool], *columns: Any, household: Any = _HOUSEHOLD
) -> Select[Any]:
    """The shop (:shop_id) in `scope`, `columns`, and all that standing_of and the spendable
    figure read of the household `household` (none: NULLs): one round trip. The household's
    facts are read whatever the policy asks (each a keyed lookup); the policy then decides
    which count (standing_of)."""
    own = aliased(HouseholdPeriodScore, name="own")
    latest = _latest_published(col(Household.village_id)).lateral("latest")
    policy = (
        in_effect_statement(col(Household.village_id), _DAY)
        .with_only_columns(cast(col(RuleSet.policy), Text))
        .scalar_subquery()
    )
    group_rank = (
        select(col(HouseholdRank.group_rank))
        .where(
            col(HouseholdRank.household_id) == col(Household.id),
            col(HouseholdRank.year) == latest.c.year,
            col(HouseholdRank.span) == case(SPAN_OF, value=latest.c.kind),
            col(HouseholdRank.number) == latest.c.number,
        )
        .scalar_subquery()
    )
    vetoed_year = vetoed_in_year_clause(
        col(Household.id), _YEAR, published_only=True, village_id=col(Household.village_id)
    )
    # The year's rounds: round_key(day) is one of them whatever the policy's rounds.
    rounds = (
        select(func.json_object_agg(col(ShopRoundUse.round_key), col(ShopRoundUse.orders)))
        .where(
            col(ShopRoundUse.household_id) == col(Household.id),
            col(ShopRoundUse.round_key).like(_ROUNDS),
        )
        .scalar_subquery()
    )
    return (
        select(
            *(col(getattr(Shop, name)) for name in ShopRow._fields),
            *columns,
            col(Household.id).label("household_id"),
            col(Household.village_id).label("household_village_id"),
            col(Household.number).label("household_number"),
            policy.label("policy"),
            (col(own.household_id).is_not(None)).label("scored"),
            col(own.score),
            col(own.vetoed),
            group_rank.label("group_rank"),
            vetoed_year.label("vetoed_year"),
            rounds.label("rounds"),
            spendable_figure(Household).label("spendable"),  # type: ignore[arg-type]
        )
        .select_from(Shop)
        .outerjoin(Household, col(Household.id) == household)
        .outerjoin(latest, true())
        .outerjoin(
            own,
            (col(own.household_id) == col(Household.id)) & (col(own.period_id) == latest.c.id),
        )
        .where(col(Shop.id) == _SHOP, scope)
    )


def _standing_values(
    shop_id: uuid.UUID, household_id: uuid.UUID | None, day: date
) -> dict[str, Any]:
    return {
        "shop_id": shop_id,
        "household_id": household_id,
        "day": day,
        "year": day.year,
        "rounds": f"{day.year}-%",
    }


_CATALOG = DriverStatement(
    _with_household(
        shop_readable_parameters(),
        select(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(
                        *(getattr(ShopItem, name) for name in CatalogItem._fields)
                    ),
                    col(ShopItem.category),
                    col(ShopItem.name),
                    col(ShopItem.id),
                )
            )
        )
        .where(col(ShopItem.shop_id) == col(Shop.id))
        .scalar_subquery()
        .label("items"),
    ),
    *_STANDING_PARAMETERS,
    *SCOPE_PARAMETERS,
)
# An order ahead: the villager's shop and household.
_SERVED = DriverStatement(
    _with_household(shop_readable_parameters()), *_STANDING_PARAMETERS, *SCOPE_PARAMETERS
)


def _head_name(household_id: Any) -> ScalarSelect[str]:
    """The name the household goes by: its head's."""
    return (
        select(col(Person.name))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(col(HouseholdMember.household_id) == household_id)
        .order_by(col(HouseholdMember.is_head).desc(), col(HouseholdMember.created_at))
        .limit(1)
        .scalar_subquery()
    )


# The counter: the attended shop, the household a code names (a pay code's or card's, or a
# pickup code's order's), its head, and whether the code (:nonce) was used already.
_COUNTER = DriverStatement(
    _with_household(
        _shop_attended_parameters(),
        _head_name(col(Household.id)).label("head_name"),
        exists().where(col(ShopCodeUse.nonce) == _NONCE).label("replayed"),
        household=func.coalesce(
            _HOUSEHOLD,
            select(col(ShopOrder.household_id))
            .where(col(ShopOrder.id) == param("order_id", PG_UUID(as_uuid=True)))
            .scalar_subquery(),
        ),
    ),
    *_STANDING_PARAMETERS,
    "nonce",
    "order_id",
    *_ATTENDED_PARAMETERS,
)


_ATTENDED_SHOP = DriverStatement(
    select(*(col(getattr(Shop, name)) for name in ShopRow._fields)).where(
        col(Shop.id) == _SHOP, _shop_attended_parameters()
    ),
    "shop_id",
    *_ATTENDED_PARAMETERS,
)


async def attended_shop(session: AsyncSession, principal: Principal, shop_id: uuid.UUID) -> ShopRow:
    """The shop whose counter the caller serves (shop_attended), or shop.not_found."""
    row = await _ATTENDED_SHOP.fetchrow(session, shop_id=shop_id, **_attended_values(principal))
    if row is None:
        raise shop_not_found()
    return ShopRow(*row)


async def served_household(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, day: date
) -> Any:
    """The shop as the caller's household orders from it and that household's facts
    (standing_of, shop_of, household_of), or None: no such shop in the caller's scope."""
    return await _SERVED.fetchrow(
        session,
        **_standing_values(shop_id, principal.household_id, day),
        **_readable_values(principal),
    )


async def counter_household(
    session: AsyncSession,
    principal: Principal,
    shop_id: uuid.UUID,
    day: date,
    *,
    household_id: uuid.UUID | None,
    order_id: uuid.UUID | None,
    nonce: uuid.UUID | None,
) -> Any:
    """The shop whose counter the caller serves and the facts of the household (`household_id`,
    else `order_id`'s, whichever shop the order is of; none: NULLs) with its head's name and
    whether `nonce` was used; None: no such shop for the caller."""
    return await _COUNTER.fetchrow(
        session,
        **_standing_values(shop_id, household_id, day),
        nonce=nonce,
        order_id=order_id,
        **_attended_values(principal),
    )


def shop_of(row: Any) -> ShopRow:
    return ShopRow(*(row[name] for name in ShopRow._fields))


def household_of(row: Any) -> HouseholdRow | None:
    if row["household_id"] is None:
        return None
    return HouseholdRow(row["household_id"], row["household_village_id"], row["household_number"])


@lru_cache(maxsize=256)
def _calendar(policy: str) -> PointsCalendar:
    """A stored policy's calendar, validated once per distinct text (rules.policy_of)."""
    return calendar_of(policy_of(policy))


def standing_of(row: Any, day: date) -> Standing:
    """The household's standing under the policy in force on `day`, from a statement's row
    (_with_household, read for that day)."""
    if row["policy"] is None:
        return Standing(RedemptionPolicy(), "", None, None, False, NO_RULES)
    points_calendar = _calendar(row["policy"])
    policy = points_calendar.policy.redemption
    latest: tuple[int | None, int | None, bool] = (None, None, False)
    if row["scored"]:
        # The stored rank counts only where the policy ranks, and a vetoed household has none.
        ranked = policy.top_n_in_group and not row["vetoed"]
        latest = (row["score"], row["group_rank"] if ranked else None, row["vetoed"])
    standing = _standing(points_calendar, day, latest)
    # The statement read the veto of the calendar year: year_of(day) is day's year whatever
    # the policy (periods never straddle 1 January).
    if _asks_year_veto(standing, points_calendar) and row["vetoed_year"]:
        standing.refusal = VETOED_FOR_YEAR
    if _asks_round_use(standing):
        _count_round_use(standing, (row["rounds"] or {}).get(standing.round_key))
    return standing


async def list_items(
    session: DriverSource, principal: Principal, shop_id: uuid.UUID
) -> list[dict[str, Any]]:
    """ShopItemRead's fields of each item the caller sees, from plain rows
    (app.driver.json_response)."""
    day = clock.today()
    row = await _CATALOG.fetchrow(
        session,
        **_standing_values(shop_id, principal.household_id, day),
        **_readable_values(principal),
    )
    if row is None:
        raise shop_not_found()
    # The counter's staff (shop_attended, decided here from the row in hand) see inactive items.
    staff = attended_villages(principal, shop_of(row)) != set()
    standing = spendable = None
    if (
        row["household_id"] is not None
        and principal.household_village_id in row["served_village_ids"]
    ):
        standing = standing_of(row, day)
        if standing.policy.spends_balance:
            spendable = row["spendable"]
    reads = []
    for values in row["items"] or ():
        item = CatalogItem(*values)
        if not (staff or item.active):
            continue
        read: dict[str, Any] = item._asdict()
        read["redeemable_now"] = read["refusal_code"] = read["refusal"] = None
        if standing is not None:
            refusal = standing.item_refusal(item)
            if refusal is None and spendable is not None and item.price_points > spendable:
                refusal = insufficient_points()
            read["redeemable_now"] = refusal is None
            read["refusal_code"] = refusal.code if refusal else None
            read["refusal"] = refusal.title if refusal else None
        reads.append(read)
    return reads
