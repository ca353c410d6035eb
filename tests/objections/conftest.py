"""A village whose February 2031 is scored, approved and published through the API: the objecting
household (card 7 of 10 on the inspection item), a neighbour (10), the working group (an admin,
a leader, the scorer who scored the cards), an admin living in the objecting household, and the
town supervisor."""

import calendar
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    LedgerEntry,
    LedgerKind,
    Objection,
    Outcome,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Village,
    WechatIdentity,
)
from app.schemas.rules import Policy
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.claims.conftest import Items, add_items

API = "/api/v1"
# Published on 5 March 2031 (Asia/Shanghai); the objection window is the policy's 7 days.
PUBLISHED_AT = datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI)
FEBRUARY = date(2031, 2, 1)


@dataclass
class Scene:
    village: Village
    items: Items
    household: Household
    neighbour: Household
    villager: Person
    villager_headers: dict[str, str]
    neighbour_headers: dict[str, str]
    admin_headers: dict[str, str]
    leader_headers: dict[str, str]
    scorer: Person
    scorer_headers: dict[str, str]
    admin_at_home_headers: dict[str, str]
    town_headers: dict[str, str]


async def build_scene(
    db: AsyncSession,
    settings: Settings,
    *,
    policy: Policy | None = None,
    year: int = 2031,
    effective_from: date | None = None,
) -> Scene:
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    group = await f.create_group(db, village)
    items = await add_items(
        db, village, policy=policy or Policy(), year=year, effective_from=effective_from
    )
    household = await f.create_household(db, village, group)
    neighbour = await f.create_household(db, village, group)
    member = await f.add_member(db, household, is_head=True)
    villager = await db.get(Person, member.person_id)
    assert villager is not None
    db.add(
        WechatIdentity(openid=f"o-{uuid.uuid4().hex[:12]}", session_key="k", person_id=villager.id)
    )
    neighbour_member = await f.add_member(db, neighbour, is_head=True)
    neighbour_person = await db.get(Person, neighbour_member.person_id)
    assert neighbour_person is not None

    async def staff(role: Role, **where: object) -> tuple[Person, dict[str, str]]:
        person = await f.create_person(db, village)
        await f.grant(db, person, role, **where)  # type: ignore[arg-type]
        return person, await f.login_headers(db, settings, person)

    _, admin = await staff(Role.VILLAGE_ADMIN, village=village)
    _, leader = await staff(Role.SCORING_LEADER, village=village)
    scorer, scorer_headers = await staff(Role.SCORER, village=village)
    at_home = await f.create_person(db, village)
    await f.add_member(db, household, at_home)
    await f.grant(db, at_home, Role.VILLAGE_ADMIN, village=village)
    _, supervisor = await staff(Role.TOWN_SUPERVISOR, town=town)
    await db.flush()
    return Scene(
        village=village,
        items=items,
        household=household,
        neighbour=neighbour,
        villager=villager,
        villager_headers=await f.login_headers(db, settings, villager),
        neighbour_headers=await f.login_headers(db, settings, neighbour_person),
        admin_headers=admin,
        leader_headers=leader,
        scorer=scorer,
        scorer_headers=scorer_headers,
        admin_at_home_headers=await f.login_headers(db, settings, at_home),
        town_headers=supervisor,
    )


async def scored_period(
    db: AsyncSession,
    scene: Scene,
    starts_on: date,
    cards: dict[uuid.UUID, tuple[int, bool]],
    *,
    scorer: Person | None = None,
) -> ScoringPeriod:
    """A submitted month with a card per household: (points on the inspection item, vetoed);
    negative points are a finding deducted (deductive rules)."""
    period = ScoringPeriod(
        village_id=scene.village.id,
        town_id=scene.village.town_id,
        rule_set_id=scene.items.inspection.rule_set_id,
        year=starts_on.year,
        kind=PeriodKind.MONTH,
        number=starts_on.month,
        starts_on=starts_on,
        ends_on=starts_on.replace(day=calendar.monthrange(starts_on.year, starts_on.month)[1]),
        status=PeriodStatus.SUBMITTED,
    )
    db.add(period)
    await db.flush()
    for household_id, (points, vetoed) in cards.items():
        card = Scorecard(
            id=uuid.uuid4(),
            period_id=period.id,
            household_id=household_id,
            village_id=scene.village.id,
            scorer_id=(scorer or scene.scorer).id,
        )
        db.add(card)
        await db.flush()
        for item, outcome, line_points in (
            (scene.items.inspection, Outcome.FINDING if points < 0 else Outcome.COMPLIANT, points),
            (scene.items.veto, Outcome.FINDING if vetoed else Outcome.COMPLIANT, 0),
        ):
            db.add(
                ScorecardLine(
                    id=uuid.uuid4(),
                    scorecard_id=card.id,
                    village_id=scene.village.id,
                    rule_item_id=item.id,
                    outcome=outcome,
                    points=line_points,
                    photos=["card-photo-1"],
                )
            )
    await db.flush()
    return period


async def approve_and_publish(
    client: httpx.AsyncClient, scene: Scene, period: ScoringPeriod
) -> None:
    for step in ("approve", "publish"):
        response = await client.post(
            f"{API}/periods/{period.id}/{step}", headers=scene.admin_headers
        )
        assert response.status_code == 200, response.text


async def published_february(
    db: AsyncSession,
    client: httpx.AsyncClient,
    scene: Scene,
    set_clock: Callable[[datetime], None],
    *,
    points: int = 7,
    vetoed: bool = False,
) -> ScoringPeriod:
    set_clock(PUBLISHED_AT)
    period = await scored_period(
        db, scene, FEBRUARY, {scene.household.id: (points, vetoed), scene.neighbour.id: (10, False)}
    )
    await approve_and_publish(client, scene, period)
    return period


async def entry_of(
    db: AsyncSession, household: Household, period: ScoringPeriod, kind: LedgerKind
) -> LedgerEntry:
    return (
        await db.execute(
            select(LedgerEntry).where(
                LedgerEntry.household_id == household.id,
                LedgerEntry.period_id == period.id,
                LedgerEntry.kind == kind,
                LedgerEntry.source_type == "scorecard_line",
            )
        )
    ).scalar_one()


async def file(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    period: ScoringPeriod,
    entry: LedgerEntry | None = None,
    **extra: object,
) -> httpx.Response:
    body: dict[str, object] = {
        "period_id": str(period.id),
        "reason": "卫生检查那天家里有人，打扫过了",
    }
    if entry is not None:
        body["ledger_entry_id"] = str(entry.id)
    body.update(extra)
    return await client.post(f"{API}/objections", headers=headers, json=body)


async def rule(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    objection_id: str,
    decision: str,
    reason: str = "经工作小组核实",
    *,
    town: bool = False,
    **extra: object,
) -> httpx.Response:
    route = "town-ruling" if town else "ruling"
    return await client.post(
        f"{API}/objections/{objection_id}/{route}",
        headers=headers,
        json={"decision": decision, "reason": reason, **extra},
    )


async def objection_count(db: AsyncSession) -> int:
    return (await db.execute(select(func.count()).select_from(Objection))).scalar_one()


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    return await build_scene(db, settings)
