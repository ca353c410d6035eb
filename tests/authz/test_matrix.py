"""Every route, who may call it, and what the others get.

A route added without a row here fails `test_every_route_has_a_row`.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import (
    Activity,
    ActivityStatus,
    AuditEntry,
    Claim,
    ClaimStatus,
    HouseholdCard,
    Objection,
    ObjectionStatus,
    OrderChannel,
    OrderStatus,
    PeriodKind,
    PeriodStatus,
    Photo,
    Role,
    Scorecard,
    ScoringPeriod,
    Shop,
    ShopItem,
    ShopOrder,
)
from app.services.photos import image_key
from app.storage import LocalPhotoStore
from tests import factories as f
from tests.photos.images import png

ANY = "any"  # any signed-in person, villagers included
VILLAGER = "villager"
TEMPLATE = "zhangyan-governance-2024"
ROLES = [VILLAGER, *(r.value for r in Role)]
PNG = png((4, 3))


@dataclass
class Row:
    allowed: set[str]
    body: Callable[["World"], dict[str, Any]] | None = None
    # Out-of-scope callers must get 404 (False for collection routes with nothing to address).
    scoped: bool = True
    # Who shows the route is open, when the first allowed role can't reach the world's object
    # (a villager reads only their own household).
    served_by: str | None = None
    # Multipart uploads (a file import) instead of a JSON body.
    files: Callable[["World"], dict[str, Any]] | None = None


def _roles(*roles: Role | str) -> set[str]:
    return {r.value if isinstance(r, Role) else r for r in roles}


DA, TS, VA = Role.DISTRICT_ADMIN, Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN
SL, SC, SA = Role.SCORING_LEADER, Role.SCORER, Role.SHOP_ATTENDANT

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/api/v1/auth/wechat/login"),
    ("POST", "/api/v1/auth/wechat/bind"),
    ("POST", "/api/v1/auth/password/login"),
    ("POST", "/api/v1/auth/refresh"),
}

MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/api/v1/me"): Row({ANY}, scoped=False),
    ("POST", "/api/v1/auth/logout"): Row({ANY}, scoped=False),
    ("GET", "/api/v1/towns"): Row(_roles(DA, TS), scoped=False),
    ("POST", "/api/v1/towns"): Row(
        _roles(DA), lambda w: {"name": f"新镇{uuid.uuid4().hex[:6]}"}, scoped=False
    ),
    ("GET", "/api/v1/towns/{town_id}"): Row(_roles(DA, TS)),
    ("PATCH", "/api/v1/towns/{town_id}"): Row(_roles(DA), lambda w: {"district": "新区"}),
    ("POST", "/api/v1/towns/{town_id}/villages"): Row(_roles(DA), lambda w: {"name": "新村"}),
    ("GET", "/api/v1/villages"): Row({ANY}, scoped=False),
    ("GET", "/api/v1/villages/{village_id}"): Row({ANY}),
    ("PATCH", "/api/v1/villages/{village_id}"): Row(_roles(DA), lambda w: {"name": "改名村"}),
    ("GET", "/api/v1/villages/{village_id}/groups"): Row({ANY}),
    ("POST", "/api/v1/villages/{village_id}/groups"): Row(
        _roles(DA, VA), lambda w: {"name": "新组"}
    ),
    ("PATCH", "/api/v1/village-groups/{group_id}"): Row(
        _roles(DA, VA), lambda w: {"name": "改名组"}
    ),
    ("POST", "/api/v1/villages/{village_id}/households"): Row(
        _roles(DA, VA), lambda w: {"number": "NEW-1"}
    ),
    ("GET", "/api/v1/villages/{village_id}/households"): Row(_roles(DA, TS, VA, SL, SC)),
    ("GET", "/api/v1/households/{household_id}"): Row({ANY}, served_by=SC.value),
    ("PATCH", "/api/v1/households/{household_id}"): Row(
        _roles(DA, VA), lambda w: {"address": "新地址"}
    ),
    ("POST", "/api/v1/households/{household_id}/members"): Row(
        _roles(DA, VA), lambda w: {"name": "新成员"}
    ),
    ("PATCH", "/api/v1/household-members/{member_id}"): Row(
        _roles(DA, VA), lambda w: {"relation": "子女"}
    ),
    ("DELETE", "/api/v1/household-members/{member_id}"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/household-members/{member_id}/invite"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/persons"): Row(_roles(DA, TS, VA), scoped=False),
    ("POST", "/api/v1/persons"): Row(
        _roles(DA, VA), lambda w: {"name": "新人", "village_id": str(w.village_id)}
    ),
    ("GET", "/api/v1/persons/{person_id}"): Row(_roles(DA, TS, VA)),
    ("PATCH", "/api/v1/persons/{person_id}"): Row(_roles(DA, VA), lambda w: {"name": "改名"}),
    ("PUT", "/api/v1/persons/{person_id}/credentials"): Row(
        _roles(DA, VA),
        lambda w: {"username": f"u{uuid.uuid4().hex[:8]}", "password": "long-enough-1"},
    ),
    ("GET", "/api/v1/role-grants"): Row(_roles(DA, TS, VA), scoped=False),
    ("POST", "/api/v1/role-grants"): Row(
        _roles(DA, VA),
        lambda w: {
            "person_id": str(w.person_id),
            "role": "scorer",
            "village_id": str(w.village_id),
        },
    ),
    ("DELETE", "/api/v1/role-grants/{grant_id}"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/rule-templates"): Row({ANY}, scoped=False),
    ("GET", "/api/v1/rule-templates/{code}"): Row({ANY}, scoped=False),
    ("GET", "/api/v1/villages/{village_id}/rules"): Row({ANY}),
    ("GET", "/api/v1/villages/{village_id}/rule-sets"): Row({ANY}),
    ("POST", "/api/v1/villages/{village_id}/rule-sets"): Row(
        _roles(DA, VA), lambda w: {"year": 2099, "template_code": TEMPLATE}
    ),
    ("GET", "/api/v1/rule-sets/{rule_set_id}"): Row({ANY}),
    ("PATCH", "/api/v1/rule-sets/{rule_set_id}"): Row(
        _roles(DA, VA), lambda w: {"title": "新标题"}
    ),
    ("DELETE", "/api/v1/rule-sets/{rule_set_id}"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/versions"): Row(
        _roles(DA, VA), lambda w: {"effective_from": f"{w.year}-12-01"}
    ),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/categories"): Row(
        _roles(DA, VA), lambda w: {"name": "新分类"}
    ),
    ("PATCH", "/api/v1/rule-categories/{category_id}"): Row(
        _roles(DA, VA), lambda w: {"name": "改"}
    ),
    ("DELETE", "/api/v1/rule-categories/{category_id}"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/items"): Row(
        _roles(DA, VA),
        lambda w: {"category_id": str(w.category_id), "code": "9", "title": "新项", "points": 1},
    ),
    ("PATCH", "/api/v1/rule-items/{item_id}"): Row(_roles(DA, VA), lambda w: {"title": "改"}),
    ("DELETE", "/api/v1/rule-items/{item_id}"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/submit"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/approve"): Row(_roles(DA, TS)),
    ("POST", "/api/v1/rule-sets/{rule_set_id}/return"): Row(
        _roles(DA, TS), lambda w: {"reason": "x"}
    ),
    ("GET", "/api/v1/rule-sets/{rule_set_id}/export"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/households/{household_id}/ledger"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/households/{household_id}/balance"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/households/{household_id}/standing"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/households/{household_id}/passbook"): Row({ANY}, served_by=SC.value),
    ("POST", "/api/v1/households/{household_id}/adjustments"): Row(
        _roles(DA, VA), lambda w: {"points": 3, "reason": "补记志愿服务"}
    ),
    ("POST", "/api/v1/ledger-entries/{entry_id}/correction"): Row(
        _roles(DA, VA), lambda w: {"reason": "录入错误"}
    ),
    ("GET", "/api/v1/villages/{village_id}/ledger/verification"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/villages/{village_id}/periods"): Row({ANY}),
    ("POST", "/api/v1/villages/{village_id}/periods"): Row(
        _roles(DA, VA), lambda w: {"starts_on": f"{w.year}-12-01"}
    ),
    ("GET", "/api/v1/periods/{period_id}"): Row({ANY}, served_by=SC.value),
    ("POST", "/api/v1/periods/{period_id}/submit"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/periods/{period_id}/approve"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/periods/{period_id}/publish"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/periods/{period_id}/close"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/periods/{period_id}/results"): Row({ANY}, served_by=VA.value),
    ("GET", "/api/v1/villages/{village_id}/rankings"): Row({ANY}),
    ("GET", "/api/v1/villages/{village_id}/honour-roll"): Row({ANY}),
    ("GET", "/api/v1/towns/{town_id}/rankings"): Row({ANY}),
    ("GET", "/api/v1/villages/{village_id}/ranking-forms"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/villages/{village_id}/awards"): Row({ANY}),
    ("POST", "/api/v1/villages/{village_id}/awards/{year}/draft"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/villages/{village_id}/awards/{year}/approve"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/villages/{village_id}/awards/{year}/publish"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/villages/{village_id}/awards/{year}/xlsx"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/periods/{period_id}/worklist"): Row(_roles(DA, VA, SL, SC)),
    ("GET", "/api/v1/periods/{period_id}/households/{household_id}/scorecard"): Row(
        _roles(DA, VA, SL, SC)
    ),
    ("PUT", "/api/v1/periods/{period_id}/households/{household_id}/scorecard"): Row(
        _roles(DA, VA, SL, SC), lambda w: card_body(w)
    ),
    ("POST", "/api/v1/periods/{period_id}/scorecards/batch"): Row(
        _roles(DA, VA, SL, SC),
        lambda w: {"cards": [{"household_id": str(w.household_id), **card_body(w)}]},
    ),
    ("POST", "/api/v1/villages/{village_id}/households/import"): Row(
        _roles(DA, VA),
        files=lambda w: {
            "file": ("households.csv", "户号,姓名,户主\r\nIMP-1,新户主,是\r\n".encode(), "text/csv")
        },
    ),
    ("GET", "/api/v1/villages/{village_id}/notifications"): Row(_roles(DA, VA)),
    # Anyone may upload into their own village (a caller with none gets 404 for it).
    ("POST", "/api/v1/photos"): Row(
        {ANY}, scoped=False, served_by=VILLAGER, files=lambda w: {"file": ("p.png", PNG, "x/y")}
    ),
    ("GET", "/api/v1/photos/{photo_id}"): Row({ANY}, served_by=VILLAGER),
    # A caller without a household of their own is refused by the service (claim.no_household).
    ("POST", "/api/v1/claims"): Row(
        {ANY}, lambda w: claim_body(w), scoped=False, served_by=VILLAGER
    ),
    ("POST", "/api/v1/households/{household_id}/claims"): Row(
        _roles(DA, SL, SC), lambda w: claim_body(w)
    ),
    ("GET", "/api/v1/households/{household_id}/claims"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/claims/{claim_id}"): Row({ANY}, served_by=SC.value),
    ("POST", "/api/v1/claims/{claim_id}/reviews"): Row(
        _roles(DA, SL, SC), lambda w: {"decision": "approve"}
    ),
    ("POST", "/api/v1/claims/{claim_id}/withdraw"): Row({ANY}, served_by=VILLAGER),
    ("GET", "/api/v1/villages/{village_id}/claim-queue"): Row(_roles(DA, SL, SC)),
    ("GET", "/api/v1/villages/{village_id}/claims"): Row(_roles(DA, TS, VA)),
    # Only a household member files (others: objection.no_household); the world's period is
    # not published, so the villager meets objection.period_not_published.
    ("POST", "/api/v1/objections"): Row(
        {ANY},
        lambda w: {"period_id": str(w.period_id), "reason": "分数有误"},
        scoped=False,
        served_by=VILLAGER,
    ),
    ("GET", "/api/v1/objections/{objection_id}"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/households/{household_id}/objections"): Row({ANY}, served_by=SC.value),
    ("GET", "/api/v1/villages/{village_id}/objection-queue"): Row(_roles(DA, VA, SL)),
    # The working group rules; a handler of the household or the card's scorer gets 403 (see
    # tests/objections), anyone outside the village 404.
    ("POST", "/api/v1/objections/{objection_id}/ruling"): Row(
        _roles(DA, VA, SL), lambda w: {"decision": "dismiss", "reason": "经核实评分无误"}
    ),
    # Only the household escalates; the world's objection is open, so that is a 409.
    ("POST", "/api/v1/objections/{objection_id}/escalation"): Row(
        {ANY}, lambda w: {"reason": "不服"}, served_by=VILLAGER
    ),
    ("GET", "/api/v1/towns/{town_id}/objection-escalations"): Row(_roles(DA, TS)),
    ("POST", "/api/v1/objections/{objection_id}/town-ruling"): Row(
        _roles(DA, TS), lambda w: {"decision": "dismiss", "reason": "维持原处理"}
    ),
    ("POST", "/api/v1/villages/{village_id}/activities"): Row(
        _roles(DA, VA), lambda w: activity_body(w)
    ),
    ("GET", "/api/v1/villages/{village_id}/activities"): Row({ANY}),
    ("GET", "/api/v1/activities/{activity_id}"): Row({ANY}),
    ("GET", "/api/v1/activities/{activity_id}/code"): Row(_roles(DA, VA)),
    # Only villagers of the village check in; anyone else finds no such activity.
    ("POST", "/api/v1/activities/{activity_id}/check-ins"): Row(
        {ANY}, lambda w: {"code": "NOT-THE-CODE"}, served_by=VILLAGER
    ),
    ("GET", "/api/v1/activities/{activity_id}/check-ins"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/activities/{activity_id}/attendance"): Row(
        _roles(DA, VA), lambda w: {"attended_check_in_ids": []}
    ),
    ("POST", "/api/v1/villages/{village_id}/shops"): Row(
        _roles(DA, VA), lambda w: {"name": "新超市"}
    ),
    ("GET", "/api/v1/villages/{village_id}/shops"): Row({ANY}),
    ("POST", "/api/v1/towns/{town_id}/shops"): Row(
        _roles(DA), lambda w: {"name": "镇积分超市", "village_ids": [str(w.village_id)]}
    ),
    ("GET", "/api/v1/shops/{shop_id}/items"): Row({ANY}),
    ("POST", "/api/v1/shops/{shop_id}/items"): Row(
        _roles(DA, VA), lambda w: {"name": "毛巾", "category": "生活用品", "price_points": 5}
    ),
    ("PATCH", "/api/v1/shop-items/{shop_item_id}"): Row(
        _roles(DA, VA), lambda w: {"price_points": 6}
    ),
    ("POST", "/api/v1/shop-items/{shop_item_id}/stock"): Row(
        _roles(DA, VA), lambda w: {"kind": "restock", "delta": 5, "reason": "补货"}
    ),
    ("GET", "/api/v1/shop-items/{shop_item_id}/stock-movements"): Row(_roles(DA, VA)),
    ("POST", "/api/v1/shops/{shop_id}/orders"): Row(
        {VILLAGER}, lambda w: {"lines": [{"item_id": str(w.shop_item_id), "quantity": 1}]}
    ),
    ("GET", "/api/v1/shop-orders/{order_id}"): Row({ANY}, served_by=SA.value),
    ("GET", "/api/v1/shops/{shop_id}/orders"): Row(_roles(DA, VA, SA)),
    ("GET", "/api/v1/households/{household_id}/shop-orders"): Row({ANY}, served_by=SC.value),
    ("POST", "/api/v1/shop-orders/{order_id}/cancel"): Row({VILLAGER}),
    ("POST", "/api/v1/shops/{shop_id}/pay-code"): Row({VILLAGER}),
    ("POST", "/api/v1/shops/{shop_id}/scans"): Row(_roles(DA, VA, SA), lambda w: {"code": "x"}),
    ("POST", "/api/v1/shops/{shop_id}/counter-redemptions"): Row(
        _roles(DA, VA, SA),
        lambda w: {"code": "x", "lines": [{"item_id": str(w.shop_item_id), "quantity": 1}]},
    ),
    ("POST", "/api/v1/shops/{shop_id}/pickups"): Row(_roles(DA, VA, SA), lambda w: {"code": "x"}),
    ("POST", "/api/v1/shop-orders/{order_id}/refund"): Row(
        _roles(DA, VA, SA), lambda w: {"reason": "退货"}
    ),
    ("POST", "/api/v1/households/{household_id}/card"): Row(_roles(DA, VA)),
    ("DELETE", "/api/v1/households/{household_id}/card"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/households/{household_id}/card/image"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/shops/{shop_id}/redemption-sheet"): Row(_roles(DA, TS, VA, SA)),
    ("GET", "/api/v1/villages/{village_id}/shop-liability"): Row(_roles(DA, TS, VA)),
    # Town supervision (#14).
    ("GET", "/api/v1/towns/{town_id}/dashboard"): Row(_roles(DA, TS)),
    ("GET", "/api/v1/villages/{village_id}/dashboard"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/periods/{period_id}/scoring-group"): Row(_roles(DA, TS, VA)),
    ("POST", "/api/v1/periods/{period_id}/scoring-group-waiver"): Row(
        _roles(DA, TS), lambda w: {"reason": "评分员病休"}
    ),
    ("POST", "/api/v1/periods/{period_id}/filing"): Row(_roles(DA, VA)),
    ("GET", "/api/v1/periods/{period_id}/filing"): Row(_roles(DA, TS, VA)),
    ("POST", "/api/v1/periods/{period_id}/filing/acknowledge"): Row(_roles(DA, TS)),
    ("POST", "/api/v1/periods/{period_id}/filing/query"): Row(
        _roles(DA, TS), lambda w: {"note": "请补充照片"}
    ),
    ("POST", "/api/v1/periods/{period_id}/inspection"): Row(_roles(DA, TS), lambda w: {"size": 1}),
    ("GET", "/api/v1/periods/{period_id}/inspection"): Row(_roles(DA, TS)),
    ("PUT", "/api/v1/periods/{period_id}/inspection/households/{household_id}"): Row(
        _roles(DA, TS),
        lambda w: {"lines": [{"rule_item_id": str(w.item_id), "outcome": "compliant"}]},
    ),
    ("GET", "/api/v1/audit-entries"): Row(_roles(DA, TS), scoped=False),
    ("GET", "/api/v1/villages/{village_id}/reports/quarterly-progress"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/villages/{village_id}/reports/fund-request"): Row(_roles(DA, TS, VA)),
    ("GET", "/api/v1/towns/{town_id}/reports/quarterly-summary"): Row(_roles(DA, TS)),
}


def activity_body(w: "World") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "title": "清理河道",
        "place": "河边",
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "rule_item_id": str(w.item_id),
        "places": 5,
    }


def claim_body(w: "World") -> dict[str, Any]:
    return {"rule_item_id": str(w.item_id), "activity_on": str(clock.today()), "description": "x"}


def card_body(w: "World") -> dict[str, Any]:
    line = {"id": str(uuid.uuid4()), "rule_item_id": str(w.item_id), "outcome": "compliant"}
    return {"id": str(uuid.uuid4()), "lines": [line]}


@dataclass
class World:
    """One town with one village and one of everything in it, plus a caller for every role."""

    town_id: uuid.UUID
    village_id: uuid.UUID
    group_id: uuid.UUID
    household_id: uuid.UUID
    member_id: uuid.UUID
    person_id: uuid.UUID
    grant_id: uuid.UUID
    rule_set_id: uuid.UUID
    category_id: uuid.UUID
    item_id: uuid.UUID
    year: int
    entry_id: uuid.UUID
    period_id: uuid.UUID
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    photo_id: uuid.UUID = field(default_factory=uuid.uuid4)
    claim_id: uuid.UUID = field(default_factory=uuid.uuid4)
    activity_id: uuid.UUID = field(default_factory=uuid.uuid4)
    shop_id: uuid.UUID | None = None
    shop_item_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    objection_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def path(self, template: str) -> str:
        return template.format(
            town_id=self.town_id,
            village_id=self.village_id,
            group_id=self.group_id,
            household_id=self.household_id,
            member_id=self.member_id,
            person_id=self.person_id,
            grant_id=self.grant_id,
            rule_set_id=self.rule_set_id,
            category_id=self.category_id,
            item_id=self.item_id,
            code=TEMPLATE,
            entry_id=self.entry_id,
            period_id=self.period_id,
            photo_id=self.photo_id,
            claim_id=self.claim_id,
            activity_id=self.activity_id,
            shop_id=self.shop_id,
            shop_item_id=self.shop_item_id,
            order_id=self.order_id,
            objection_id=self.objection_id,
            year=self.year,
        )


async def build_world(db: AsyncSession, settings: Settings) -> World:
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    group = await f.create_group(db, village)
    household = await f.create_household(db, village, group)
    member = await f.add_member(db, household, is_head=True)
    scorer = await f.create_person(db, village)
    scorer_grant = await f.grant(db, scorer, Role.SCORER, village=village)
    year = clock.today().year
    # Approved and in force today, so reads are served and edits meet the frozen-set conflict.
    rule_set, category, item = await f.create_rule_set(db, village, year=year)
    entry = await f.create_entry(db, household, points=10)
    today = clock.today()
    period = ScoringPeriod(
        village_id=village.id,
        town_id=town.id,
        rule_set_id=rule_set.id,
        year=year,
        kind=PeriodKind.MONTH,
        number=today.month,
        starts_on=today.replace(day=1),
        ends_on=today,
        status=PeriodStatus.OPEN,
    )
    db.add(period)
    await db.flush()
    # A card already saved, so reading one is served and saving one is a re-save.
    db.add(
        Scorecard(
            id=uuid.uuid4(),
            period_id=period.id,
            household_id=household.id,
            village_id=village.id,
            scorer_id=scorer.id,
        )
    )
    await db.flush()
    world = World(
        town.id,
        village.id,
        group.id,
        household.id,
        member.id,
        member.person_id,
        scorer_grant.id,
        rule_set.id,
        category.id,
        item.id,
        year,
        entry.id,
        period.id,
    )

    villager_household = await f.create_household(db, village, group)
    villager = await f.add_member(db, villager_household)
    villager_person = await db.get(f.Person, villager.person_id)
    assert villager_person is not None
    world.headers[VILLAGER] = await f.login_headers(db, settings, villager_person)
    world.photo_id = await _photo(db, settings, villager_person)
    world.claim_id = await _claim(db, villager_household, item, villager_person)
    world.activity_id = await _activity(db, village.id, item, scorer)
    world.objection_id = await _objection(db, villager_household, period, villager_person)
    for role in Role:
        person = await f.create_person(db, village)
        if role is Role.DISTRICT_ADMIN:
            await f.grant(db, person, role)
        elif role is Role.TOWN_SUPERVISOR:
            await f.grant(db, person, role, town=town)
        else:
            await f.grant(db, person, role, village=village)
        world.headers[role.value] = await f.login_headers(db, settings, person)
    # A shop with an item, an order of the villager's waiting to be collected, a household card.
    shop = Shop(
        town_id=town.id, village_id=village.id, served_village_ids=[village.id], name="积分超市"
    )
    db.add(shop)
    await db.flush()
    shop_item = ShopItem(
        shop_id=shop.id,
        town_id=town.id,
        name="洗衣粉",
        category="清洁用品",
        price_points=5,
        stock=3,
    )
    order = ShopOrder(
        shop_id=shop.id,
        town_id=town.id,
        village_id=village.id,
        household_id=villager_household.id,
        channel=OrderChannel.AHEAD,
        status=OrderStatus.RESERVED,
        points=0,
        spends_balance=False,
        round_key="test",
        expires_at=datetime.now(UTC) + timedelta(days=1),
        created_by=villager.person_id,
    )
    card = HouseholdCard(
        household_id=household.id, village_id=village.id, issued_by=villager.person_id
    )
    db.add_all([shop_item, order, card])
    await db.flush()
    world.shop_id, world.shop_item_id, world.order_id = shop.id, shop_item.id, order.id
    return world


async def _photo(db: AsyncSession, settings: Settings, uploader: f.Person) -> uuid.UUID:
    assert uploader.village_id is not None
    photo = Photo(
        village_id=uploader.village_id,
        uploader_id=uploader.id,
        media_type="image/png",
        width=4,
        height=3,
        size_bytes=len(PNG),
    )
    db.add(photo)
    await db.flush()
    await LocalPhotoStore(settings.photo_folder).put(image_key(photo.id), PNG)
    return photo.id


async def _claim(
    db: AsyncSession, household: f.Household, item: f.RuleItem, claimant: f.Person
) -> uuid.UUID:
    claim = Claim(
        village_id=household.village_id,
        household_id=household.id,
        rule_item_id=item.id,
        item_lineage_id=item.lineage_id,
        activity_on=clock.today(),
        description="参加志愿服务",
        status=ClaimStatus.PENDING,
        submitted_by=claimant.id,
    )
    db.add(claim)
    await db.flush()
    return claim.id


async def _objection(
    db: AsyncSession, household: f.Household, period: ScoringPeriod, filer: f.Person
) -> uuid.UUID:
    objection = Objection(
        village_id=household.village_id,
        town_id=period.town_id,
        household_id=household.id,
        period_id=period.id,
        reason="卫生项不应扣分",
        status=ObjectionStatus.OPEN,
        filed_by=filer.id,
    )
    db.add(objection)
    await db.flush()
    return objection.id


async def _activity(
    db: AsyncSession, village_id: uuid.UUID, item: f.RuleItem, organiser: f.Person
) -> uuid.UUID:
    now = datetime.now(UTC)
    activity = Activity(
        village_id=village_id,
        title="清理河道",
        place="河边",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        rule_item_id=item.id,
        places=5,
        status=ActivityStatus.ANNOUNCED,
        organiser_id=organiser.id,
    )
    db.add(activity)
    await db.flush()
    return activity.id


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    return await build_world(db, settings)


@pytest.fixture
async def worlds(db: AsyncSession, settings: Settings, world: World) -> tuple[World, World]:
    return world, await build_world(db, settings)


def _allowed(row: Row, role: str) -> bool:
    return ANY in row.allowed or role in row.allowed or role == DA.value


async def _call(
    client: httpx.AsyncClient,
    method: str,
    template: str,
    row: Row,
    target: World,
    headers: dict[str, str],
) -> httpx.Response:
    kwargs: dict[str, Any] = {"headers": headers}
    if row.files:
        kwargs["files"] = row.files(target)
    elif method in ("POST", "PATCH", "PUT"):
        kwargs["json"] = row.body(target) if row.body else {}
    return await client.request(method, target.path(template), **kwargs)


async def _audit_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(AuditEntry))).scalar_one()


def test_every_route_has_a_row(app: FastAPI) -> None:
    # The OpenAPI document lists every route the app serves (none is hidden from it).
    paths = app.openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes - PUBLIC - set(MATRIX) == set(), "routes without a row in the matrix"
    assert (set(MATRIX) | PUBLIC) - routes == set(), "rows for routes that no longer exist"


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_no_token_is_401(
    client: httpx.AsyncClient, world: World, method: str, template: str
) -> None:
    response = await _call(client, method, template, MATRIX[(method, template)], world, {})
    assert response.status_code == 401
    assert response.json()["code"] == "auth.token_missing"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_roles_outside_the_row_are_403(
    client: httpx.AsyncClient, db: AsyncSession, world: World, method: str, template: str
) -> None:
    row = MATRIX[(method, template)]
    refused = [role for role in ROLES if not _allowed(row, role)]
    audits = await _audit_count(db)
    for role in refused:
        response = await _call(client, method, template, row, world, world.headers[role])
        assert response.status_code == 403, (role, response.text)
        assert response.json()["code"] == "auth.forbidden"
    assert await _audit_count(db) == audits


def _scope_callers(row: Row) -> list[str]:
    return [role for role in ROLES if role != DA.value and _allowed(row, role)]


@pytest.mark.parametrize(
    ("method", "template"),
    # District-admin-only routes have no caller whose scope could be too small.
    sorted(k for k, row in MATRIX.items() if row.scoped and _scope_callers(row)),
)
async def test_objects_outside_the_scope_are_404(
    client: httpx.AsyncClient,
    db: AsyncSession,
    worlds: tuple[World, World],
    method: str,
    template: str,
) -> None:
    """Callers allowed the route, but in the other town, never reach the first world's objects."""
    world, other = worlds
    row = MATRIX[(method, template)]
    callers = _scope_callers(row)
    audits = await _audit_count(db)
    for role in callers:
        response = await _call(client, method, template, row, world, other.headers[role])
        assert response.status_code == 404, (role, response.text)
        assert response.json()["code"].endswith("not_found")
    assert await _audit_count(db) == audits


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
async def test_allowed_roles_in_scope_are_served(
    client: httpx.AsyncClient, world: World, method: str, template: str
) -> None:
    """The gate lets the row's roles through (so the 403/404 above are not a locked door).

    Being let through may still meet a state conflict (editing the world's approved rule set);
    what matters here is that it is neither refused nor hidden.
    """
    row = MATRIX[(method, template)]
    role = row.served_by or next(iter(_scope_callers(row)), DA.value)
    response = await _call(client, method, template, row, world, world.headers[role])
    assert response.status_code < 300 or response.status_code in (409, 422), (role, response.text)
    if response.status_code >= 400:
        assert not response.json()["code"].endswith("not_found"), response.text


async def test_objection_handlers_never_rule_on_their_own_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, world: World
) -> None:
    """Conflict of interest on top of scope: a handler in scope who lives in the objecting
    household is refused (403), and nothing is written."""
    objection = await db.get(Objection, world.objection_id)
    assert objection is not None
    household = await db.get(f.Household, objection.household_id)
    assert household is not None
    audits = await _audit_count(db)
    for role in (VA, SL):
        person = await f.create_person(db)
        await f.add_member(db, household, person)
        await f.grant(db, person, role, village=await db.get(f.Village, world.village_id))
        response = await client.post(
            world.path("/api/v1/objections/{objection_id}/ruling"),
            headers=await f.login_headers(db, settings, person),
            json={"decision": "dismiss", "reason": "x"},
        )
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "objection.own_household"
    assert await _audit_count(db) == audits
    await db.refresh(objection)
    assert objection.status is ObjectionStatus.OPEN
