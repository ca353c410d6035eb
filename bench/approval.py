"""Time a period's approval (两委审定): every card scored and posted to the ledger at once.

Builds, in a throwaway database, villages of N households on a rule set of 20 inspection items
in 4 capped categories (plus one veto item), fills a complete card per household, submits, and
times `periods.approve` (compute, post ~21 entries a household to the hash-chained ledger,
write summaries). Then a town of V such villages, approved one after the other.

    python3 -m uv run python bench/approval.py                # 1,000 households; town of 20
    python3 -m uv run python bench/approval.py --households 200 --villages 3

Uses the embedded PostgreSQL in a temporary folder unless DATABASE_URL names a server (a
database is created on it and dropped afterwards).
"""

import argparse
import asyncio
import time
import uuid
from datetime import date

import psutil
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from throwaway import throwaway_database  # bench/ is on sys.path when a script runs

from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    Cadence,
    Household,
    HouseholdMember,
    ItemKind,
    LoginMethod,
    Outcome,
    Participation,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Town,
    Village,
)
from app.schemas.rules import Policy
from app.security import Grant, Principal
from app.services import ledger, periods
from app.services.auth import start_login

YEAR = 2031


async def logged_in_head(
    session: AsyncSession, village_id: uuid.UUID, household_id: uuid.UUID, name: str
) -> str:
    """A new person made head of the household, logged in with a password: the access token."""
    person_id = uuid.uuid4()
    await session.execute(insert(Person).values(id=person_id, name=name, village_id=village_id))
    await session.execute(
        insert(HouseholdMember).values(
            id=uuid.uuid4(), household_id=household_id, person_id=person_id,
            village_id=village_id, is_head=True,
        )
    )  # fmt: skip
    pair = await start_login(session, get_settings(), person_id, LoginMethod.PASSWORD)
    return pair.access_token


async def build_village(
    session, town_id: uuid.UUID, name: str, households: int
) -> tuple[uuid.UUID, uuid.UUID]:
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
            status=RuleSetStatus.DRAFT,
            title="bench",
            effective_from=date(YEAR, 1, 1),
            policy=Policy(period_cap=100).model_dump(mode="json"),
        )
    )
    items = []
    for c in range(4):
        category_id = uuid.uuid4()
        await session.execute(
            insert(RuleCategory).values(
                id=category_id,
                rule_set_id=rule_set_id,
                village_id=village_id,
                name=f"类{c}",
                cap=20,
            )
        )
        for i in range(5):
            items.append(
                {
                    "id": uuid.uuid4(),
                    "rule_set_id": rule_set_id,
                    "village_id": village_id,
                    "category_id": category_id,
                    "lineage_id": uuid.uuid4(),
                    "code": f"{c}.{i}",
                    "title": f"项目{c}.{i}",
                    "points": 5,
                    "kind": ItemKind.INSPECTION,
                    "cadence": Cadence.MONTHLY,
                    "position": i,
                }
            )
    veto_category = uuid.uuid4()
    await session.execute(
        insert(RuleCategory).values(
            id=veto_category, rule_set_id=rule_set_id, village_id=village_id, name="否决"
        )
    )
    items.append(
        {
            "id": uuid.uuid4(),
            "rule_set_id": rule_set_id,
            "village_id": village_id,
            "category_id": veto_category,
            "lineage_id": uuid.uuid4(),
            "code": "V1",
            "title": "违法建筑",
            "points": 0,
            "kind": ItemKind.VETO,
            "cadence": Cadence.MONTHLY,
            "position": 0,
        }
    )
    await session.execute(insert(RuleItem), items)
    await session.execute(
        text("UPDATE rule_set SET status = 'approved' WHERE id = :id"), {"id": rule_set_id}
    )
    homes = [
        {
            "id": uuid.uuid4(),
            "village_id": village_id,
            "number": f"{n:04d}",
            "participation": Participation.ACTIVE,
        }
        for n in range(households)
    ]
    await session.execute(insert(Household), homes)
    period_id = uuid.uuid4()
    await session.execute(
        insert(ScoringPeriod).values(
            id=period_id,
            village_id=village_id,
            town_id=town_id,
            rule_set_id=rule_set_id,
            year=YEAR,
            kind=PeriodKind.MONTH,
            number=3,
            starts_on=date(YEAR, 3, 1),
            ends_on=date(YEAR, 3, 31),
            status=PeriodStatus.SUBMITTED,
        )
    )
    scorer = uuid.uuid4()
    await session.execute(insert(Person).values(id=scorer, name="评分员"))
    cards, lines = [], []
    for n, home in enumerate(homes):
        card_id = uuid.uuid4()
        cards.append(
            {
                "id": card_id,
                "period_id": period_id,
                "household_id": home["id"],
                "village_id": village_id,
                "scorer_id": scorer,
            }
        )
        for k, item in enumerate(items):
            veto = item["kind"] is ItemKind.VETO
            finding = (n + k) % 7 == 0
            outcome = Outcome.FINDING if finding else Outcome.COMPLIANT
            points = 0 if veto or finding else item["points"]
            if veto:
                outcome = Outcome.FINDING if n % 97 == 0 else Outcome.COMPLIANT
            lines.append(
                {
                    "id": uuid.uuid4(),
                    "scorecard_id": card_id,
                    "village_id": village_id,
                    "rule_item_id": item["id"],
                    "outcome": outcome,
                    "points": points,
                }
            )
    await session.execute(insert(Scorecard), cards)
    for start in range(0, len(lines), 5000):
        await session.execute(insert(ScorecardLine), lines[start : start + 5000])
    return village_id, period_id


