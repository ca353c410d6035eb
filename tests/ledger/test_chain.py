"""Invariant 4, second half: each village's hash chain verifies, and fails after any change
made behind the application's back (here with the append-only trigger switched off inside the
test's transaction, which the rollback undoes with everything else)."""

import uuid
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import LedgerEntry, LedgerKind, Role
from app.services import ledger
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import API, THIS_YEAR, Scene, post_entry


def verify_url(village_id: object) -> str:
    return f"{API}/villages/{village_id}/ledger/verification"


async def five_entries(db: AsyncSession, scene: Scene) -> list[dict[str, Any]]:
    return [
        await post_entry(db, household, points)
        for household, points in [
            (scene.household, 10),
            (scene.neighbour, 8),
            (scene.household, 6),
            (scene.neighbour, 4),
            (scene.household, 2),
        ]
    ]


async def verify(client: httpx.AsyncClient, scene: Scene) -> dict[str, Any]:
    response = await client.get(verify_url(scene.village.id), headers=scene.admin_headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def behind_the_back(db: AsyncSession, statement: str, **params: object) -> None:
    await db.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
    await db.execute(text(statement), params)
    await db.execute(text("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only"))


async def test_an_untouched_chain_verifies(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    empty = await verify(client, scene)
    await five_entries(db, scene)

    body = await verify(client, scene)

    assert empty == {
        "village_id": str(scene.village.id),
        "ok": True,
        "entries_checked": 0,
        "first_bad_seq": None,
        "problem": None,
    }
    assert body == {**empty, "entries_checked": 5}
    # Verifying in small batches walks the same chain.
    small = await ledger.verify_village_chain(db, scene.village.id, batch=2)
    assert (small.ok, small.entries_checked) == (True, 5)


async def test_a_changed_entry_breaks_the_chain_there(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entries = await five_entries(db, scene)

    await behind_the_back(
        db, "UPDATE ledger_entry SET points = points + 100 WHERE id = :id", id=entries[2]["id"]
    )

    body = await verify(client, scene)
    assert (body["ok"], body["first_bad_seq"], body["entries_checked"]) == (False, 3, 2)
    assert "hash" in body["problem"]
    # The change stuck (the trigger was off), and the trigger is back on afterwards.
    points = await db.scalar(
        text("SELECT points FROM ledger_entry WHERE id = :id"), {"id": entries[2]["id"]}
    )
    assert points == 106
    enabled = await db.scalar(
        text("SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'ledger_entry_append_only'")
    )
    assert enabled == "O"


async def test_a_deleted_last_entry_is_missed_at_the_end(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entries = await five_entries(db, scene)

    await behind_the_back(db, "DELETE FROM ledger_entry WHERE id = :id", id=entries[4]["id"])

    body = await verify(client, scene)
    assert (body["ok"], body["first_bad_seq"], body["entries_checked"]) == (False, 5, 4)
    assert "missing at the end" in body["problem"]


async def test_a_deleted_entry_in_the_middle_is_the_first_bad_one(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entries = await five_entries(db, scene)

    await behind_the_back(db, "DELETE FROM ledger_entry WHERE id = :id", id=entries[1]["id"])

    body = await verify(client, scene)
    assert (body["ok"], body["first_bad_seq"], body["entries_checked"]) == (False, 2, 1)
    assert "expected entry 2" in body["problem"]


async def test_a_change_re_hashed_to_the_end_is_caught_by_the_chain_head(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    """A forger who rewrites entry 3 and recomputes every hash after it still cannot make the
    last hash match the head the application keeps."""
    entries = await five_entries(db, scene)
    columns = ", ".join((*ledger.HASHED_FIELDS, "prev_hash", "hash"))
    await db.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
    prev_hash = entries[1]["hash"]
    for entry in entries[2:]:
        row = dict(
            (
                await db.execute(
                    text(f"SELECT {columns} FROM ledger_entry WHERE id = :id"), {"id": entry["id"]}
                )
            )
            .mappings()
            .one()
        )
        if entry is entries[2]:
            row["points"] = 60
        new_hash = ledger.entry_hash(prev_hash, row)
        await db.execute(
            text(
                "UPDATE ledger_entry SET points = :points, prev_hash = :prev, hash = :hash"
                " WHERE id = :id"
            ),
            {"points": row["points"], "prev": prev_hash, "hash": new_hash, "id": entry["id"]},
        )
        prev_hash = new_hash
    await db.execute(text("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only"))

    body = await verify(client, scene)
    assert (body["ok"], body["first_bad_seq"], body["entries_checked"]) == (False, 5, 5)
    assert "chain head" in body["problem"]


async def test_an_entry_inserted_behind_the_back_is_caught(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    """The trigger lets inserts through (appending is the ledger's job); one that skips the
    ledger service links into the chain but leaves the head behind."""
    entries = await five_entries(db, scene)
    fields: dict[str, Any] = {
        **{name: None for name in ledger.HASHED_FIELDS},
        "id": uuid.uuid4(),
        "village_id": scene.village.id,
        "seq": 6,
        "household_id": scene.household.id,
        "kind": LedgerKind.BONUS,
        "points": 500,
        "counts_score": True,
        "counts_balance": True,
        "year": THIS_YEAR,
        "source_type": "forged",
        "memo": "",
        "created_at": entries[4]["created_at"],
        "prev_hash": entries[4]["hash"],
    }
    fields["hash"] = ledger.entry_hash(entries[4]["hash"], fields)
    await db.execute(insert(LedgerEntry).values(**fields))

    body = await verify(client, scene)
    assert (body["ok"], body["first_bad_seq"], body["entries_checked"]) == (False, 6, 6)
    assert "after the chain head" in body["problem"]


async def test_who_may_verify(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await five_entries(db, scene)
    supervisor = await f.create_person(db)
    town = await db.get(f.Town, scene.village.town_id)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    other_village = await f.create_village(db)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)

    by_supervisor = await client.get(
        verify_url(scene.village.id), headers=await f.login_headers(db, settings, supervisor)
    )
    by_outsider = await client.get(
        verify_url(scene.village.id), headers=await f.login_headers(db, settings, other_admin)
    )
    by_villager = await client.get(verify_url(scene.village.id), headers=scene.villager_headers)

    assert by_supervisor.status_code == 200, by_supervisor.text
    assert (by_supervisor.json()["ok"], by_supervisor.json()["entries_checked"]) == (True, 5)
    assert_problem(by_outsider, 404, "village.not_found")
    assert_problem(by_villager, 403, "auth.forbidden")
