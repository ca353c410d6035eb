import json
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Annotated, Any, TypeAlias

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from app.errors import AppError

# Set before any model is imported so every constraint gets a predictable name that
# migrations can refer to.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata


def async_url(url: str) -> str:
    """Accept the usual postgresql:// form and point SQLAlchemy at asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def pgbouncer_connect_args() -> dict[str, Any]:
    """asyncpg behind PgBouncer in transaction mode, where consecutive transactions of one
    connection may run on different server connections: nothing may count on a statement
    prepared earlier (no statement caches), and names must not collide with the statements
    other clients left on a server connection (a unique name each time)."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def create_engine(
    url: str, *, pool_size: int = 10, pgbouncer: bool = False, read_only: bool = False
) -> AsyncEngine:
    """`read_only`: the engine GET requests read through (see `get_session`), its connections
    in autocommit and refusing to write."""
    connect_args: dict[str, Any] = {
        "server_settings": _server_settings(read_only),
        "command_timeout": 30,
    }
    if pgbouncer:
        # PgBouncer pools the server connections; a pool of our own would only hold on to
        # client slots.
        return create_async_engine(
            async_url(url),
            poolclass=NullPool,
            connect_args=connect_args | pgbouncer_connect_args(),
        )
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        # SQLAlchemy closes a connection beyond pool_size as soon as it comes back to a full
        # pool, so under a steady load above pool_size the overflow is opened and closed again
        # request after request (a new PostgreSQL backend each time). Reads are short: they
        # wait for one of their pool's connections instead. Writes may hold theirs on a lock,
        # and keep the burst allowance.
        max_overflow=0 if read_only else pool_size,
        # No pre-ping: it is a round trip on every checkout, that is on every request. A
        # connection the server dropped fails its first statement instead; SQLAlchemy sees a
        # disconnect and invalidates every idle connection of the pool, so a restart of
        # PostgreSQL costs the one request that met it, not one per pooled connection.
        # Recycling bounds a connection's age for whatever closes idle ones in between.
        pool_recycle=1800,
        connect_args=connect_args,
        # A read needs no BEGIN and COMMIT around it: at READ COMMITTED each statement reads
        # its own snapshot inside a transaction as outside one, so the two round trips bought
        # nothing.
        isolation_level="AUTOCOMMIT" if read_only else "READ COMMITTED",
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


READ_METHODS = frozenset({"GET", "HEAD"})
# True while a GET or HEAD request runs: the tests fail any write it sends (tests/conftest.py),
# which the read engine would refuse in production.
reading_request: ContextVar[bool] = ContextVar("reading_request", default=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent; a GET or HEAD
    reads through the read-only engine when the app has one, without a transaction."""
    state = request.app.state
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    reading = request.method in READ_METHODS
    if reading:
        sessionmaker = getattr(state, "read_sessionmaker", None) or sessionmaker
    reading_request.set(reading)
    try:
        async with sessionmaker() as session:
            try:
                yield session
            except AppError as exc:
                if exc.keeps_changes:
                    await session.commit()
                else:
                    await session.rollback()
                raise
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()
    finally:
        # Not reset(): a test's in-process client runs the request in the test's own context.
        reading_request.set(False)


# scope="function" makes the commit run when the endpoint returns, before the response is
# sent, so a client never sees success for a transaction that then fails to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, for the few bulk paths (COPY,
    tens of thousands of rows read) where SQLAlchemy's per-row work would dominate."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return driver


async def transaction_driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, its transaction begun. SQLAlchemy's asyncpg
    adapter sends BEGIN lazily, before its own first statement: a statement sent to the driver
    first would otherwise run, and commit, on its own. (The adapter's `_transaction` and
    `_start_transaction` are private; tests/infra/test_driver.py pins what they do.)"""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    return raw.driver_connection


# Where a statement sent to the driver runs: a session's transaction, or a hot read's reads.
DriverSource: TypeAlias = "AsyncSession | asyncpg.Connection | PooledReads | SessionReads"


async def driver_of(source: DriverSource) -> Any:
    """The asyncpg connection of a session (under its transaction), or `source` itself when it
    sends statements already (an asyncpg connection, a hot read's `hot_reads`)."""
    return await driver_connection(source) if isinstance(source, AsyncSession) else source


def _server_settings(read_only: bool) -> dict[str, str]:
    settings = {"application_name": "village-points", "timezone": "UTC"}
    if read_only:
        # PostgreSQL itself refuses a write (or a row lock) on these connections, so a read
        # that ever tried one fails loudly instead of committing half of it statement by
        # statement.
        settings["default_transaction_read_only"] = "on"
    return settings


async def _decode_json_as_sqlalchemy_does(connection: asyncpg.Connection) -> None:
    # The same codecs SQLAlchemy's asyncpg dialect sets on its connections, so a statement
    # sent to the driver reads json and jsonb alike through either pool.
    await connection.set_type_codec(
        "json",
        encoder=str.encode,
        decoder=lambda value: json.loads(value.decode()),
        schema="pg_catalog",
        format="binary",
    )
    await connection.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + value.encode(),
        decoder=lambda value: json.loads(value[1:].decode()),
        schema="pg_catalog",
        format="binary",
    )


