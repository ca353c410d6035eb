"""app/driver.py: a Core statement compiled once for asyncpg, its values given by name."""

import uuid

import pytest
from sqlalchemy import Integer, String, Uuid, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import create_sessionmaker, driver_connection, open_read_pool
from app.driver import DriverStatement, param
from app.models import PeriodStatus, ShopCodeUse


async def test_values_by_name_and_the_statements_own_constants(db: AsyncSession) -> None:
    # A constant enum member and an IN list of them are fixed at compile time, between the
    # parameters; a parameter used twice is sent once.
    text = param("text", String())
    statement = DriverStatement(
        select(
            literal(PeriodStatus.PUBLISHED).label("status"),
            literal("closed").in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]).label("listed"),
            (param("number", Integer()) + 1).label("next"),
            (text + text).label("twice"),
        ),
        "text",
        "number",
    )
    row = await statement.fetchrow(db, number=41, text="ab")
    assert dict(row) == {"status": "published", "listed": True, "next": 42, "twice": "abab"}


async def test_every_value_and_no_other(db: AsyncSession) -> None:
    statement = DriverStatement(select(param("number", Integer()).label("n")), "number")
    with pytest.raises(TypeError):
        await statement.fetchrow(db)
    with pytest.raises(TypeError):
        await statement.fetchrow(db, number=1, other=2)
    with pytest.raises(ValueError, match="not parameters"):
        DriverStatement(select(param("number", Integer())), "number", "missing")


async def test_a_statement_sent_first_on_a_session_runs_in_its_transaction(
    engine: AsyncEngine,
) -> None:
    # SQLAlchemy's asyncpg adapter sends BEGIN only before its own first statement: a write
    # sent to the driver first would otherwise commit on its own, whatever the request does.
    statement = DriverStatement(select(param("number", Integer()).label("n")), "number")
    async with create_sessionmaker(engine)() as session:
        row = await statement.fetchrow(session, number=1)
        assert row["n"] == 1
        driver = await driver_connection(session)
        assert driver.is_in_transaction()
        # SQLAlchemy carries on in that same transaction, and ends it.
        assert (await session.execute(select(literal(2)))).scalar_one() == 2
        await session.rollback()
        assert not driver.is_in_transaction()


async def test_a_constraint_refused_on_a_session_is_sqlalchemys_integrity_error(
    db: AsyncSession,
) -> None:
    # As the problem handlers know it (409), not the driver's own error (500).
    ids = [uuid.uuid4() for _ in range(4)]
    claim = DriverStatement(
        insert(ShopCodeUse).values(
            nonce=ids[0],
            shop_id=ids[1],  # no such shop
            household_id=ids[2],
            order_id=param("order_id", Uuid()),
        ),
        "order_id",
    )
    with pytest.raises(IntegrityError):
        await claim.execute(db, order_id=ids[3])


async def test_the_read_pool_plans_once_and_lends_a_connection_back_clean_without_a_reset(
    database_url: str,
) -> None:
    pool = await open_read_pool(database_url, 1)
    try:
        async with pool.acquire() as connection:
            backend = connection.get_server_pid()
            # What a read that failed half way could leave: an open transaction.
            await connection.execute("BEGIN")
            sent_before = connection._protocol.queries_count
        async with pool.acquire() as connection:
            assert connection.get_server_pid() == backend
            assert not connection.is_in_transaction()
            # The rollback alone, not asyncpg's four-statement reset, went between the two.
            assert connection._protocol.queries_count == sent_before + 1
            assert await connection.fetchval("SHOW default_transaction_read_only") == "on"
            # Planned once per connection, not once per execution (bench/read_plans.py).
            assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await pool.close()
