"""app/driver.py: a Core statement compiled once for asyncpg, its values given by name."""

import pytest
from sqlalchemy import Integer, String, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.driver import DriverStatement, param
from app.models import PeriodStatus


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
