"""Invariant 1: the database itself refuses to change or remove a ledger entry."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.ledger.conftest import Scene, assert_ledger_consistent, entry_count, post_entry

REFUSED = [
    pytest.param("UPDATE ledger_entry SET points = 1000 WHERE id = :id", id="update"),
    pytest.param("UPDATE ledger_entry SET memo = 'x' WHERE village_id = :v", id="update-all"),
    pytest.param("DELETE FROM ledger_entry WHERE id = :id", id="delete"),
    pytest.param("DELETE FROM ledger_entry WHERE village_id = :v", id="delete-all"),
    pytest.param("TRUNCATE ledger_entry", id="truncate"),
    pytest.param("TRUNCATE ledger_entry CASCADE", id="truncate-cascade"),
]


@pytest.mark.parametrize("statement", REFUSED)
async def test_the_database_refuses_to_change_or_remove_entries(
    db: AsyncSession, scene: Scene, statement: str
) -> None:
    first = await post_entry(db, scene.household, 10)
    await post_entry(db, scene.neighbour, 5)
    params = {"id": first["id"], "v": scene.village.id}

    with pytest.raises(IntegrityError, match="append-only"):
        async with db.begin_nested():
            await db.execute(text(statement), params)

    rows = (
        await db.execute(
            text("SELECT seq, points, memo FROM ledger_entry WHERE village_id = :v ORDER BY seq"),
            {"v": scene.village.id},
        )
    ).all()
    assert [tuple(r) for r in rows] == [(1, 10, ""), (2, 5, "")]
    assert await entry_count(db, scene.village.id) == 2
    await assert_ledger_consistent(db, scene.village.id)
