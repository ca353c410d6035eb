"""Queueing: one outbox row per bound recipient, in the caller's transaction, data shaped and
cut to WeChat's limits."""

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import NotificationStatus, Person, WechatIdentity
from app.services.notifications import (
    NotificationKind,
    notify_household,
    notify_person,
    template_data,
)
from tests import factories as f
from tests.notifications.conftest import bound_villager, outbox


async def test_a_bound_person_gets_one_queued_message(db: AsyncSession) -> None:
    village = await f.create_village(db)
    person = await bound_villager(db, village, "openid-zhang")

    queued = await notify_person(
        db,
        village_id=village.id,
        person_id=person.id,
        kind=NotificationKind.CLAIM_DECIDED,
        data={"thing1": "志愿服务加分", "phrase2": "已通过"},
        page="pages/claims/detail?id=1",
    )

    assert queued == 1
    [row] = await outbox(db, village)
    assert (row.person_id, row.openid, row.kind, row.status, row.attempts) == (
        person.id,
        "openid-zhang",
        NotificationKind.CLAIM_DECIDED,
        NotificationStatus.QUEUED,
        0,
    )
    assert row.data == {"thing1": {"value": "志愿服务加分"}, "phrase2": {"value": "已通过"}}
    assert row.page == "pages/claims/detail?id=1"
    assert row.template_id is None  # chosen from the settings when sent
    assert row.lease_expires_at is None


async def test_nobody_to_reach_is_zero_not_an_error(db: AsyncSession) -> None:
    village = await f.create_village(db)
    unbound = await f.create_person(db, village)

    assert (
        await notify_person(
            db,
            village_id=village.id,
            person_id=unbound.id,
            kind=NotificationKind.ORDER_EXPIRING,
            data={"thing1": "兑换单即将过期"},
        )
        == 0
    )
    assert await outbox(db, village) == []


async def test_a_person_named_with_another_village_is_not_reached(db: AsyncSession) -> None:
    village, other = await f.create_village(db), await f.create_village(db)
    person = await bound_villager(db, village)
    # A member of a household of the other village, though registered in the first: reachable.
    mover = await bound_villager(db, village)
    await f.add_member(db, await f.create_household(db, other), mover)

    async def notify(who: Person) -> int:
        return await notify_person(
            db,
            village_id=other.id,
            person_id=who.id,
            kind=NotificationKind.CLAIM_DECIDED,
            data={"thing1": "x"},
        )

    assert (await notify(person), await notify(mover)) == (0, 1)
    assert [row.person_id for row in await outbox(db, other)] == [mover.id]


async def test_a_household_reaches_each_bound_member_and_no_one_else(db: AsyncSession) -> None:
    village = await f.create_village(db)
    home, neighbour = await f.create_household(db, village), await f.create_household(db, village)
    head = await bound_villager(db, village)
    spouse = await bound_villager(db, village)
    await f.add_member(db, home, head, is_head=True)
    await f.add_member(db, home, spouse)
    await f.add_member(db, home)  # no WeChat
    await f.add_member(db, neighbour, await bound_villager(db, village), is_head=True)

    queued = await notify_household(
        db,
        village_id=village.id,
        household_id=home.id,
        kind=NotificationKind.OBJECTION_RULED,
        data={"thing1": "异议已处理"},
    )

    assert queued == 2
    assert {row.person_id for row in await outbox(db, village)} == {head.id, spouse.id}


async def test_a_household_named_with_another_village_reaches_nobody(db: AsyncSession) -> None:
    village, other = await f.create_village(db), await f.create_village(db)
    home = await f.create_household(db, village)
    await f.add_member(db, home, await bound_villager(db, village), is_head=True)

    queued = await notify_household(
        db,
        village_id=other.id,
        household_id=home.id,
        kind=NotificationKind.CLAIM_DECIDED,
        data={"thing1": "x"},
    )

    assert queued == 0
    assert await outbox(db, village) == await outbox(db, other) == []


async def test_nothing_is_left_queued_when_the_callers_transaction_rolls_back(
    db: AsyncSession,
) -> None:
    village = await f.create_village(db)
    person = await bound_villager(db, village)
    async with db.begin_nested() as savepoint:
        await notify_person(
            db,
            village_id=village.id,
            person_id=person.id,
            kind=NotificationKind.CLAIM_DECIDED,
            data={"thing1": "x"},
        )
        await savepoint.rollback()

    assert await outbox(db, village) == []


def test_values_are_cut_to_wechats_limits_by_field_type() -> None:
    shaped = template_data(
        {
            "thing1": "一" * 25,
            "thing2": "二" * 20,
            "phrase3": "审核已经通过了",
            "name4": "欧阳娜娜娜娜娜娜娜娜娜",
            "name5": "Alexandra Catherine Smith",
            "character_string6": "A" * 40,
            "number7": "1" * 40,
            "time8": "2031年3月1日 15:01:00 星期六 下午",
            "symbol9": "!!!!!!!",
        }
    )

    assert shaped == {
        "thing1": {"value": "一" * 19 + "…"},
        "thing2": {"value": "二" * 20},
        "phrase3": {"value": "审核已经通"},
        "name4": {"value": "欧阳娜娜娜娜娜娜娜娜"},
        "name5": {"value": "Alexandra Catherine "},
        "character_string6": {"value": "A" * 32},
        "number7": {"value": "1" * 32},
        # Times, dates and amounts have formats rather than lengths: left as given.
        "time8": {"value": "2031年3月1日 15:01:00 星期六 下午"},
        "symbol9": {"value": "!!!!!"},
    }


def test_a_key_that_is_not_a_template_field_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="template field"):
        template_data({"title": "x"})


async def test_recipients_added_but_not_yet_flushed_are_reached(
    db: AsyncSession, connection: AsyncConnection
) -> None:
    village = await f.create_village(db)
    person = await f.create_person(db, village)
    # As the app's sessions are: no autoflush.
    session = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", autoflush=False
    )
    session.add(WechatIdentity(openid="openid-new", session_key="k", person_id=person.id))

    queued = await notify_person(
        session,
        village_id=village.id,
        person_id=person.id,
        kind=NotificationKind.CLAIM_DECIDED,
        data={"thing1": "x"},
    )

    assert queued == 1
    await session.close()
