"""Time the notifications of a period's publication (公示) and their delivery.

Builds, in a throwaway database, a village of N households with M members each bound to WeChat
and an approved period scoring every household; times `periods.publish`, which queues one
period_published message per bound member in its transaction (one INSERT … SELECT). Then W
workers drain the outbox concurrently through the fake WeChat server over loopback HTTP, and
the script checks that every message was delivered exactly once.

    python3 -m uv run python bench/notifications.py       # 1,000 households × 2 members, 4 workers
    python3 -m uv run python bench/notifications.py --households 200 --members 1 --workers 2

Uses the embedded PostgreSQL in a temporary folder unless DATABASE_URL names a server (a
database is created on it and dropped afterwards).
"""

import argparse
import asyncio
import time
import uuid
from collections import Counter
from datetime import date

import httpx
from sqlalchemy import func, insert, select
from throwaway import throwaway_database  # bench/ is on sys.path when a script runs

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.integrations.fake_wechat import FakeWechatServer
from app.models import (
    Household,
    HouseholdMember,
    HouseholdPeriodScore,
    Notification,
    Participation,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
    Town,
    Village,
    WechatIdentity,
)
from app.schemas.rules import Policy
from app.security import Grant, Principal
from app.services import periods
from app.services.notification_delivery import NotificationWorker

YEAR = 2031
APPID, SECRET = "wx-bench", "bench-secret"


async def build(sessionmaker, households: int, members: int) -> tuple[uuid.UUID, uuid.UUID]:
    """The village, its bound members and an approved period; returns the period's id and a
    district admin's."""
    async with sessionmaker() as session, session.begin():
        town = Town(name="基准镇", district="基准区")
        session.add(town)
        await session.flush()
        village = Village(town_id=town.id, name="基准村")
        session.add(village)
        await session.flush()
        rule_set = RuleSet(
            village_id=village.id,
            town_id=town.id,
            year=YEAR,
            version=1,
            status=RuleSetStatus.APPROVED,
            title="基准细则",
            effective_from=date(YEAR, 1, 1),
            policy=Policy().model_dump(mode="json"),
        )
        period = ScoringPeriod(
            village_id=village.id,
            town_id=town.id,
            rule_set_id=rule_set.id,
            year=YEAR,
            kind=PeriodKind.MONTH,
            number=3,
            starts_on=date(YEAR, 3, 1),
            ends_on=date(YEAR, 3, 31),
            status=PeriodStatus.APPROVED,
        )
        admin = Person(name="区管理员")
        session.add_all([rule_set, admin])
        await session.flush()
        session.add(period)
        home_ids = [uuid.uuid4() for _ in range(households)]
        person_ids = [[uuid.uuid4() for _ in range(members)] for _ in home_ids]
        await session.execute(
            insert(Household),
            [
                {
                    "id": h,
                    "village_id": village.id,
                    "number": f"{n:05d}",
                    "participation": Participation.ACTIVE,
                }
                for n, h in enumerate(home_ids)
            ],
        )
        flat = [p for ids in person_ids for p in ids]
        await session.execute(
            insert(Person), [{"id": p, "name": "村民", "village_id": village.id} for p in flat]
        )
        await session.execute(
            insert(HouseholdMember),
            [
                {
                    "id": uuid.uuid4(),
                    "household_id": h,
                    "person_id": p,
                    "village_id": village.id,
                    "is_head": i == 0,
                }
                for h, ids in zip(home_ids, person_ids, strict=True)
                for i, p in enumerate(ids)
            ],
        )
        await session.execute(
            insert(WechatIdentity),
            [
                {"id": uuid.uuid4(), "openid": f"o-{p.hex}", "session_key": "k", "person_id": p}
                for p in flat
            ],
        )
        await session.flush()
        await session.execute(
            insert(HouseholdPeriodScore),
            [
                {"household_id": h, "period_id": period.id, "village_id": village.id, "score": 100}
                for h in home_ids
            ],
        )
    return period.id, admin.id


async def run(url: str, households: int, members: int, workers: int) -> None:
    engine = create_engine(url, pool_size=workers * 4 + 2)
    sessionmaker = create_sessionmaker(engine)
    period_id, admin_id = await build(sessionmaker, households, members)
    admin = Principal(admin_id, uuid.uuid4(), (Grant(Role.DISTRICT_ADMIN, None, None),))

    started = time.perf_counter()
    async with sessionmaker() as session, session.begin():
        await periods.publish(session, admin, period_id)
    published = time.perf_counter() - started
    async with sessionmaker() as session:
        queued = (await session.execute(select(func.count()).select_from(Notification))).scalar()
    print(
        f"publish with {households:,} households × {members}: {published:6.3f} s "
        f"({queued:,} messages queued in its transaction)"
    )

    fake = FakeWechatServer(APPID, SECRET).start()
    settings = Settings(
        environment="test",
        wechat_api_base=fake.base_url,
        wechat_appid=APPID,
        wechat_secret=SECRET,
        notify_batch_size=50,
        notify_concurrency=4,
    )

    async def drain(worker: NotificationWorker) -> None:
        while await worker.deliver_batch():
            pass

    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            started = time.perf_counter()
            await asyncio.gather(
                *(drain(NotificationWorker(sessionmaker, http, settings)) for _ in range(workers))
            )
            sent = time.perf_counter() - started
        counts = Counter(message["touser"] for message in fake.delivered())
    finally:
        fake.stop()
        await engine.dispose()
    assert len(counts) == queued, "a message was lost"
    assert set(counts.values()) == {1}, "a message was sent twice"
    print(
        f"{workers} workers delivered {queued:,} messages in {sent:6.2f} s "
        f"({queued / sent:,.0f}/s), each exactly once; {len(fake.calls_to('token'))} token fetch"
    )


async def with_database(households: int, members: int, workers: int) -> None:
    async with throwaway_database() as url:
        await run(url, households, members, workers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(with_database(args.households, args.members, args.workers))


if __name__ == "__main__":
    main()
