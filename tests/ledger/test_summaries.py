"""Invariant 4: every balance and year score equals the sum of the entries it stands for."""

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LedgerKind
from app.services import ledger
from tests import factories as f
from tests.ledger.conftest import (
    API,
    THIS_YEAR,
    Scene,
    assert_ledger_consistent,
    balance_of,
    post_entry,
    summary_mismatches,
)


async def test_summaries_equal_sums_after_a_mix_of_entries(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    others = [await f.create_household(db, scene.village) for _ in range(3)]
    households = [scene.household, scene.neighbour, *others]
    entries = []
    for n, household in enumerate(households):
        entries.append(await post_entry(db, household, 20 + n, kind=LedgerKind.INSPECTION))
        entries.append(await post_entry(db, household, 5, year=THIS_YEAR - 1))
        await post_entry(db, household, 3, kind=LedgerKind.BONUS, counts_balance=False)
        await post_entry(db, household, 0, kind=LedgerKind.VETO)
    # Several households in one batch, as a period approval posts them.
    await ledger.post(
        db,
        scene.village.id,
        [
            ledger.NewEntry(
                household_id=h.id,
                kind=LedgerKind.AWARD,
                points=10,
                counts_score=True,
                counts_balance=True,
                year=THIS_YEAR,
                source_type="test",
            )
            for h in households
        ],
    )
    answers = []
    for entry in entries[::3]:
        answers.append(
            await client.post(
                f"{API}/ledger-entries/{entry['id']}/correction",
                json={"reason": "复核更正"},
                headers=scene.admin_headers,
            )
        )
    for household, points, counts in [
        (others[0], -12, {"counts_score": False, "counts_balance": True}),
        (others[1], 7, {"counts_score": True, "counts_balance": False}),
        (others[2], -4, {"counts_score": True, "counts_balance": True}),
        (scene.neighbour, -999, {"counts_score": False, "counts_balance": True}),  # refused
    ]:
        answers.append(
            await client.post(
                f"{API}/households/{household.id}/adjustments",
                json={"points": points, "reason": "调整", **counts},
                headers=scene.admin_headers,
            )
        )

    assert [a.status_code for a in answers] == [201] * 7 + [409]
    compared, bad = await summary_mismatches(db, scene.village.id)
    assert bad == []
    assert compared == 5 + 5 * 2  # a balance per household, a score per household and year
    await assert_ledger_consistent(db, scene.village.id)
    assert await balance_of(db, others[0].id) == 22 + 5 + 10 - 12


async def test_the_check_notices_a_summary_out_of_step(db: AsyncSession, scene: Scene) -> None:
    await post_entry(db, scene.household, 10)
    await post_entry(db, scene.neighbour, 4, counts_balance=False)

    await db.execute(
        text("UPDATE household_balance SET balance = balance + 1 WHERE household_id = :h"),
        {"h": scene.household.id},
    )
    await db.execute(
        text("DELETE FROM household_year_score WHERE household_id = :h"), {"h": scene.neighbour.id}
    )

    _, bad = await summary_mismatches(db, scene.village.id)
    assert sorted(line.split()[0] for line in bad) == ["balance", "score"]