async def run(url: str, households: int, villages: int) -> None:
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    admin = Principal(
        person_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        grants=(Grant(Role.DISTRICT_ADMIN, None, None),),
    )
    async with sessionmaker() as session, session.begin():
        town_id = uuid.uuid4()
        await session.execute(insert(Town).values(id=town_id, name="基准镇"))
        await session.execute(insert(Person).values(id=admin.person_id, name="管理员"))
        built = [
            await build_village(session, town_id, f"村{v:02d}", households) for v in range(villages)
        ]

    timings: list[float] = []
    cpu: list[tuple[float, float]] = []
    for village_id, period_id in built:
        async with sessionmaker() as session:
            # CPU seconds spent by this process and by the PostgreSQL backend serving the
            # approval: on a shared machine these hold still while the wall clock does not.
            backend = psutil.Process(
                (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            )
            await session.commit()
            ours, theirs = time.process_time(), sum(backend.cpu_times()[:2])
            started = time.perf_counter()
            async with session.begin():
                await periods.approve(session, admin, period_id)
            timings.append(time.perf_counter() - started)
            cpu.append((time.process_time() - ours, sum(backend.cpu_times()[:2]) - theirs))
        async with sessionmaker() as session:
            verified = await ledger.verify_village_chain(session, village_id)
        assert verified.ok, verified
    async with sessionmaker() as session:
        entries = (await session.execute(text("SELECT count(*) FROM ledger_entry"))).scalar_one()
    await engine.dispose()
    first = timings[0]
    python_cpu, postgres_cpu = (sum(c) / len(cpu) for c in zip(*cpu, strict=True))
    print(
        f"households per village: {households}; items: 20 inspection + 1 veto; villages: {villages}"
    )
    print(
        f"first village approval:        {first:7.2f} s  ({households / first:,.0f} households/s)"
    )
    if villages > 1:
        rest = timings[1:]
        mean, spread = sum(rest) / len(rest), f"{min(rest):.2f}-{max(rest):.2f}"
        print(f"later villages, mean (min-max): {mean:7.2f} s  ({spread})")
        print(f"whole town, one after another:  {sum(timings):7.2f} s")
    print(
        f"CPU per approval, mean:         {python_cpu:7.2f} s Python, "
        f"{postgres_cpu:.2f} s PostgreSQL (they overlap: entries are hashed while COPY stores)"
    )
    print(f"ledger entries posted: {entries:,}; every village's chain verified")


async def with_database(households: int, villages: int) -> None:
    async with throwaway_database() as url:
        await run(url, households, villages)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--villages", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(with_database(args.households, args.villages))


if __name__ == "__main__":
    main()
