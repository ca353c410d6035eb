"""A villager's rank: ties share it, the group ranks apart, vetoed households are left out."""

from datetime import date

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    HouseholdPeriodScore,
    Participation,
    PeriodKind,
    PeriodStatus,
    Role,
    ScoringPeriod,
)
from app.services.rankings import refresh_period_ranks
from tests import factories as f
from tests.ledger.conftest import post_entry

YEAR = 2031


async def test_year_and_period_ranks_in_village_and_group(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await f.create_village(db)
    east, west = await f.create_group(db, village), await f.create_group(db, village)
    homes = [await f.create_household(db, village, g) for g in (east, east, west, west)]
    left_out = await f.create_household(db, village, east, participation=Participation.SUSPENDED)
    for home, points in zip(homes, (50, 80, 80, 30), strict=True):
        await post_entry(db, home, points, year=YEAR)
    await post_entry(db, left_out, 99, year=YEAR)
    member = await f.add_member(db, homes[0])
    villager = await db.get(f.Person, member.person_id)
    assert villager is not None
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR)
    period = ScoringPeriod(
        village_id=village.id, town_id=village.town_id, rule_set_id=rule_set.id, year=YEAR,
        kind=PeriodKind.MONTH, number=1, starts_on=date(YEAR, 1, 1), ends_on=date(YEAR, 1, 31),
        status=PeriodStatus.PUBLISHED,
    )  # fmt: skip
    db.add(period)
    await db.flush()
    for home, score, vetoed in zip(
        homes, (50, 80, 80, 0), (False, False, False, True), strict=True
    ):
        db.add(
            HouseholdPeriodScore(
                household_id=home.id,
                period_id=period.id,
                village_id=village.id,
                score=score,
                vetoed=vetoed,
            )
        )
    await db.flush()
    await refresh_period_ranks(db, period.id)  # as its publication does

    response = await client.get(
        f"/api/v1/households/{homes[0].id}/standing",
        params={"year": YEAR},
        headers=await f.login_headers(db, settings, villager),
    )
    assert response.status_code == 200
    body = response.json()
    # 80, 80, 50, 30 among the four taking part: two share first place, this one is third.
    assert (body["year_score"], body["rank_in_village"], body["rank_in_group"]) == (50, 3, 2)
    assert body["ranked_households"] == 4
    assert body["latest_period"]["score"] == 50
    assert (body["latest_period"]["rank_in_village"], body["latest_period"]["rank_in_group"]) == (
        3,
        2,
    )

    staff = await f.create_person(db, village)
    await f.grant(db, staff, Role.VILLAGE_ADMIN, village=village)
    vetoed = await client.get(
        f"/api/v1/households/{homes[3].id}/standing",
        params={"year": YEAR},
        headers=await f.login_headers(db, settings, staff),
    )
    assert vetoed.json()["latest_period"]["vetoed"] is True
    assert vetoed.json()["latest_period"]["rank_in_village"] is None
    neighbour = await client.get(
        f"/api/v1/households/{homes[1].id}/standing",
        headers=await f.login_headers(db, settings, villager),
    )
    assert neighbour.status_code == 404