# A hot read is one statement of many scalar subqueries, prepared once per connection. Left to
# choose, PostgreSQL kept planning it afresh for each execution's values (a custom plan: the
# generic one's estimate came out dearer), and the planning cost several times the execution.
# Every hot read is keyed by ids and the village, so one plan serves all values; bench/
# read_plans.py prints each generic plan (whole-table scans only of tables a page or two long,
# where PostgreSQL prefers them to the index they have).
_PLANNED_ONCE = {"plan_cache_mode": "force_generic_plan"}


async def open_read_pool(url: str, size: int) -> asyncpg.Pool:
    """The hot reads' pool (`PooledReads`): asyncpg's own, read-only and in autocommit
    like the read engine's. Lending one of its connections costs a fraction of what a
    SQLAlchemy session and its pool's checkout cost, which for a read of one statement was as
    much as the statement. Connections open as they are first needed."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        async_url(url).replace("postgresql+asyncpg://", "postgresql://", 1),
        min_size=0,
        max_size=size,
        server_settings=_server_settings(read_only=True) | _PLANNED_ONCE,
        command_timeout=30,
        init=_decode_json_as_sqlalchemy_does,
        reset=_nothing_to_reset,
    )
    return pool


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """asyncpg's default reset on release is a round trip of its own (advisory locks, cursors,
    LISTENs, settings), as dear as the read it follows. A hot read's single statement in
    autocommit leaves none of those behind; an open transaction, the one thing a failed read
    could leave, asyncpg still rolls back before calling this."""


class PooledReads:
    """Where a hot read's statements run (app/driver.py): each on a connection the read pool
    lends for that statement alone. A hot read sends one statement, sometimes two; lending per
    request instead took a dependency that yields, and FastAPI's exit stack and cancel scope
    around it cost more than the lending."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as connection:
            return await connection.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as connection:
            return await connection.fetchval(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._pool.acquire() as connection:
            rows: list[Any] = await connection.fetch(sql, *args)
            return rows


class SessionReads:
    """PooledReads where the app has no read pool (behind PgBouncer; tests, whose requests
    run in the test's transaction): each statement on the connection under a session of the
    app's sessionmaker, looked up when the statement runs (tests swap it)."""

    def __init__(self, state: Any) -> None:
        self._state = state

    async def _run(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        sessionmaker: async_sessionmaker[AsyncSession] = self._state.sessionmaker
        reading_request.set(True)
        try:
            async with sessionmaker() as session:
                driver = await driver_connection(session)
                return await getattr(driver, method)(sql, *args)
        finally:
            reading_request.set(False)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._run("fetch", sql, args)
        return rows


def hot_reads(request: Request) -> PooledReads | SessionReads:
    """Where the request's hot read sends its statements."""
    reads: PooledReads | SessionReads = request.app.state.hot_reads
    return reads
