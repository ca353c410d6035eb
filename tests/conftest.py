import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app import clock
from app.config import Settings
from app.db import async_url, create_engine, reading_request
from app.integrations.fake_wechat import FakeWechatServer
from app.main import create_app
from app.migrate import upgrade_on

ROOT = Path(__file__).resolve().parent.parent
TEST_APPID = "wx-test-appid"
TEST_SECRET = "test-wechat-secret"


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server: TEST_DATABASE_URL, or an embedded one in .data/test-pgdata."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    from app.database_server import start_embedded

    global _embedded_server
    _embedded_server, url = start_embedded(ROOT / ".data" / "test-pgdata", "postgres")
    return url


_embedded_server = None


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A database of its own for this run, built by the migrations and dropped afterwards."""
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"vp_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(
        async_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@asynccontextmanager
async def database_of_its_own(database_url: str, prefix: str) -> AsyncIterator[str]:
    """A migrated database beside the shared one, dropped afterwards: for tests that must
    really commit (races, the demo), since ledger rows can never be deleted again."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_on)
        await engine.dispose()
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=20)
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_on)
    event.listen(engine.sync_engine, "before_cursor_execute", _refuse_writes_of_reads)
    yield engine
    await engine.dispose()


# What PostgreSQL refuses on the read engine's read-only connections, which GET requests use
# in production; the tests run requests on their own connection, so they look for it here.
_WRITES = re.compile(
    r"^\s*(INSERT|UPDATE|DELETE|MERGE|LOCK|TRUNCATE)\b|\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE"
    r"|SHARE)\b|pg_advisory_xact_lock|nextval\(",
    re.IGNORECASE,
)
writes_of_reads: list[str] = []


def _refuse_writes_of_reads(
    conn: object, cursor: object, statement: str, *args: object, **kwargs: object
) -> None:
    if reading_request.get() and _WRITES.search(statement):
        writes_of_reads.append(statement)
        raise AssertionError(f"a GET request sent a write: {statement[:200]}")


@pytest.fixture(autouse=True)
def _reads_do_not_write() -> Iterator[None]:
    writes_of_reads.clear()
    yield
    assert not writes_of_reads, f"a GET request sent writes: {writes_of_reads}"


@pytest.fixture(scope="session")
def fake_wechat_server() -> AsyncIterator[FakeWechatServer]:
    server = FakeWechatServer(TEST_APPID, TEST_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def wechat(fake_wechat_server: FakeWechatServer) -> FakeWechatServer:
    fake_wechat_server.reset()
    return fake_wechat_server


@pytest.fixture(scope="session")
def settings(
    fake_wechat_server: FakeWechatServer,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        wechat_api_base=fake_wechat_server.base_url,
        wechat_appid=TEST_APPID,
        wechat_secret=TEST_SECRET,
        wechat_timeout_seconds=1.0,
        photo_dir=tmp_path_factory.mktemp("photos"),
    )


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection in an outer transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        if transaction.is_active:
            await transaction.rollback()


@pytest.fixture
async def db(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    session = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    yield session
    await session.close()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """One app for the run: building it costs about 0.2 s, so tests share it and swap only the
    per-test sessionmaker (tests that change app.state put it back)."""
    app = create_app(settings)
    async with httpx.AsyncClient(timeout=settings.wechat_timeout_seconds) as http:
        app.state.http = http
        yield app


@pytest.fixture(scope="session")
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def app_and_client(
    app: FastAPI, asgi_client: httpx.AsyncClient, connection: AsyncConnection
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # Requests commit as in production, but into savepoints of the test's transaction.
    app.state.sessionmaker = async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    yield app, asgi_client
    del app.state.sessionmaker


@pytest.fixture
async def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture
def set_clock() -> Iterator[Callable[[datetime], None]]:
    """Move the product's clock (app/clock.py) for one test; it ticks on from there and is
    put back afterwards."""
    yield clock.set_now
    clock.set_now(None)
