"""Time the rank reads a villager's phone makes: a village's top 50 and the caller's own rank.

Builds, in a throwaway database, a town of villages of N households (10 village groups, a head
each) with 12 months of scores, publishes the months one after another (each publication
stores the month's, the quarter's and the year's ranks: `rankings.refresh_period_ranks`), and
times, against a same-run `SELECT 1` through the same session and connection:

- the village's year ranking, first page of 50, as a villager (names masked, own row included:
  `rankings.village_ranking`);
- the villager's own standing (`standing.standing`: year score, ranks, latest month).

It measures twice: with the first villages built, then after the rest of the town is added, to
show the reads do not grow with the town.

    python3 -m uv run python bench/rankings.py                    # 1,000 households; 2 then 20
    python3 -m uv run python bench/rankings.py --households 200 --villages 2 5

Uses the embedded PostgreSQL in a temporary folder unless DATABASE_URL names a server.
"""

import argparse
import asyncio
import calendar
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from sqlalchemy import insert, text, update
from throwaway import throwaway_database  # bench/ is on sys.path when a script runs

from app.db import create_engine, create_sessionmaker
from app.models import (
    Household,
    HouseholdMember,
    Participation,
    PeriodKind,
    PeriodStatus,
    Person,
    RankSpan,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
    Town,
    Village,
    VillageGroup,
    VillageGroupKind,
)
from app.pagination import PageParams
from app.schemas.rankings import RankingPage
from app.schemas.rules import Policy
from app.security import Principal
from app.services import rankings, standing

YEAR = 2031
REPEATS = 200


async def build_village(session: Any, town_id: uuid.UUID, name: str, households: int) -> uuid.UUID:
    village_id = uuid.uuid4()
    await session.execute(insert(Village).values(id=village_id, town_id=town_id, name=name))
    rule_set_id = uuid.uuid4()
    await session.execute(
        insert(RuleSet).values(
            id=rule_set_id,
            village_id=village_id,
            town_id=town_id,
            year=YEAR,
            version=1,
            status=RuleSetStatus.APPROVED,
            title="bench",
            effective_from=date(YEAR, 1, 1),
            policy=Policy(period_cap=100).model_dump(mode="json"),
        )
    )
    groups = [uuid.uuid4() for _ in range(10)]
    await session.execute(
        insert(VillageGroup),
        [
            {
                "id": g,
                "village_id": village_id,
                "name": f"第{i + 1}组",
                "kind": VillageGroupKind.GROUP,
            }
            for i, g in enumerate(groups)
        ],
    )
    homes = [uuid.uuid4() for _ in range(households)]
    heads = [uuid.uuid4() for _ in range(households)]
    await session.execute(
        insert(Household),
        [
            {
                "id": h,
                "village_id": village_id,
                "village_group_id": groups[n % 10],
                "number": f"{n:04d}",
                "participation": Participation.ACTIVE,
            }
            for n, h in enumerate(homes)
        ],
    )
    await session.execute(
        insert(Person), [{"id": p, "name": "张三丰", "village_id": village_id} for p in heads]
    )
    await session.execute(
        insert(HouseholdMember),
        [
            {"household_id": h, "person_id": p, "village_id": village_id, "is_head": True}
            for h, p in zip(homes, heads, strict=True)
        ],
    )
    for month in range(1, 13):
        starts = date(YEAR, month, 1)
        await session.execute(
            insert(ScoringPeriod).values(
                id=uuid.uuid4(),
                village_id=village_id,
                town_id=town_id,
                rule_set_id=rule_set_id,
                year=YEAR,
                kind=PeriodKind.MONTH,
                number=month,
                starts_on=starts,
                ends_on=date(YEAR, month, calendar.monthrange(YEAR, month)[1]),
                status=PeriodStatus.APPROVED,
            )
        )
    # Scores 60-100 with plenty of ties, as deductive months give; one household in 50 vetoed.
    await session.execute(
        text(
            """
            INSERT INTO household_period_score (household_id, period_id, village_id, score, vetoed)
            SELECT h.id, p.id, h.village_id, 60 + floor(random() * 41)::int, random() < 0.02
            FROM household h JOIN scoring_period p ON p.village_id = h.village_id
            WHERE h.village_id = :village
            """
        ),
        {"village": village_id},
    )
    return village_id


