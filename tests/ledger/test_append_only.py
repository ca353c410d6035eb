"""Invariant 1: the database itself refuses to change or remove a ledger entry."""

from datetime import date

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LedgerKind, PeriodKind, PeriodStatus, ScoringPeriod
from app.services import ledger
from tests import factories as f
from tests.ledger.conftest import Scene, assert_ledger_consistent, entry_count, post_entry

REFUSED = [
    pytest.param("UPDATE ledger_entry SET points = 1000 WHERE id = :id", id="update"),
    pytest.param("UPDATE ledger_entry SET memo = 'x' WHERE village_id = :v", id="update-all"),
    pytest.param("DELETE FROM ledger_entry WHERE id = :id", id="delete"),
    pytest.param("DELETE FROM ledger_entry WHERE village_id = :v", id="delete-all"),
    pytest.param("TRUNCATE ledger_entry", id="truncate"),
    pytest.param("TRUNCATE ledger_entry CASCADE", id="truncate-cascade"),
]


@pytest.mark.parametrize("statement", REFUSED)
async def test_the_database_refuses_to_change_or_remove_entries(
    db: AsyncSession, scene: Scene, statement: str
) -> None:
    first = await post_entry(db, scene.household, 10)
    await post_entry(db, scene.neighbour, 5)
    params = {"id": first["id"], "v": scene.village.id}

    with pytest.raises(IntegrityError, match="append-only"):
        async with db.begin_nested():
            await db.execute(text(statement), params)

    rows = (
        await db.execute(
            text("SELECT seq, points, memo FROM ledger_entry WHERE village_id = :v ORDER BY seq"),
            {"v": scene.village.id},
        )
    ).all()
    assert [tuple(r) for r in rows] == [(1, 10, ""), (2, 5, "")]
    assert await entry_count(db, scene.village.id) == 2
    await assert_ledger_consistent(db, scene.village.id)


async def test_an_entry_names_a_household_and_period_of_its_own_village(
    db: AsyncSession, scene: Scene
) -> None:
    """The keys carry the village: a household or period of another village is refused by
    the database itself, whatever the application passes."""
    elsewhere = await f.create_village(db)
    stranger = await f.create_household(db, elsewhere)
    rule_set, _, _ = await f.create_rule_set(db, elsewhere, year=2026)
    their_period = ScoringPeriod(
        village_id=elsewhere.id, town_id=elsewhere.town_id, rule_set_id=rule_set.id, year=2026,
        kind=PeriodKind.MONTH, number=1, starts_on=date(2026, 1, 1), ends_on=date(2026, 1, 31),
        status=PeriodStatus.SCORING,
    )  # fmt: skip
    db.add(their_period)
    await db.flush()
    wrong = [
        ledger.NewEntry(
            household_id=stranger.id, kind=LedgerKind.BONUS, points=5, counts_score=True,
            counts_balance=True, year=2026, source_type="test",
        ),
        ledger.NewEntry(
            household_id=scene.household.id, kind=LedgerKind.BONUS, points=5, counts_score=True,
            counts_balance=True, year=2026, source_type="test", period_id=their_period.id,
        ),
    ]  # fmt: skip
    for entry in wrong:
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            async with db.begin_nested():
                await ledger.post(db, scene.village.id, [entry])

    # Nothing of the refused posts remains: the next entry is the chain's first.
    assert (await post_entry(db, scene.household, 5))["seq"] == 1
    assert await entry_count(db, scene.village.id) == 1
    await assert_ledger_consistent(db, scene.village.id)
