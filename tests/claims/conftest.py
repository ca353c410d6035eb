"""A village with approved rules holding claimable bonus items, a claimant household, and a
scoring group: three scorers and a leader."""

from dataclasses import dataclass, field
from datetime import date

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import (
    Cadence,
    Claim,
    Household,
    ItemKind,
    LedgerEntry,
    LedgerKind,
    Person,
    Role,
    RuleCategory,
    RuleItem,
    RuleSetStatus,
    Village,
    VillageGroup,
)
from app.schemas.rules import ClaimPolicy, Policy
from tests import factories as f

API = "/api/v1"
TODAY = clock.today()


@dataclass
class Items:
    volunteer: RuleItem  # 2 points, claimable, cap 4 a period
    blood: RuleItem  # 5 points, claimable, photos required
    honour: RuleItem  # a bonus, but not claimable
    inspection: RuleItem
    veto: RuleItem  # 一票否决, scored monthly


@dataclass
class Scene:
    village: Village
    group: VillageGroup
    household: Household
    items: Items
    villager: dict[str, str]
    villager_person: Person
    scorers: list[dict[str, str]]
    leader: dict[str, str]
    admin: dict[str, str]
    # A scorer who lives in the claimant household.
    scorer_at_home: dict[str, str]
    others: dict[str, dict[str, str]] = field(default_factory=dict)


async def headers_for(db: AsyncSession, settings: Settings, person: Person) -> dict[str, str]:
    return await f.login_headers(db, settings, person)


async def add_items(
    db: AsyncSession,
    village: Village,
    *,
    policy: Policy,
    year: int = TODAY.year,
    effective_from: date | None = None,
) -> Items:
    rule_set, category, inspection = await f.create_rule_set(
        db, village, year=year, status=RuleSetStatus.DRAFT, policy=policy,
        effective_from=effective_from,
    )  # fmt: skip
    bonus = RuleCategory(rule_set_id=rule_set.id, village_id=village.id, name="加分项")
    db.add(bonus)
    await db.flush()

    def item(code: str, title: str, points: int, **extra: object) -> RuleItem:
        row = RuleItem(
            rule_set_id=rule_set.id,
            village_id=village.id,
            category_id=bonus.id,
            code=code,
            title=title,
            points=points,
            kind=ItemKind.BONUS,
            cadence=Cadence.MONTHLY,
            **extra,
        )
        db.add(row)
        return row

    items = Items(
        volunteer=item("J1", "参加志愿服务", 2, claimable=True, period_cap=4),
        blood=item("J2", "无偿献血", 5, claimable=True, evidence_required=True),
        honour=item("J3", "获评县级以上荣誉", 10),
        inspection=inspection,
        veto=RuleItem(
            rule_set_id=rule_set.id,
            village_id=village.id,
            category_id=category.id,
            code="V1",
            title="违法建设",
            points=0,
            kind=ItemKind.VETO,
            cadence=Cadence.MONTHLY,
        ),
    )
    db.add(items.veto)
    await db.flush()
    rule_set.status = RuleSetStatus.APPROVED
    await db.flush()
    return items


async def build_scene(
    db: AsyncSession, settings: Settings, *, policy: Policy | None = None
) -> Scene:
    village = await f.create_village(db)
    group = await f.create_group(db, village)
    household = await f.create_household(db, village, group)
    items = await add_items(
        db, village, policy=policy or Policy(claims=ClaimPolicy(review_quorum=2))
    )
    member = await f.add_member(db, household, is_head=True)
    villager = await db.get(Person, member.person_id)
    assert villager is not None

    async def staff(role: Role) -> dict[str, str]:
        person = await f.create_person(db, village)
        await f.grant(db, person, role, village=village)
        return await headers_for(db, settings, person)

    scorers = [await staff(Role.SCORER) for _ in range(3)]
    at_home = await f.create_person(db, village)
    await f.add_member(db, household, at_home)
    await f.grant(db, at_home, Role.SCORER, village=village)
    return Scene(
        village=village,
        group=group,
        household=household,
        items=items,
        villager=await headers_for(db, settings, villager),
        villager_person=villager,
        scorers=scorers,
        leader=await staff(Role.SCORING_LEADER),
        admin=await staff(Role.VILLAGE_ADMIN),
        scorer_at_home=await headers_for(db, settings, at_home),
    )


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    return await build_scene(db, settings)


def claim_body(item: RuleItem, on: date = TODAY, **extra: object) -> dict[str, object]:
    return {
        "rule_item_id": str(item.id),
        "activity_on": on.isoformat(),
        "description": "打扫村道两小时",
        **extra,
    }


async def submit(
    client: httpx.AsyncClient, headers: dict[str, str], item: RuleItem, **extra: object
) -> httpx.Response:
    return await client.post(f"{API}/claims", headers=headers, json=claim_body(item, **extra))


async def review(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    claim_id: str,
    decision: str = "approve",
    comment: str = "",
) -> httpx.Response:
    return await client.post(
        f"{API}/claims/{claim_id}/reviews",
        headers=headers,
        json={"decision": decision, "comment": comment},
    )


async def claim_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(Claim))).scalar_one()


async def bonus_entries(db: AsyncSession, household: Household) -> list[LedgerEntry]:
    rows = await db.execute(
        select(LedgerEntry)
        .where(LedgerEntry.household_id == household.id, LedgerEntry.kind == LedgerKind.BONUS)
        .order_by(LedgerEntry.seq)
    )
    return list(rows.scalars())
