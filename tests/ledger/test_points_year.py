"""The year boundary walked with the clock: 31 December, a January spend before the close, the
close itself (`year-end`), and give-backs after it. Spends draw on the oldest year first, the
close expires only what is left of the closed year, and it waits until every period of the
year is published."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.cli import _close_year
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    Household,
    LedgerEntry,
    LedgerKind,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    ScoringPeriod,
    Shop,
    ShopItem,
    Village,
    YearEndClose,
)
from app.schemas.rules import Policy
from app.services.ledger import close_year
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.conftest import database_of_its_own
from tests.ledger.conftest import (
    API,
    assert_ledger_consistent,
    balance_of,
    entry_count,
    post_entry,
    publish_the_year,
    score_of,
)
from tests.shop.conftest import create_item, create_shop

YEAR = 2031


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


class Resetting:
    """A 张堰-like village (年底清零) with a shop, rules for both years, and one household that
    earned 100 points last year."""

    village: Village
    shop: Shop
    soap: ShopItem  # 20 points
    household: Household
    villager: Person
    headers: dict[str, str]


async def resetting_village(
    db: AsyncSession, settings: Settings, *, carry_over: bool = False
) -> Resetting:
    scene = Resetting()
    scene.village = await f.create_village(db)
    for year in (YEAR, YEAR + 1):
        await f.create_rule_set(db, scene.village, year=year, policy=Policy(carry_over=carry_over))
    scene.shop = await create_shop(db, scene.village)
    scene.soap = await create_item(db, scene.shop, stock=100)
    scene.household = await f.create_household(db, scene.village)
    scene.villager = await f.create_person(db, scene.village)
    await f.add_member(db, scene.household, scene.villager, is_head=True)
    scene.headers = await f.login_headers(db, settings, scene.villager)
    await post_entry(db, scene.household, 100, year=YEAR)
    await publish_the_year(db, scene.village, YEAR)
    return scene


async def order(client: httpx.AsyncClient, scene: Resetting, soaps: int) -> dict[str, object]:
    response = await client.post(
        f"{API}/shops/{scene.shop.id}/orders",
        json={"lines": [{"item_id": str(scene.soap.id), "quantity": soaps}]},
        headers=scene.headers,
    )
    assert response.status_code == 201, response.text
    placed: dict[str, object] = response.json()
    return placed


async def entries(db: AsyncSession, household: Household) -> list[tuple[LedgerKind, int, int]]:
    rows = await db.execute(
        select(col(LedgerEntry.kind), col(LedgerEntry.points), col(LedgerEntry.year))
        .where(col(LedgerEntry.household_id) == household.id)
        .order_by(col(LedgerEntry.seq))
    )
    return [(kind, points, year) for kind, points, year in rows]


async def test_a_january_order_cancelled_after_the_close_keeps_nothing_of_last_year(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 1: the order ahead in January spends last year's points, so the close finds them
    spent; cancelling afterwards gives them back to last year, which has closed: they expire."""
    scene = await resetting_village(db, settings)
    set_clock(at(date(YEAR + 1, 1, 2)))
    placed = await order(client, scene, 5)
    assert await entries(db, scene.household) == [
        (LedgerKind.BONUS, 100, YEAR),
        (LedgerKind.REDEMPTION, -100, YEAR),
    ]

    set_clock(at(date(YEAR + 1, 1, 4)))
    [closed] = (await close_year(db, YEAR, village_ids=[scene.village.id])).closed
    assert (closed.households_expired, closed.points_expired) == (0, 0)

    cancelled = await client.post(f"{API}/shop-orders/{placed['id']}/cancel", headers=scene.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert await balance_of(db, scene.household.id) == 0
    assert (await entries(db, scene.household))[2:] == [
        (LedgerKind.REFUND, 100, YEAR),
        (LedgerKind.EXPIRY, -100, YEAR),
    ]
    await assert_ledger_consistent(db, scene.village.id)


async def test_the_close_expires_what_is_left_of_last_year_and_keeps_januarys_points(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 2: 100 from last year, 60 spent in January, 5 earned in January: the close expires
    40 and leaves 5."""
    scene = await resetting_village(db, settings)
    set_clock(at(date(YEAR + 1, 1, 3)))
    await order(client, scene, 3)
    await post_entry(db, scene.household, 5, year=YEAR + 1)

    set_clock(at(date(YEAR + 1, 1, 5)))
    [closed] = (await close_year(db, YEAR, village_ids=[scene.village.id])).closed

    assert closed.points_expired == 40
    assert await balance_of(db, scene.household.id) == 5
    assert (await entries(db, scene.household))[-1] == (LedgerKind.EXPIRY, -40, YEAR)
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_spend_across_two_years_draws_the_oldest_first_and_gives_back_to_each(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await resetting_village(db, settings)
    set_clock(at(date(YEAR + 1, 1, 3)))
    await post_entry(db, scene.household, 40, year=YEAR + 1)
    placed = await order(client, scene, 6)  # 120: last year's 100, then 20 of this year's
    assert (await entries(db, scene.household))[2:] == [
        (LedgerKind.REDEMPTION, -100, YEAR),
        (LedgerKind.REDEMPTION, -20, YEAR + 1),
    ]
    cancelled = await client.post(f"{API}/shop-orders/{placed['id']}/cancel", headers=scene.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert (await entries(db, scene.household))[4:] == [
        (LedgerKind.REFUND, 100, YEAR),
        (LedgerKind.REFUND, 20, YEAR + 1),
    ]
    assert await balance_of(db, scene.household.id) == 140
    [closed] = (await close_year(db, YEAR, village_ids=[scene.village.id])).closed
    assert closed.points_expired == 100
    assert await balance_of(db, scene.household.id) == 40
    await assert_ledger_consistent(db, scene.village.id)


async def test_the_close_waits_for_december_and_says_so(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 3: on 1 January December has not been opened yet (翁源 scores it by the 3rd). The
    close refuses, naming the village and the month; December can still be opened, and once
    it is published the close runs."""
    village = await f.create_village(db)
    rule_set, _, _ = await f.create_rule_set(db, village, year=YEAR)
    household = await f.create_household(db, village)
    await post_entry(db, household, 30, year=YEAR)
    for month in range(1, 12):
        db.add(
            ScoringPeriod(
                village_id=village.id, town_id=village.town_id, rule_set_id=rule_set.id,
                year=YEAR, kind=PeriodKind.MONTH, number=month, starts_on=date(YEAR, month, 1),
                ends_on=date(YEAR, month, 28), status=PeriodStatus.PUBLISHED,
            )
        )  # fmt: skip
    await db.flush()
    entries_before = await entry_count(db, village.id)
    set_clock(at(date(YEAR + 1, 1, 1)))

    outcome = await close_year(db, YEAR, village_ids=[village.id])

    assert outcome.closed == []
    assert [(b.village_id, b.code, b.period) for b in outcome.blocked] == [
        (village.id, "year_close.period_missing", f"{YEAR}年12月")
    ]
    assert await db.get(YearEndClose, (village.id, YEAR)) is None
    assert await entry_count(db, village.id) == entries_before
    assert await balance_of(db, household.id) == 30

    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    opened = await client.post(
        f"{API}/villages/{village.id}/periods",
        json={"starts_on": f"{YEAR}-12-01"},
        headers=await f.login_headers(db, settings, admin),
    )
    assert opened.status_code == 201, opened.text
    december = await db.get(ScoringPeriod, opened.json()["id"])
    assert december is not None

    set_clock(at(date(YEAR + 1, 1, 2)))
    outcome = await close_year(db, YEAR, village_ids=[village.id])
    assert [(b.code, b.period) for b in outcome.blocked] == [
        ("year_close.period_unpublished", f"{YEAR}年12月")
    ]

    december.status = PeriodStatus.PUBLISHED
    await db.flush()
    set_clock(at(date(YEAR + 1, 1, 3)))
    [closed] = (await close_year(db, YEAR, village_ids=[village.id])).closed
    assert closed.points_expired == 30
    assert await balance_of(db, household.id) == 0
    await assert_ledger_consistent(db, village.id)


async def test_a_village_without_rules_for_the_year_is_reported(db: AsyncSession) -> None:
    village = await f.create_village(db)
    outcome = await close_year(db, YEAR, village_ids=[village.id])
    assert outcome.closed == []
    assert [b.code for b in outcome.blocked] == ["year_close.no_rules"]


async def test_a_correction_after_the_close_gives_back_into_the_closed_year_and_expires(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """A deduction of last year found wrong in February: the score is put right, and the
    points come back into last year, which has reset, so they expire with it."""
    scene = await resetting_village(db, settings)
    deduction = await post_entry(db, scene.household, -10, kind=LedgerKind.INSPECTION, year=YEAR)
    set_clock(at(date(YEAR + 1, 1, 4)))
    [closed] = (await close_year(db, YEAR, village_ids=[scene.village.id])).closed
    assert closed.points_expired == 90
    admin = await f.create_person(db, scene.village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=scene.village)
    set_clock(at(date(YEAR + 1, 2, 10)))

    corrected = await client.post(
        f"{API}/ledger-entries/{deduction['id']}/correction",
        json={"reason": "扣分有误"},
        headers=await f.login_headers(db, settings, admin),
    )

    assert corrected.status_code == 201, corrected.text
    assert (await entries(db, scene.household))[-2:] == [
        (LedgerKind.CORRECTION, 10, YEAR),
        (LedgerKind.EXPIRY, -10, YEAR),
    ]
    assert await balance_of(db, scene.household.id) == 0
    assert await score_of(db, scene.household.id, YEAR) == 100
    await assert_ledger_consistent(db, scene.village.id)


async def test_year_end_says_which_village_waits_for_which_month(
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    set_clock: Callable[[datetime], None],
) -> None:
    """The command itself, on a database of its own (it commits village by village): on
    1 January, December missing, it names the village and the month and reports failure; once
    December is published it closes the year."""
    set_clock(at(date(YEAR + 1, 1, 1)))
    async with database_of_its_own(database_url, "vp_year_end") as url:
        engine = create_engine(url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                village = await f.create_village(session)
                rule_set, _, _ = await f.create_rule_set(session, village, year=YEAR)
                household = await f.create_household(session, village)
                await post_entry(session, household, 30, year=YEAR)
                await publish_the_year(session, village, YEAR)
                december = (
                    await session.execute(
                        select(ScoringPeriod).where(
                            col(ScoringPeriod.village_id) == village.id,
                            col(ScoringPeriod.number) == 12,
                        )
                    )
                ).scalar_one()
                await session.delete(december)

            assert await _close_year(url, YEAR) is False
            out = capsys.readouterr().out
            assert f"{YEAR} NOT closed for village {village.id}: year_close.period_missing" in out
            assert f"{YEAR}年12月" in out

            async with create_sessionmaker(engine)() as session, session.begin():
                await publish_the_year(session, village, YEAR)
            assert await _close_year(url, YEAR) is True
            assert "30 points of 1 households expired" in capsys.readouterr().out
            async with create_sessionmaker(engine)() as session:
                assert await balance_of(session, household.id) == 0
        finally:
            await engine.dispose()
