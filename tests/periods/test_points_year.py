"""The calendar as periods and standings show it: lateness stays visible once a period is
published, and villagers' ranks leave out what is not published yet."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    LedgerKind,
    PeriodKind,
    PeriodStatus,
    Role,
    ScoringPeriod,
    Village,
)
from app.schemas.rules import Deadline, Deadlines, Policy
from app.services import ledger, rankings
from app.services.points_year import calendar_of
from app.timeutil import SHANGHAI
from tests import factories as f

YEAR = 2031
API = "/api/v1"
# 旧县: scored by the 20th, published by the 25th of the month.
JIUXIAN = Policy(
    deadlines=Deadlines(scoring_due=Deadline(day=20), publication_due=Deadline(day=25))
)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


async def month(
    db: AsyncSession, village: Village, rule_set_id: object, number: int, **fields: object
) -> ScoringPeriod:
    span = calendar_of(JIUXIAN).period_of(date(YEAR, number, 1))
    period = ScoringPeriod(
        village_id=village.id, town_id=village.town_id, rule_set_id=rule_set_id, year=YEAR,
        kind=PeriodKind.MONTH, number=number, starts_on=span.starts_on, ends_on=span.ends_on,
        scoring_due_on=calendar_of(JIUXIAN).scoring_due(span.ends_on),
        publication_due_on=calendar_of(JIUXIAN).publication_due(span.ends_on), **fields,
    )  # fmt: skip
    db.add(period)
    await db.flush()
    return period


async def test_a_month_published_late_stays_late(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 5: the town still sees, in May, that March was scored and published late."""
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR, policy=JIUXIAN)
    await month(
        db, village, rule_set.id, 2, status=PeriodStatus.PUBLISHED,
        submitted_at=at(date(YEAR, 2, 19)), published_at=at(date(YEAR, 2, 25), hour=23),
    )  # fmt: skip
    await month(
        db, village, rule_set.id, 3, status=PeriodStatus.PUBLISHED,
        submitted_at=at(date(YEAR, 3, 21)), published_at=at(date(YEAR, 3, 27)),
    )  # fmt: skip
    await month(db, village, rule_set.id, 4, status=PeriodStatus.SCORING)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    set_clock(at(date(YEAR, 5, 2)))

    listing = await client.get(
        f"{API}/villages/{village.id}/periods",
        params={"year": YEAR},
        headers=await f.login_headers(db, settings, supervisor),
    )

    assert listing.status_code == 200, listing.text
    lateness = [(p["number"], p["scoring_late"], p["publication_late"]) for p in listing.json()]
    # February on time (the 25th, late evening, is still the 25th in Shanghai); March late on
    # both counts though published; April not scored by 20 April.
    assert lateness == [(2, False, False), (3, True, True), (4, True, True)]


async def test_a_villagers_rank_leaves_out_periods_not_yet_published(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Item 10: approved March would lift the neighbour above this household; until March is
    published the villager's rank, like their score, is February's. Ranks are stored at
    publication (app/services/rankings.py), so the year's rank sums published periods only,
    for staff too; staff preview an approved month's own ranks on its results list."""
    village = await f.create_village(db)
    rule_set, _, item = await f.create_rule_set(db, village, year=YEAR)
    mine, neighbour = [await f.create_household(db, village) for _ in range(2)]
    member = await f.add_member(db, mine)
    villager = await db.get(f.Person, member.person_id)
    assert villager is not None

    async def scored(period: ScoringPeriod, points: list[tuple[Household, int]]) -> None:
        for household, score in points:
            await ledger.post(
                db,
                village.id,
                [
                    ledger.NewEntry(
                        household_id=household.id, kind=LedgerKind.INSPECTION, points=score,
                        counts_score=True, counts_balance=True, year=YEAR, period_id=period.id,
                        rule_item=item, source_type="test",
                    )
                ],
            )  # fmt: skip
            db.add(
                HouseholdPeriodScore(
                    household_id=household.id, period_id=period.id, village_id=village.id,
                    score=score,
                )
            )  # fmt: skip
        await db.flush()
        await rankings.refresh_period_ranks(db, period.id)

    february = await month(db, village, rule_set.id, 2, status=PeriodStatus.PUBLISHED)
    await scored(february, [(mine, 50), (neighbour, 30)])
    march = await month(db, village, rule_set.id, 3, status=PeriodStatus.APPROVED)
    await scored(march, [(neighbour, 40)])
    staff = await f.create_person(db, village)
    await f.grant(db, staff, Role.VILLAGE_ADMIN, village=village)

    seen = await client.get(
        f"{API}/households/{mine.id}/standing",
        params={"year": YEAR},
        headers=await f.login_headers(db, settings, villager),
    )
    by_staff = await client.get(
        f"{API}/households/{mine.id}/standing",
        params={"year": YEAR},
        headers=await f.login_headers(db, settings, staff),
    )

    assert seen.status_code == 200, seen.text
    assert (seen.json()["year_score"], seen.json()["rank_in_village"]) == (50, 1)
    assert seen.json()["latest_period"]["number"] == 2
    assert (by_staff.json()["year_score"], by_staff.json()["rank_in_village"]) == (50, 1)