async def publish_all(sessionmaker: Any, village_id: uuid.UUID) -> list[float]:
    """Publish the months in order; the time each publication spends storing ranks."""
    timings = []
    async with sessionmaker() as session:
        periods = (
            await session.execute(
                text("SELECT id FROM scoring_period WHERE village_id = :v ORDER BY starts_on"),
                {"v": village_id},
            )
        ).scalars()
        ids = list(periods)
        await session.commit()
        for period_id in ids:
            async with session.begin():
                await session.execute(
                    update(ScoringPeriod)
                    .where(ScoringPeriod.id == period_id)
                    .values(status=PeriodStatus.PUBLISHED)
                )
                started = time.perf_counter()
                await rankings.refresh_period_ranks(session, period_id)
                timings.append(time.perf_counter() - started)
    return timings


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    """Median milliseconds of REPEATS calls, after a warm-up."""
    for _ in range(10):
        await call()
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(sessionmaker: Any, village_id: uuid.UUID, label: str) -> None:
    async with sessionmaker() as session:
        household_id = (
            await session.execute(
                text(
                    "SELECT household_id FROM household_rank WHERE village_id = :v AND year = :y"
                    " AND span = 'year' AND village_position = 500"
                ),
                {"v": village_id, "y": YEAR},
            )
        ).scalar_one_or_none() or (
            await session.execute(
                text("SELECT id FROM household WHERE village_id = :v LIMIT 1"), {"v": village_id}
            )
        ).scalar_one()
        villager = Principal(
            person_id=uuid.uuid4(),
            session_id=uuid.uuid4(),
            household_id=household_id,
            household_village_id=village_id,
        )

        async def baseline() -> None:
            await session.execute(text("SELECT 1"))

        async def top_50() -> None:
            body = await rankings.village_ranking(
                session,
                villager,
                village_id,
                span=RankSpan.YEAR,
                year=YEAR,
                number=None,
                scope=None,
                group_id=None,
                params=PageParams(limit=50),
            )
            page = RankingPage.model_validate_json(body)
            assert len(page.items) == 50
            assert page.own is not None

        async def own() -> None:
            await standing.standing(session, villager, household_id, YEAR)

        base = await timed(baseline)
        top, mine = await timed(top_50), await timed(own)
        rows = (await session.execute(text("SELECT count(*) FROM household_rank"))).scalar_one()
        print(
            f"{label:>26}: select 1 {base:5.2f} ms | top 50 + own row {top:5.2f} ms "
            f"({top / base:4.1f}x) | own standing {mine:5.2f} ms ({mine / base:4.1f}x) "
            f"| {rows:,} rank rows stored"
        )


async def explain(sessionmaker: Any, village_id: uuid.UUID) -> None:
    async with sessionmaker() as session:
        for name, query in (
            (
                "top 50",
                "SELECT household_id FROM household_rank WHERE village_id = :v AND year = :y"
                " AND span = 'year' AND number = 0 AND NOT vetoed"
                " ORDER BY village_position LIMIT 51",
            ),
            (
                "own row",
                "SELECT village_rank FROM household_rank WHERE household_id = :h AND year = :y"
                " AND span = 'year' AND number = 0",
            ),
        ):
            plan = (
                await session.execute(
                    text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + query),
                    {"v": village_id, "y": YEAR, "h": uuid.uuid4()},
                )
            ).scalars()
            print(f"EXPLAIN {name}:")
            for line in plan:
                print("   ", line)


async def run(url: str, households: int, sizes: list[int]) -> None:
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    town_id = uuid.uuid4()
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(Town).values(id=town_id, name="基准镇"))
    villages: list[uuid.UUID] = []
    publish: list[float] = []
    for size in sizes:
        started = time.perf_counter()
        while len(villages) < size:
            async with sessionmaker() as session, session.begin():
                villages.append(
                    await build_village(session, town_id, f"村{len(villages):02d}", households)
                )
            publish += await publish_all(sessionmaker, villages[-1])
        async with sessionmaker() as session:
            await session.execute(text("ANALYZE"))
            await session.commit()
        print(f"built to {size} villages in {time.perf_counter() - started:.0f} s")
        await measure(sessionmaker, villages[0], f"{size} villages x {households}")
    print(
        f"storing ranks at a month's publication (month, quarter, year): median "
        f"{statistics.median(publish) * 1000:.0f} ms, max {max(publish) * 1000:.0f} ms"
    )
    await explain(sessionmaker, villages[0])
    await engine.dispose()


async def with_database(households: int, sizes: list[int]) -> None:
    async with throwaway_database() as url:
        await run(url, households, sizes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--villages", type=int, nargs="+", default=[2, 20])
    args = parser.parse_args()
    asyncio.run(with_database(args.households, sorted(args.villages)))


if __name__ == "__main__":
    main()
