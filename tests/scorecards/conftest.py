"""A village scored by the month: two village groups, a scorer limited to one of them, a
village-wide scoring leader who lives in the village, and a rule set with an item of every
kind a card meets."""

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    Cadence,
    Household,
    ItemKind,
    Participation,
    PeriodKind,
    PeriodStatus,
    Role,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Town,
    Village,
)
from app.schemas.rules import Policy, ScoringMode
from tests import factories as f

API = "/api/v1"
YEAR = 2025


async def create_period(
    db: AsyncSession,
    rule_set: RuleSet,
    *,
    number: int = 2,
    kind: PeriodKind = PeriodKind.MONTH,
    status: PeriodStatus = PeriodStatus.OPEN,
) -> ScoringPeriod:
    first_month = number if kind is PeriodKind.MONTH else 3 * number - 2
    last_month = first_month if kind is PeriodKind.MONTH else first_month + 2
    period = ScoringPeriod(
        village_id=rule_set.village_id,
        town_id=rule_set.town_id,
        rule_set_id=rule_set.id,
        year=rule_set.year,
        kind=kind,
        number=number,
        starts_on=date(rule_set.year, first_month, 1),
        ends_on=date(rule_set.year, last_month, 28),
        status=status,
    )
    db.add(period)
    await db.flush()
    return period


@dataclass
class Scene:
    village: Village
    rule_set: RuleSet
    period: ScoringPeriod
    items: dict[str, RuleItem]  # clean (10), penalty (-5), veto, quarterly (6), bonus (3)
    group_a: list[Household]  # two participating households
    group_b: list[Household]  # one participating household
    suspended: Household  # in group A, not taking part
    leader_household: Household  # the scoring leader's own
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    people: dict[str, uuid.UUID] = field(default_factory=dict)

    def url(self, household: Household | uuid.UUID, period: ScoringPeriod | None = None) -> str:
        household_id = household if isinstance(household, uuid.UUID) else household.id
        return f"{API}/periods/{(period or self.period).id}/households/{household_id}/scorecard"

    @property
    def worklist_url(self) -> str:
        return f"{API}/periods/{self.period.id}/worklist"

    @property
    def batch_url(self) -> str:
        return f"{API}/periods/{self.period.id}/scorecards/batch"


async def add_items(
    db: AsyncSession, rule_set: RuleSet, category_id: uuid.UUID
) -> dict[str, RuleItem]:
    specs = {
        "penalty": ("2.1", -5, ItemKind.INSPECTION, Cadence.MONTHLY),
        "veto": ("3.1", 0, ItemKind.VETO, Cadence.MONTHLY),
        "quarterly": ("4.1", 6, ItemKind.INSPECTION, Cadence.QUARTERLY),
        "bonus": ("5.1", 3, ItemKind.BONUS, Cadence.MONTHLY),
    }
    items = {}
    for position, (name, (code, points, kind, cadence)) in enumerate(specs.items(), start=2):
        item = RuleItem(
            rule_set_id=rule_set.id,
            village_id=rule_set.village_id,
            category_id=category_id,
            code=code,
            title=f"项目{code}",
            points=points,
            kind=kind,
            cadence=cadence,
            position=position,
        )
        db.add(item)
        items[name] = item
    await db.flush()
    return items


async def build_scene(
    db: AsyncSession,
    settings: Settings,
    *,
    mode: ScoringMode = ScoringMode.ADDITIVE,
    month: int = 2,
) -> Scene:
    village = await f.create_village(db)
    policy = Policy(scoring_mode=mode, base_score=100 if mode is ScoringMode.DEDUCTIVE else None)
    rule_set, category, clean = await f.create_rule_set(
        db, village, year=YEAR, policy=policy, status=RuleSetStatus.DRAFT
    )
    items = {"clean": clean, **await add_items(db, rule_set, category.id)}
    rule_set.status = RuleSetStatus.APPROVED
    await db.flush()
    period = await create_period(db, rule_set, number=month)

    group_a, group_b = await f.create_group(db, village), await f.create_group(db, village)
    scene = Scene(
        village=village,
        rule_set=rule_set,
        period=period,
        items=items,
        group_a=[await f.create_household(db, village, group_a) for _ in range(2)],
        group_b=[await f.create_household(db, village, group_b)],
        suspended=await f.create_household(
            db, village, group_a, participation=Participation.SUSPENDED
        ),
        leader_household=await f.create_household(db, village, group_b),
    )
    for household in [*scene.group_a, *scene.group_b]:
        await f.add_member(db, household, is_head=True)

    scorer = await f.create_person(db, village)
    await f.grant(db, scorer, Role.SCORER, village=village, groups=[group_a])
    leader = await f.create_person(db, village)
    await f.grant(db, leader, Role.SCORING_LEADER, village=village)
    await f.add_member(db, scene.leader_household, leader, is_head=True)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    villager = await f.create_person(db, village)
    await f.add_member(db, scene.group_a[0], villager)
    outsider_village = await f.create_village(db)
    outsider = await f.create_person(db, outsider_village)
    await f.grant(db, outsider, Role.SCORER, village=outsider_village)
    supervisor = await f.create_person(db)
    town = await db.get(Town, village.town_id)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    for name, person in [
        ("scorer", scorer),
        ("leader", leader),
        ("admin", admin),
        ("villager", villager),
        ("outsider", outsider),
        ("supervisor", supervisor),
    ]:
        scene.headers[name] = await f.login_headers(db, settings, person)
        scene.people[name] = person.id
    return scene


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    return await build_scene(db, settings)


def line(item: RuleItem, outcome: str = "compliant", **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "rule_item_id": str(item.id), "outcome": outcome, **extra}


def card(*lines: dict[str, Any], note: str = "") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "note": note, "lines": list(lines)}


async def save(
    client: httpx.AsyncClient, scene: Scene, household: Household, body: dict[str, Any], who: str
) -> httpx.Response:
    return await client.put(scene.url(household), json=body, headers=scene.headers[who])


async def stored(db: AsyncSession, period: ScoringPeriod) -> dict[uuid.UUID, list[tuple[Any, ...]]]:
    """Each stored card of the period (by household) with its lines as (id, item, outcome,
    points), sorted."""
    rows = await db.execute(
        select(col(Scorecard.household_id), col(Scorecard.id)).where(
            col(Scorecard.period_id) == period.id
        )
    )
    cards = {household_id: card_id for household_id, card_id in rows}
    result: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    for household_id, card_id in cards.items():
        lines = await db.execute(
            select(
                col(ScorecardLine.id),
                col(ScorecardLine.rule_item_id),
                col(ScorecardLine.outcome),
                col(ScorecardLine.points),
            ).where(col(ScorecardLine.scorecard_id) == card_id)
        )
        result[household_id] = sorted(tuple(r) for r in lines)
    return result


async def period_status(db: AsyncSession, period: ScoringPeriod) -> PeriodStatus:
    status = await db.scalar(
        select(col(ScoringPeriod.status)).where(col(ScoringPeriod.id) == period.id)
    )
    assert status is not None
    return status


async def card_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(Scorecard))).scalar_one()
