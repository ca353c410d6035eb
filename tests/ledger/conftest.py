"""A village with an admin, a villager and a neighbour; entries posted as the product posts them;
and one check that a village's summaries equal the sums of its entries and its chain verifies.
"""

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.config import Settings
from app.models import (
    AuditEntry,
    Household,
    LedgerEntry,
    LedgerKind,
    PeriodStatus,
    Person,
    Role,
    ScoringPeriod,
    Village,
)
from app.services import ledger
from app.services.points_year import calendar_of
from app.services.rules import rule_set_in_force
from tests import factories as f

API = "/api/v1"
# Adjustments are made in the current year (Asia/Shanghai), and balance reads default to it.
THIS_YEAR = clock.today().year


@dataclass
class Scene:
    village: Village
    admin: Person
    admin_headers: dict[str, str]
    # The admin lives in the village too: their own household is off limits to them.
    admin_household: Household
    household: Household
    villager_headers: dict[str, str]
    neighbour: Household


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    village = await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    admin_household = await f.create_household(db, village)
    await f.add_member(db, admin_household, admin, is_head=True)
    household = await f.create_household(db, village)
    villager = await f.create_person(db, village)
    await f.add_member(db, household, villager, is_head=True)
    neighbour = await f.create_household(db, village)
    return Scene(
        village=village,
        admin=admin,
        admin_headers=await f.login_headers(db, settings, admin),
        admin_household=admin_household,
        household=household,
        villager_headers=await f.login_headers(db, settings, villager),
        neighbour=neighbour,
    )


async def post_entry(
    session: AsyncSession,
    household: Household,
    points: int,
    *,
    kind: LedgerKind = LedgerKind.BONUS,
    year: int = THIS_YEAR,
    counts_score: bool = True,
    counts_balance: bool = True,
) -> dict[str, Any]:
    """One entry through the ledger service (factories.create_entry with the year chosen)."""
    [row] = await ledger.post(
        session,
        household.village_id,
        [
            ledger.NewEntry(
                household_id=household.id,
                kind=kind,
                points=points,
                counts_score=counts_score,
                counts_balance=counts_balance,
                year=year,
                source_type="test",
            )
        ],
    )
    return row


# The summaries beside the sums of the entries they stand for, every household and year of the
# village that has either; a missing summary row counts as zero.
BALANCES = text(
    """
    SELECT household_id, s.balance AS summary, e.total AS entries
    FROM (SELECT household_id, balance FROM household_balance WHERE village_id = :v) AS s
    FULL JOIN (
        SELECT household_id, sum(points) AS total FROM ledger_entry
        WHERE village_id = :v AND counts_balance GROUP BY household_id
    ) AS e USING (household_id)
    """
)
YEAR_SCORES = text(
    """
    SELECT household_id, year, s.score AS summary, e.total AS entries
    FROM (SELECT household_id, year, score FROM household_year_score WHERE village_id = :v) AS s
    FULL JOIN (
        SELECT household_id, year, sum(points) AS total FROM ledger_entry
        WHERE village_id = :v AND counts_score GROUP BY household_id, year
    ) AS e USING (household_id, year)
    """
)

# Period scores exist from approval on; before it, a period's entries (bonuses) have no row yet,
# and a row without its period approved would be a bug too.
PERIOD_SCORES = text(
    """
    SELECT household_id, period_id, p.status, s.score AS summary, e.total AS entries
    FROM (
        SELECT household_id, period_id, score FROM household_period_score WHERE village_id = :v
    ) AS s
    FULL JOIN (
        SELECT household_id, period_id, sum(points) AS total FROM ledger_entry
        WHERE village_id = :v AND counts_score AND period_id IS NOT NULL
        GROUP BY household_id, period_id
    ) AS e USING (household_id, period_id)
    JOIN scoring_period AS p ON p.id = period_id
    """
)
APPROVED = ("approved", "published", "closed")


async def summary_mismatches(session: AsyncSession, village_id: uuid.UUID) -> tuple[int, list[str]]:
    """(rows compared, a line for each summary that differs from its entries)."""
    compared, bad = 0, []
    for row in await session.execute(BALANCES, {"v": village_id}):
        compared += 1
        if (row.summary or 0) != (row.entries or 0) or (row.summary or 0) < 0:
            bad.append(f"balance {row.household_id}: summary {row.summary}, sum {row.entries}")
    for row in await session.execute(YEAR_SCORES, {"v": village_id}):
        compared += 1
        if (row.summary or 0) != (row.entries or 0):
            bad.append(
                f"score {row.household_id} {row.year}: summary {row.summary}, sum {row.entries}"
            )
    for row in await session.execute(PERIOD_SCORES, {"v": village_id}):
        compared += 1
        expected = (row.entries or 0) if row.status in APPROVED else None
        if row.summary != expected:
            bad.append(
                f"period score {row.household_id} {row.period_id} ({row.status}): "
                f"summary {row.summary}, sum {row.entries}"
            )
    return compared, bad


async def assert_ledger_consistent(session: AsyncSession, village_id: uuid.UUID) -> None:
    """Invariant 4 for a whole village: summaries (balances, year and period scores) equal
    their sums, and the chain verifies."""
    compared, bad = await summary_mismatches(session, village_id)
    assert compared > 0, "nothing to compare: the village has no entries"
    assert bad == []
    chain = await ledger.verify_village_chain(session, village_id)
    assert chain.ok, chain


async def entry_count(session: AsyncSession, village_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(col(LedgerEntry.village_id) == village_id)
    )
    return count or 0


async def balance_of(session: AsyncSession, household_id: uuid.UUID) -> int:
    value = await session.scalar(
        text("SELECT balance FROM household_balance WHERE household_id = :h"), {"h": household_id}
    )
    return int(value or 0)


async def score_of(session: AsyncSession, household_id: uuid.UUID, year: int = THIS_YEAR) -> int:
    value = await session.scalar(
        text("SELECT score FROM household_year_score WHERE household_id = :h AND year = :y"),
        {"h": household_id, "y": year},
    )
    return int(value or 0)


async def audits(session: AsyncSession, village_id: uuid.UUID, action: str) -> list[AuditEntry]:
    rows = await session.execute(
        select(AuditEntry)
        .where(col(AuditEntry.village_id) == village_id, col(AuditEntry.action) == action)
        .order_by(col(AuditEntry.at), col(AuditEntry.id))
    )
    return list(rows.scalars())


async def publish_the_year(session: AsyncSession, village: Village, year: int) -> None:
    """Every period of the village's year published, as the year close asks (periods the test
    already made are left as they are). Rows, not the scoring workflow: the close reads only
    which periods exist and their status."""
    rules = await rule_set_in_force(session, village.id, date(year, 12, 31))
    assert rules is not None, "the village needs approved rules for the year"
    taken = set(
        (
            await session.execute(
                select(col(ScoringPeriod.starts_on)).where(
                    col(ScoringPeriod.village_id) == village.id
                )
            )
        ).scalars()
    )
    for span in calendar_of(rules.policy).periods_of(year):
        if span.starts_on in taken or span.starts_on < rules.effective_from:
            continue
        session.add(
            ScoringPeriod(
                village_id=village.id, town_id=village.town_id, rule_set_id=rules.id, year=year,
                kind=span.kind, number=span.number, starts_on=span.starts_on,
                ends_on=span.ends_on, status=PeriodStatus.PUBLISHED,
            )
        )  # fmt: skip
    await session.flush()
