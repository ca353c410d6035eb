"""The town dashboard's figures on a town whose answers are known."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import Claim, ClaimStatus, Household, Participation, PeriodFigures, Role
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.supervision.conftest import (
    API,
    FAIR,
    YEAR,
    add_village,
    at,
    build_scene,
    run_period,
)


async def test_town_dashboard_figures(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    fair, favour = scene.villages["fair"], scene.villages["favour"]
    # One household that left and one that never joined: eligible counts the second only.
    await f.create_household(db, fair.village, participation=Participation.LEFT)
    await f.create_household(db, fair.village, participation=Participation.PENDING)
    set_clock(at(date(YEAR, 4, 2)))

    response = await client.get(
        f"{API}/towns/{scene.town.id}/dashboard",
        params={"year": YEAR, "quarter": 1},
        headers=scene.supervisor,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window"] == {
        "year": YEAR,
        "quarter": 1,
        "month": None,
        "starts_on": f"{YEAR}-01-01",
        "ends_on": f"{YEAR}-03-31",
    }
    villages = {v["name"]: v for v in body["villages"]}
    assert list(villages) == ["人情村", "和美村"]  # sorted by name

    fair_row = villages["和美村"]
    assert fair_row["participation"] == {"participating": 4, "eligible": 5}
    [march] = fair_row["periods"]
    assert (march["scoring_days_late"], march["publication_days_late"]) == (0, 0)
    assert march["households_scored"] == 4
    assert march["full_score"] == 10
    assert (march["mean"], march["std_dev"], march["share_full"]) == (7.0, 2.24, 0.25)
    assert march["distinct_scores"] == 4
    assert march["standout_scorers"] == []
    assert march["group_size"] == 2
    # Published on the 24th and not filed by 2 April.
    assert march["filing"] == {
        "status": None,
        "filed_at": None,
        "days_after_publication": 9,
        "answer_note": "",
    }
    assert fair_row["periods_late"] == 0

    favour_row = villages["人情村"]
    [march] = favour_row["periods"]
    assert (march["scoring_days_late"], march["publication_days_late"]) == (3, 5)
    assert (march["mean"], march["std_dev"], march["share_full"]) == (8.75, 2.17, 0.75)
    assert march["distinct_scores"] == 2
    [standout] = march["standout_scorers"]
    assert standout["name"] == "人情村评分员1"
    assert (standout["cards"], standout["share_full"], standout["flags"]) == (
        3,
        1.0,
        ["all_full_score"],
    )
    assert favour_row["periods_late"] == 1

    # What approval stored is what the read shows: one row per period, not recomputed.
    stored = (
        await db.execute(
            select(PeriodFigures).where(col(PeriodFigures.village_id) == favour.village.id)
        )
    ).scalar_one()
    assert stored.share_full == 0.75


async def test_lateness_runs_until_done(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Not yet published: late by today, and the spread is there from approval on."""
    town = await f.create_town(db)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    headers = await f.login_headers(db, settings, supervisor)
    v = await add_village(db, settings, town, "迟公示村", FAIR)
    await run_period(client, db, set_clock, v, FAIR, submitted=date(YEAR, 3, 20), published=None)
    set_clock(at(date(YEAR, 3, 31)))
    response = await client.get(
        f"{API}/villages/{v.village.id}/dashboard",
        params={"year": YEAR, "month": 3},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    [march] = response.json()["periods"]
    assert (march["scoring_days_late"], march["publication_days_late"]) == (0, 6)
    assert march["status"] == "approved"
    assert march["mean"] == 7.0
    assert response.json()["periods_late"] == 1


async def test_claims_redemptions_and_liability(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    fair = scene.villages["fair"]
    household: Household = fair.households[0]
    villager = await f.add_member(db, household)
    for day in (date(YEAR, 3, 30), date(YEAR, 3, 10), date(YEAR, 2, 1)):
        set_clock(at(day))
        db.add(
            Claim(
                village_id=fair.village.id,
                household_id=household.id,
                rule_item_id=fair.item.id,
                item_lineage_id=fair.item.lineage_id,
                activity_on=day,
                description="志愿服务",
                status=ClaimStatus.PENDING,
                submitted_by=villager.person_id,
            )
        )
        await db.flush()
    set_clock(at(date(YEAR, 4, 2)))
    response = await client.get(
        f"{API}/villages/{fair.village.id}/dashboard",
        params={"year": YEAR, "quarter": 1},
        headers=fair.admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["claims_pending"] == {
        "total": 3,
        "under_7_days": 1,
        "days_7_to_30": 1,
        "over_30_days": 1,
    }
    # Approval put 28 points on the village's balances (10 + 6 + 8 + 4); nothing spent yet.
    assert body["liability"] == {"outstanding_points": 28, "outstanding_yuan": None}
    assert body["redemptions"] == {"orders": 0, "points": 0, "yuan": None}


@pytest.mark.parametrize("params", [{"quarter": 1, "month": 2}, {"quarter": 5}])
async def test_bad_window_is_refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    params: dict[str, int],
) -> None:
    town = await f.create_town(db)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    response = await client.get(
        f"{API}/towns/{town.id}/dashboard",
        params=params,
        headers=await f.login_headers(db, settings, supervisor),
    )
    assert response.status_code == 422
    if "month" in params:
        assert_problem(response, 422, "dashboard.window_ambiguous")


async def test_scope(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """A supervisor sees only their town; a village admin only their village; villagers none."""
    scene = await build_scene(client, db, settings, set_clock)
    fair = scene.villages["fair"]
    other_town = await f.create_town(db)
    outsider = await f.create_person(db)
    await f.grant(db, outsider, Role.TOWN_SUPERVISOR, town=other_town)
    outsider_headers = await f.login_headers(db, settings, outsider)
    for path in (
        f"{API}/towns/{scene.town.id}/dashboard",
        f"{API}/villages/{fair.village.id}/dashboard",
        f"{API}/towns/{scene.town.id}/reports/quarterly-summary",
        f"{API}/villages/{fair.village.id}/reports/fund-request",
        f"{API}/periods/{fair.period_id}/scoring-group",
    ):
        response = await client.get(path, headers=outsider_headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"].endswith("not_found")
    other_admin = scene.villages["favour"].admin
    response = await client.get(f"{API}/villages/{fair.village.id}/dashboard", headers=other_admin)
    assert_problem(response, 404, "village.not_found")
    response = await client.get(f"{API}/towns/{scene.town.id}/dashboard", headers=other_admin)
    assert_problem(response, 403, "auth.forbidden")
    villager = await f.add_member(db, fair.households[0])
    person = await db.get(f.Person, villager.person_id)
    assert person is not None
    villager_headers = await f.login_headers(db, settings, person)
    for path in (
        f"{API}/towns/{scene.town.id}/dashboard",
        f"{API}/villages/{fair.village.id}/dashboard",
        f"{API}/audit-entries",
    ):
        response = await client.get(path, headers=villager_headers)
        assert_problem(response, 403, "auth.forbidden")
