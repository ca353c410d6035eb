"""The whole database's ledger checked at once: every village's chain, and every summary
against the entries it sums (after a restore, or whenever an operator doubts)."""

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.ledger import verify_village_chain


@dataclass(frozen=True)
class Finding:
    village_id: uuid.UUID | None
    problem: str


# Full outer joins: a summary without entries, or entries without a summary, differ too.
_BALANCE_MISMATCHES = text(
    """
    SELECT coalesce(b.household_id, e.household_id) AS household_id,
           coalesce(b.village_id, e.village_id) AS village_id,
           coalesce(b.balance, 0) AS stored, coalesce(e.total, 0) AS summed
    FROM household_balance b
    FULL JOIN (
        SELECT household_id, village_id, sum(points) AS total FROM ledger_entry
        WHERE counts_balance GROUP BY household_id, village_id
    ) e ON e.household_id = b.household_id
    WHERE coalesce(b.balance, 0) <> coalesce(e.total, 0)
    ORDER BY 1
    """
)
_SCORE_MISMATCHES = text(
    """
    SELECT coalesce(s.household_id, e.household_id) AS household_id,
           coalesce(s.village_id, e.village_id) AS village_id,
           coalesce(s.year, e.year) AS year,
           coalesce(s.score, 0) AS stored, coalesce(e.total, 0) AS summed
    FROM household_year_score s
    FULL JOIN (
        SELECT household_id, village_id, year, sum(points) AS total FROM ledger_entry
        WHERE counts_score GROUP BY household_id, village_id, year
    ) e ON e.household_id = s.household_id AND e.year = s.year
    WHERE coalesce(s.score, 0) <> coalesce(e.total, 0)
    ORDER BY 1, 3
    """
)


async def verify_database(session: AsyncSession) -> tuple[int, list[Finding]]:
    """(villages checked, what is wrong); an empty list means every check passed."""
    findings: list[Finding] = []
    village_ids = list(
        (await session.execute(text("SELECT id FROM village ORDER BY id"))).scalars()
    )
    for village_id in village_ids:
        result = await verify_village_chain(session, village_id)
        if not result.ok:
            findings.append(
                Finding(
                    village_id,
                    f"hash chain broken at entry {result.first_bad_seq}: {result.problem}",
                )
            )
    for row in (await session.execute(_BALANCE_MISMATCHES)).mappings():
        findings.append(
            Finding(
                row["village_id"],
                f"household {row['household_id']}: balance {row['stored']}"
                f" but its entries sum to {row['summed']}",
            )
        )
    for row in (await session.execute(_SCORE_MISMATCHES)).mappings():
        findings.append(
            Finding(
                row["village_id"],
                f"household {row['household_id']}: {row['year']} score {row['stored']}"
                f" but its entries sum to {row['summed']}",
            )
        )
    return len(village_ids), findings
