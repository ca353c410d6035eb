"""Year-end close: unspent points expire where the rules reset yearly, carry over elsewhere,
and a second run changes nothing."""

from datetime import date

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    LedgerEntry,
    LedgerKind,
    PeriodStatus,
    Role,
    RuleSetStatus,
    ScoringPeriod,
    Village,
    YearEndClose,
)
from app.schemas.rules import Policy
from app.services.ledger import close_year
from tests import factories as f
from tests.ledger.conftest import (
    assert_ledger_consistent,
    balance_of,
    entry_count,
    post_entry,
    publish_the_year,
    score_of,
)

YEAR = 2030  # a year of its own; close_year is told which villages to look at anyway


async def village_with_rules(db: AsyncSession, *, carry_over: bool) -> Village:
    village = await f.create_village(db)
    await f.create_rule_set(db, village, year=YEAR, policy=Policy(carry_over=carry_over))
    await publish_the_year(db, village, YEAR)
    return village


async def expiries(db: AsyncSession, village: Village) -> list[LedgerEntry]:
    rows = await db.execute(
        select(LedgerEntry)
        .where(
            col(LedgerEntry.village_id) == village.id, col(LedgerEntry.kind) == LedgerKind.EXPIRY
        )
        .order_by(col(LedgerEntry.seq))
    )
    return list(rows.scalars())


async def close_rows(db: AsyncSession, village: Village) -> list[YearEndClose]:
    rows = await db.execute(select(YearEndClose).where(col(YearEndClose.village_id) == village.id))
    return list(rows.scalars())


async def test_points_expire_where_the_rules_reset_and_carry_over_elsewhere(
    db: AsyncSession,
) -> None:
    reset = await village_with_rules(db, carry_over=False)
    spender, saver, empty, spent_all = [await f.create_household(db, reset) for _ in range(4)]
    await post_entry(db, spender, 50, year=YEAR)
    await post_entry(db, spender, -20, kind=LedgerKind.REDEMPTION, year=YEAR, counts_score=False)
    await post_entry(db, saver, 10, year=YEAR)
    await post_entry(db, spent_all, 5, year=YEAR)
    await post_entry(db, spent_all, -5, kind=LedgerKind.REDEMPTION, year=YEAR, counts_score=False)
    carry = await village_with_rules(db, carry_over=True)
    keeper = await f.create_household(db, carry)
    await post_entry(db, keeper, 25, year=YEAR)
    before = {v.id: await entry_count(db, v.id) for v in (reset, carry)}

    closed = (await close_year(db, YEAR, village_ids=[reset.id, carry.id])).closed

    by_village = {record.village_id: record for record in closed}
    assert set(by_village) == {reset.id, carry.id}
    assert (
        by_village[reset.id].carried_over,
        by_village[reset.id].households_expired,
        by_village[reset.id].points_expired,
    ) == (False, 2, 40)
    assert (
        by_village[carry.id].carried_over,
        by_village[carry.id].households_expired,
        by_village[carry.id].points_expired,
    ) == (True, 0, 0)
    expired = await expiries(db, reset)
    assert sorted((e.household_id, e.points) for e in expired) == sorted(
        [(spender.id, -30), (saver.id, -10)]
    )
    for entry in expired:
        assert (entry.counts_score, entry.counts_balance, entry.year) == (False, True, YEAR)
        assert (entry.source_type, entry.memo) == ("year_end", f"{YEAR}年积分年底清零")
    for household in (spender, saver, empty, spent_all):
        assert await balance_of(db, household.id) == 0
    # The year's score is what ranks it; expiry never touches it.
    assert [await score_of(db, h.id, YEAR) for h in (spender, saver, spent_all)] == [50, 10, 5]
    assert await expiries(db, carry) == []
    assert await balance_of(db, keeper.id) == 25
    assert await entry_count(db, carry.id) == before[carry.id]
    assert await entry_count(db, reset.id) == before[reset.id] + 2
    await assert_ledger_consistent(db, reset.id)
    await assert_ledger_consistent(db, carry.id)

    again = (await close_year(db, YEAR, village_ids=[reset.id, carry.id])).closed

    assert again == []
    assert await entry_count(db, reset.id) == before[reset.id] + 2
    assert await entry_count(db, carry.id) == before[carry.id]
    assert len(await close_rows(db, reset)) == 1
    assert len(await close_rows(db, carry)) == 1
    assert [await balance_of(db, h.id) for h in (spender, keeper)] == [0, 25]


