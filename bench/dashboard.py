"""Time the town dashboard's read: one town of V villages × N households, a published month
each (approved through `periods.approve`, so the precomputed figures are the product's own),
claims pending, a shop's collected orders and the balances approval left.

    python3 -m uv run python bench/dashboard.py                  # 20 villages × 1,000
    python3 -m uv run python bench/dashboard.py --villages 3 --households 200 --runs 20

Three figures, each the median and 95th percentile of `--runs` reads after two warm-ups:
the service alone (`dashboard.town_dashboard` in its own session and transaction), the whole
request through the ASGI app (routing, dependencies, serialising the JSON), and a same-run
baseline: a FastAPI route answering `SELECT 1` on the same database through the same session
dependency. The ratio to the baseline is the figure to compare across machines.

Uses the embedded PostgreSQL in a temporary folder unless DATABASE_URL names a server.
"""

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
from approval import YEAR, build_village  # bench/ is on sys.path when a script runs
from fastapi import FastAPI
from sqlalchemy import insert, text
from throwaway import throwaway_database

from app.config import Settings
from app.db import SessionDep, create_engine, create_sessionmaker
from app.main import create_app
from app.models import (
    Claim,
    ClaimStatus,
    OrderChannel,
    OrderStatus,
    PeriodStatus,
    Person,
    Role,
    Shop,
    ShopOrder,
    Town,
)
from app.security import Grant, Principal, current_principal
from app.services import periods
from app.services.supervision import dashboard

CLAIMS_PER_VILLAGE = 30
ORDERS_PER_VILLAGE = 300


async def populate(session, town_id: uuid.UUID, village_id: uuid.UUID, n: int) -> None:
    """Pending claims of various ages and a shop's collected orders in March."""
    homes = (
        await session.execute(
            text("SELECT id FROM household WHERE village_id = :v ORDER BY number"),
            {"v": village_id},
        )
    ).scalars()
    homes = list(homes)
    item = (
        await session.execute(
            text("SELECT id, lineage_id FROM rule_item WHERE village_id = :v LIMIT 1"),
            {"v": village_id},
        )
    ).one()
    person = uuid.uuid4()
    await session.execute(insert(Person).values(id=person, name="村民", village_id=village_id))
    now = datetime(YEAR, 4, 2, tzinfo=UTC)
    await session.execute(
        insert(Claim),
        [
            {
                "village_id": village_id,
                "household_id": homes[k],
                "rule_item_id": item.id,
                "item_lineage_id": item.lineage_id,
                "activity_on": date(YEAR, 3, 1) + timedelta(days=k % 28),
                "description": "志愿服务",
                "status": ClaimStatus.PENDING,
                "submitted_by": person,
                "created_at": now - timedelta(days=k * 2),
            }
            for k in range(CLAIMS_PER_VILLAGE)
        ],
    )
    shop = uuid.uuid4()
    await session.execute(
        insert(Shop).values(
            id=shop,
            town_id=town_id,
            village_id=village_id,
            served_village_ids=[village_id],
            name="积分超市",
        )  # fmt: skip
    )
    await session.execute(
        insert(ShopOrder),
        [
            {
                "shop_id": shop,
                "town_id": town_id,
                "village_id": village_id,
                "household_id": homes[k % n],
                "channel": OrderChannel.PAY_CODE,
                "status": OrderStatus.COLLECTED,
                "points": 5,
                "spends_balance": True,
                "round_key": f"{YEAR}-03",
                "expires_at": now,
                "created_by": person,
                "collected_at": datetime(YEAR, 3, 1 + k % 28, 3, tzinfo=UTC),
            }
            for k in range(ORDERS_PER_VILLAGE)
        ],
    )


def figures(timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):6.1f} ms, p95 {p95:6.1f} ms"


async def run(url: str, households: int, villages: int, runs: int) -> None:
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    admin = Principal(
        person_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        grants=(Grant(Role.DISTRICT_ADMIN, None, None),),
    )
    town_id = uuid.uuid4()
    supervisor = Principal(
        person_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        grants=(Grant(Role.TOWN_SUPERVISOR, town_id, None),),
    )
    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(Town).values(id=town_id, name="基准镇"))
        await session.execute(insert(Person).values(id=admin.person_id, name="管理员"))
        built = [
            await build_village(session, town_id, f"村{v:02d}", households) for v in range(villages)
        ]
        for village_id, _ in built:
            await populate(session, town_id, village_id, households)
    for _, period_id in built:
        async with sessionmaker() as session, session.begin():
            await periods.approve(session, admin, period_id)
            await periods.publish(session, admin, period_id)
    async with sessionmaker() as session, session.begin():
        await session.execute(text("ANALYZE"))
        status = await session.scalar(
            text("SELECT count(*) FROM scoring_period WHERE status = :s"),
            {"s": PeriodStatus.PUBLISHED.value},
        )
    print(
        f"town of {villages} villages × {households:,} households built, approved and "
        f"published in {time.perf_counter() - started:.0f} s ({status} periods published)"
    )

    async def service() -> float:
        async with sessionmaker() as session, session.begin():
            began = time.perf_counter()
            board = await dashboard.town_dashboard(session, supervisor, town_id, YEAR, 1, None)
            took = time.perf_counter() - began
        assert len(board.villages) == villages
        assert all(v.periods[0].std_dev is not None for v in board.villages)
        return took

    app = create_app(Settings(environment="test", database_url=url))
    app.state.sessionmaker = sessionmaker
    app.dependency_overrides[current_principal] = lambda: supervisor
    baseline = FastAPI()
    baseline.state.sessionmaker = sessionmaker

    @baseline.get("/one")
    async def one(session: SessionDep) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    window = dashboard.window(YEAR, 1, None)
    village_ids = [village_id for village_id, _ in built]

    async def time_section(section) -> list[float]:
        """Where the service's time goes: each section alone, in its own transaction."""
        timings = []
        for _ in range(runs):
            async with sessionmaker() as session, session.begin():
                began = time.perf_counter()
                await section(session, village_ids, window)
                timings.append(time.perf_counter() - began)
        return timings

    async def request(client: httpx.AsyncClient, path: str) -> float:
        began = time.perf_counter()
        response = await client.get(path)
        took = time.perf_counter() - began
        assert response.status_code == 200, response.text
        return took

    path = f"/api/v1/towns/{town_id}/dashboard?year={YEAR}&quarter=1"
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=baseline), base_url="http://t") as b,
    ):
        size = len((await api.get(path)).content)
        for _ in range(2):
            await service()
            await request(api, path)
            await request(b, "/one")
        in_service = [await service() for _ in range(runs)]
        through_app = [await request(api, path) for _ in range(runs)]
        select_one = [await request(b, "/one") for _ in range(runs)]
    sections = {section.__name__: await time_section(section) for section in dashboard.SECTIONS}
    await engine.dispose()
    print(f"dashboard, service only:      {figures(in_service)}")
    print(f"dashboard, through the app:   {figures(through_app)}  ({size:,} bytes of JSON)")
    print(f"baseline SELECT 1 route:      {figures(select_one)}")
    ratio = statistics.median(through_app) / statistics.median(select_one)
    print(f"dashboard / baseline (medians): {ratio:.1f}×")
    for name, timings in sections.items():
        print(f"  section {name:<16} {figures(timings)}")


async def with_database(households: int, villages: int, runs: int) -> None:
    async with throwaway_database() as url:
        await run(url, households, villages, runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--villages", type=int, default=20)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(with_database(args.households, args.villages, args.runs))


if __name__ == "__main__":
    main()
