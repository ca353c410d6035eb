from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.config import Settings
from app.models import Notification, Person, Village, WechatIdentity
from app.services.notification_delivery import NotificationWorker
from tests import factories as f


@pytest.fixture
def notify_settings(settings: Settings) -> Settings:
    # One send at a time: the worker's sessions share the test's single connection.
    return settings.model_copy(
        update={"notify_concurrency": 1, "notify_max_attempts": 3, "notify_batch_size": 10}
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=1.0) as client:
        yield client


@pytest.fixture
def worker_sessions(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """The worker commits as in production, but into savepoints of the test's transaction."""
    return async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def worker(
    worker_sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    notify_settings: Settings,
) -> NotificationWorker:
    return NotificationWorker(worker_sessions, http, notify_settings)


async def bound_villager(db: AsyncSession, village: Village, openid: str | None = None) -> Person:
    """A villager who logged in with WeChat and is bound to their person."""
    person = await f.create_person(db, village)
    db.add(
        WechatIdentity(
            openid=openid or f"openid-{person.id.hex[:12]}",
            session_key="session-key",
            person_id=person.id,
        )
    )
    await db.flush()
    return person


async def outbox(db: AsyncSession, village: Village) -> list[Notification]:
    # populate_existing: the worker changed the rows through sessions of its own.
    rows = await db.execute(
        select(Notification)
        .where(Notification.village_id == village.id)  # type: ignore[arg-type]
        .order_by(Notification.created_at, Notification.openid)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())