async def test_the_next_years_points_do_not_expire(db: AsyncSession) -> None:
    """The close runs after New Year; points already earned in the new year are not last
    year's unspent points."""
    village = await village_with_rules(db, carry_over=False)
    early_bird, overspent = [await f.create_household(db, village) for _ in range(2)]
    await post_entry(db, early_bird, 40, year=YEAR)
    await post_entry(db, early_bird, 15, year=YEAR + 1)
    # A new-year redemption before the close spends last year's points first: 2 of them are
    # left to expire, and the new year's 3 stay.
    await post_entry(db, overspent, 20, year=YEAR)
    await post_entry(db, overspent, 3, year=YEAR + 1)
    await post_entry(
        db, overspent, -18, kind=LedgerKind.REDEMPTION, year=YEAR + 1, counts_score=False
    )

    [record] = (await close_year(db, YEAR, village_ids=[village.id])).closed

    assert (record.households_expired, record.points_expired) == (2, 42)
    assert sorted((e.household_id, e.points) for e in await expiries(db, village)) == sorted(
        [(early_bird.id, -40), (overspent.id, -2)]
    )
    assert await balance_of(db, early_bird.id) == 15
    assert await balance_of(db, overspent.id) == 3
    assert await score_of(db, early_bird.id, YEAR + 1) == 15
    await assert_ledger_consistent(db, village.id)


async def test_a_village_without_approved_rules_for_the_year_is_left_open(
    db: AsyncSession,
) -> None:
    draft_only = await f.create_village(db)
    await f.create_rule_set(db, draft_only, year=YEAR, status=RuleSetStatus.DRAFT)
    household = await f.create_household(db, draft_only)
    await post_entry(db, household, 12, year=YEAR)

    outcome = await close_year(db, YEAR, village_ids=[draft_only.id])

    assert outcome.closed == []
    assert [(b.village_id, b.code) for b in outcome.blocked] == [
        (draft_only.id, "year_close.no_rules")
    ]
    assert await close_rows(db, draft_only) == []
    assert await balance_of(db, household.id) == 12
    assert await entry_count(db, draft_only.id) == 1


async def test_close_year_touches_only_the_villages_it_is_given(db: AsyncSession) -> None:
    chosen = await village_with_rules(db, carry_over=False)
    other = await village_with_rules(db, carry_over=False)
    households = [await f.create_household(db, v) for v in (chosen, other)]
    for household in households:
        await post_entry(db, household, 9, year=YEAR)

    await close_year(db, YEAR, village_ids=[chosen.id])

    assert [await balance_of(db, h.id) for h in households] == [0, 9]
    count = await db.scalar(
        select(func.count())
        .select_from(YearEndClose)
        .where(col(YearEndClose.village_id).in_([chosen.id, other.id]))
    )
    assert count == 1


async def test_a_year_still_being_scored_is_not_closed_and_a_closed_year_takes_no_period(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """December is scored in January: closing before it is approved would let its points land
    after the reset. The close waits; once closed, the year takes no new period."""
    village = await village_with_rules(db, carry_over=False)
    home = await f.create_household(db, village)
    await post_entry(db, home, 30, year=YEAR)
    december = (
        await db.execute(
            select(ScoringPeriod).where(
                col(ScoringPeriod.village_id) == village.id,
                col(ScoringPeriod.starts_on) == date(YEAR, 12, 1),
            )
        )
    ).scalar_one()
    december.status = PeriodStatus.SCORING
    await db.flush()
    assert (await close_year(db, YEAR, village_ids=[village.id])).closed == []
    assert await balance_of(db, home.id) == 30

    december.status = PeriodStatus.PUBLISHED
    await db.flush()
    [closed] = (await close_year(db, YEAR, village_ids=[village.id])).closed
    assert closed.points_expired == 30
    assert await balance_of(db, home.id) == 0

    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    response = await client.post(
        f"/api/v1/villages/{village.id}/periods",
        json={"starts_on": f"{YEAR}-11-01"},
        headers=await f.login_headers(db, settings, admin),
    )
    assert response.status_code == 409
    assert response.json()["code"] == "period.year_closed"
