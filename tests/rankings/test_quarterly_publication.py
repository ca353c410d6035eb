"""华新: months scored and approved monthly, published a quarter at a time."""

from datetime import date

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Notification, PeriodStatus, ScoringPeriod
from app.schemas.rules import Deadline, Deadlines, PeriodLength
from tests import factories as f
from tests.notifications.conftest import bound_villager
from tests.rankings.conftest import (
    API,
    YEAR,
    approved_period,
    households,
    scene,
    seed_policy,
    villager_of,
)


async def test_huaxin_publishes_the_quarters_months_together(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    policy = seed_policy(
        "huaxin-governance-2024",
        deadlines=Deadlines(publication_due=Deadline(day=10, months_after_period_end=1)),
    )
    assert policy.publication_period is PeriodLength.QUARTER
    s = await scene(db, settings, policy)
    a, b = await households(db, s, 2, s.groups[0])
    person = await bound_villager(db, s.village)
    await f.add_member(db, a, person)

    # April's due date for publication is counted from the quarter's end, not April's.
    opened = await client.post(
        f"{API}/villages/{s.village.id}/periods",
        json={"starts_on": f"{YEAR}-04-01"},
        headers=s.admin,
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["publication_due_on"] == f"{YEAR}-07-10"

    january = await approved_period(db, s, date(YEAR, 1, 1), [(a, 90), (b, 95)])
    february = await approved_period(db, s, date(YEAR, 2, 1), [(a, 100), (b, 80)])
    early = await client.post(f"{API}/periods/{february.id}/publish", headers=s.admin)
    assert early.status_code == 409
    assert (early.json()["code"], early.json()["months"]) == ("period.quarter_incomplete", [3])
    statuses = await db.execute(
        select(ScoringPeriod.status).where(ScoringPeriod.village_id == s.village.id)
    )
    assert PeriodStatus.PUBLISHED not in set(statuses.scalars())
    assert (await db.execute(select(Notification))).first() is None

    await approved_period(db, s, date(YEAR, 3, 1), [(a, 85), (b, 90)])
    published = await client.post(f"{API}/periods/{january.id}/publish", headers=s.admin)
    assert published.status_code == 200, published.text
    months = (
        await db.execute(
            select(ScoringPeriod.number, ScoringPeriod.status)
            .where(ScoringPeriod.village_id == s.village.id, ScoringPeriod.number <= 3)
            .order_by(ScoringPeriod.number)
            .execution_options(populate_existing=True)
        )
    ).all()
    assert [tuple(m) for m in months] == [(n, PeriodStatus.PUBLISHED) for n in (1, 2, 3)]
    [message] = (await db.execute(select(Notification))).scalars()
    assert message.data["thing1"]["value"] == f"{YEAR}年第1季度积分结果"

    # The quarterly notice: each month and the quarter's total.
    notice = await client.get(
        f"{API}/villages/{s.village.id}/rankings",
        params={"span": "quarter", "year": YEAR, "number": 1},
        headers=await villager_of(db, settings, b),
    )
    rows = notice.json()["items"]
    assert [(r["score"], r["rank"]) for r in rows] == [(275, 1), (265, 2)]
    assert [(m["number"], m["score"]) for m in rows[0]["months"]] == [(1, 90), (2, 100), (3, 85)]
    assert notice.json()["own"]["household_id"] == str(b.id)
