"""Several workers over one outbox with real commits: each message is sent exactly once, and
one token fetch serves them all. A database of this module's own; nothing is committed into
the shared test database."""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.integrations.fake_wechat import FakeWechatServer
from app.main import create_app
from app.models import Notification, NotificationKind, NotificationStatus, Village
from app.services.notification_delivery import WORKER_TASK, NotificationWorker, running_worker
from app.services.notifications import notify_person
from tests import factories as f
from tests.conftest import database_of_its_own
from tests.notifications.conftest import bound_villager

MESSAGES = 120
WORKERS = 4


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "notify") as url:
        engine = create_engine(url, pool_size=20)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
def racing_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"notify_concurrency": 4, "notify_batch_size": 7, "notify_poll_seconds": 0.05}
    )


async def queue_messages(engine: AsyncEngine) -> Village:
    """MESSAGES messages to as many villagers, committed; each says which one it is."""
    async with create_sessionmaker(engine)() as session, session.begin():
        village = await f.create_village(session)
        for n in range(MESSAGES):
            person = await bound_villager(session, village)
            await notify_person(
                session,
                village_id=village.id,
                person_id=person.id,
                kind=NotificationKind.PERIOD_PUBLISHED,
                data={"thing1": f"消息{n}"},
            )
    return village


async def statuses(engine: AsyncEngine, village: Village) -> dict[str, int]:
    async with create_sessionmaker(engine)() as session:
        rows = await session.execute(
            select(col(Notification.status), func.count())
            .where(col(Notification.village_id) == village.id)
            .group_by(col(Notification.status))
        )
        return {status: count for status, count in rows.all()}


def sent_once(wechat: FakeWechatServer) -> bool:
    counts = Counter(message["data"]["thing1"]["value"] for message in wechat.delivered())
    return set(counts) == {f"消息{n}" for n in range(MESSAGES)} and set(counts.values()) == {1}


async def test_workers_racing_over_one_outbox_send_each_message_once(
    engine_of_its_own: AsyncEngine, wechat: FakeWechatServer, racing_settings: Settings
) -> None:
    village = await queue_messages(engine_of_its_own)
    sessionmaker = create_sessionmaker(engine_of_its_own)

    async def drain(worker: NotificationWorker) -> int:
        batches = 0
        while await worker.deliver_batch():
            batches += 1
        return batches

    async with httpx.AsyncClient(timeout=1.0) as http:
        workers = [NotificationWorker(sessionmaker, http, racing_settings) for _ in range(WORKERS)]
        batches = await asyncio.gather(*(drain(worker) for worker in workers))

    assert sent_once(wechat)
    assert len(wechat.calls_to("send")) == MESSAGES
    assert sum(batches) >= MESSAGES // racing_settings.notify_batch_size
    assert sum(1 for b in batches if b) > 1  # the workers really shared the outbox
    # The first fetch held the row lock; the others waited and reused its token.
    assert len(wechat.calls_to("token")) == 1
    assert await statuses(engine_of_its_own, village) == {NotificationStatus.SENT: MESSAGES}


async def test_background_workers_deliver_and_stop_cleanly(
    engine_of_its_own: AsyncEngine, wechat: FakeWechatServer, racing_settings: Settings
) -> None:
    village = await queue_messages(engine_of_its_own)
    sessionmaker = create_sessionmaker(engine_of_its_own)

    async with (
        httpx.AsyncClient(timeout=1.0) as http,
        running_worker(sessionmaker, http, racing_settings),
        running_worker(sessionmaker, http, racing_settings),
    ):
        async with asyncio.timeout(30):
            while len(wechat.delivered()) < MESSAGES:
                await asyncio.sleep(0.05)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == WORKER_TASK]

    assert tasks == []
    assert sent_once(wechat)
    assert await statuses(engine_of_its_own, village) == {NotificationStatus.SENT: MESSAGES}


async def app_tasks(
    settings: Settings, url: str, wechat: FakeWechatServer, *, until_sent: int
) -> list[str]:
    """Run the app's lifespan until `until_sent` messages went out; the worker tasks it ran."""
    app = create_app(settings, database_url=url)
    async with app.router.lifespan_context(app):
        names = [t.get_name() for t in asyncio.all_tasks() if t.get_name() == WORKER_TASK]
        async with asyncio.timeout(30):
            while len(wechat.delivered()) < until_sent:
                await asyncio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() if t.get_name() == WORKER_TASK] == []
    return names


async def test_the_app_process_runs_a_worker_unless_told_not_to(
    engine_of_its_own: AsyncEngine, wechat: FakeWechatServer, racing_settings: Settings
) -> None:
    url = engine_of_its_own.url.render_as_string(hide_password=False)
    village = await queue_messages(engine_of_its_own)

    off = racing_settings.model_copy(update={"notify_worker_in_app": False})
    assert await app_tasks(off, url, wechat, until_sent=0) == []
    assert await statuses(engine_of_its_own, village) == {NotificationStatus.QUEUED: MESSAGES}

    assert await app_tasks(racing_settings, url, wechat, until_sent=MESSAGES) == [WORKER_TASK]
    assert sent_once(wechat)
    assert await statuses(engine_of_its_own, village) == {NotificationStatus.SENT: MESSAGES}
