"""Publishing a period tells every bound member of the households scored in it, in the same
transaction as the publication."""

import uuid
from datetime import date, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import (
    HouseholdPeriodScore,
    NotificationKind,
    NotificationStatus,
    PeriodKind,
    PeriodStatus,
    Role,
    ScoringPeriod,
    Village,
)
from app.security import Grant, Principal
from app.services import periods
from tests import factories as f
from tests.notifications.conftest import bound_villager, outbox

API = "/api/v1"
YEAR = 2032


async def approved_period(db: AsyncSession, village: Village, **overrides: object) -> ScoringPeriod:
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR)
    period = ScoringPeriod(
        **{
            "village_id": village.id,
            "town_id": village.town_id,
            "rule_set_id": rule_set.id,
            "year": YEAR,
            "kind": PeriodKind.MONTH,
            "number": 3,
            "starts_on": date(YEAR, 3, 1),
            "ends_on": date(YEAR, 3, 31),
            "status": PeriodStatus.APPROVED,
            **overrides,
        }
    )
    db.add(period)
    await db.flush()
    return period


async def test_publishing_queues_a_message_to_each_bound_member_of_each_scored_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    period = await approved_period(db, village)
    scored = [await f.create_household(db, village) for _ in range(3)]
    reached = []
    for household in scored:
        head = await bound_villager(db, village)
        await f.add_member(db, household, head, is_head=True)
        await f.add_member(db, household)  # not on WeChat
        reached.append(head.id)
        db.add(
            HouseholdPeriodScore(
                household_id=household.id, period_id=period.id, village_id=village.id, score=100
            )
        )
    spouse = await bound_villager(db, village)
    await f.add_member(db, scored[0], spouse)
    reached.append(spouse.id)
    # Not scored in this period (joined later): nothing to tell.
    newcomer = await f.create_household(db, village)
    await f.add_member(db, newcomer, await bound_villager(db, village), is_head=True)
    await db.flush()

    response = await client.post(
        f"{API}/periods/{period.id}/publish",
        headers=await f.login_headers(db, settings, admin),
    )

    assert response.status_code == 200, response.text
    rows = await outbox(db, village)
    assert sorted(row.person_id for row in rows) == sorted(reached)
    closes = clock.today() + timedelta(days=7)
    assert {(row.kind, row.status) for row in rows} == {
        (NotificationKind.PERIOD_PUBLISHED, NotificationStatus.QUEUED)
    }
    expected = {
        "thing1": {"value": f"{YEAR}年3月积分结果"},
        "date2": {"value": f"{closes.year}年{closes.month}月{closes.day}日"},
        "thing3": {"value": "请进小程序查看本户得分"},
    }
    assert [row.data for row in rows] == [expected] * len(reached)


async def test_a_publication_rolled_back_after_queueing_leaves_no_message(
    db: AsyncSession,
) -> None:
    village = await f.create_village(db)
    admin = await f.create_person(db, village)
    period = await approved_period(db, village)
    household = await f.create_household(db, village)
    await f.add_member(db, household, await bound_villager(db, village), is_head=True)
    db.add(
        HouseholdPeriodScore(
            household_id=household.id, period_id=period.id, village_id=village.id, score=1
        )
    )
    await db.flush()
    principal = Principal(
        person_id=admin.id,
        session_id=uuid.uuid4(),
        grants=(Grant(Role.VILLAGE_ADMIN, village.town_id, village.id),),
        village_towns={village.id: village.town_id},
    )

    async with db.begin_nested() as transaction:
        await periods.publish(db, principal, period.id)
        assert len(await outbox(db, village)) == 1
        # Whatever fails later in the request rolls the whole transaction back.
        await transaction.rollback()

    assert await outbox(db, village) == []


async def test_a_refused_publication_queues_nothing(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    period = await approved_period(db, village, status=PeriodStatus.SUBMITTED)
    household = await f.create_household(db, village)
    await f.add_member(db, household, await bound_villager(db, village), is_head=True)
    db.add(
        HouseholdPeriodScore(
            household_id=household.id, period_id=period.id, village_id=village.id, score=1
        )
    )
    await db.flush()

    response = await client.post(
        f"{API}/periods/{period.id}/publish",
        headers=await f.login_headers(db, settings, admin),
    )

    assert response.status_code == 409
    assert response.json()["code"] == "period.wrong_status"
    assert await outbox(db, village) == []
