"""A village with households, rules of a seed's policy, and periods whose scores are set."""

from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    PeriodKind,
    PeriodStatus,
    Role,
    RuleSet,
    ScoringPeriod,
    Village,
    VillageGroup,
)
from app.schemas.rules import Policy
from app.services.points_year import quarter_of
from app.services.rankings import refresh_period_ranks
from app.services.rules import get_template
from tests import factories as f

API = "/api/v1"
YEAR = 2031


@dataclass
class Scene:
    village: Village
    rule_set: RuleSet
    admin: dict[str, str]
    supervisor: dict[str, str]
    groups: list[VillageGroup] = field(default_factory=list)


def seed_policy(code: str, **changes: object) -> Policy:
    policy = get_template(code).policy
    return policy.model_copy(update=changes) if changes else policy


async def scene(
    db: AsyncSession,
    settings: Settings,
    policy: Policy,
    *,
    groups: int = 1,
    year: int = YEAR,
    town: f.Town | None = None,
) -> Scene:
    village = await f.create_village(db, town)
    rule_set, _, _ = await f.create_rule_set(db, village, year=year, policy=policy)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    supervisor = await f.create_person(db)
    town = await db.get(f.Town, village.town_id)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    return Scene(
        village,
        rule_set,
        await f.login_headers(db, settings, admin),
        await f.login_headers(db, settings, supervisor),
        [await f.create_group(db, village) for _ in range(groups)],
    )


async def households(
    db: AsyncSession, s: Scene, count: int, group: VillageGroup | None = None, **overrides: object
) -> list[Household]:
    made = []
    for _ in range(count):
        home = await f.create_household(db, s.village, group, **overrides)
        person = await f.create_person(db, s.village, name="张三丰")
        await f.add_member(db, home, person, is_head=True)
        made.append(home)
    return made


async def villager_of(db: AsyncSession, settings: Settings, home: Household) -> dict[str, str]:
    member = await f.add_member(db, home)
    person = await db.get(f.Person, member.person_id)
    assert person is not None
    return await f.login_headers(db, settings, person)


async def approved_period(
    db: AsyncSession,
    s: Scene,
    starts_on: date,
    scores: list[tuple[Household, int | tuple[int, bool]]],
    *,
    kind: PeriodKind = PeriodKind.MONTH,
) -> ScoringPeriod:
    """A period approved with these scores (score, or (score, vetoed)), ready to publish."""
    period = ScoringPeriod(
        village_id=s.village.id,
        town_id=s.village.town_id,
        rule_set_id=s.rule_set.id,
        year=starts_on.year,
        kind=kind,
        number=starts_on.month if kind is PeriodKind.MONTH else (starts_on.month - 1) // 3 + 1,
        starts_on=starts_on,
        ends_on=(
            quarter_of(starts_on).ends_on
            if kind is PeriodKind.QUARTER
            else (starts_on + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        ),
        status=PeriodStatus.APPROVED,
    )
    db.add(period)
    await db.flush()
    for home, value in scores:
        score, vetoed = value if isinstance(value, tuple) else (value, False)
        db.add(
            HouseholdPeriodScore(
                household_id=home.id,
                period_id=period.id,
                village_id=s.village.id,
                score=score,
                vetoed=vetoed,
            )
        )
    await db.flush()
    await refresh_period_ranks(db, period.id)  # as approval does
    return period


async def publish(client: httpx.AsyncClient, s: Scene, period: ScoringPeriod) -> None:
    response = await client.post(f"{API}/periods/{period.id}/publish", headers=s.admin)
    assert response.status_code == 200, response.text


async def published_period(
    client: httpx.AsyncClient,
    db: AsyncSession,
    s: Scene,
    starts_on: date,
    scores: list[tuple[Household, int | tuple[int, bool]]],
) -> ScoringPeriod:
    period = await approved_period(db, s, starts_on, scores)
    await publish(client, s, period)
    return period
