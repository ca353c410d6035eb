import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Annotated, Any

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
    server_settings = {"application_name": "village-points", "timezone": "UTC"}
    if read_only:
        # PostgreSQL itself refuses a write (or a row lock) on these connections, so a GET
        # that ever tried one fails loudly instead of committing half of it statement by
        # statement.
        server_settings["default_transaction_read_only"] = "on"
    connect_args: dict[str, Any] = {"server_settings": server_settings, "command_timeout": 30}
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
