"""Invariant 3: a request retried with the same Idempotency-Key writes once and answers the same."""

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import AuditEntry, IdempotencyRecord, LedgerEntry, Role
from tests import factories as f
from tests.ledger.conftest import API, Scene, balance_of, entry_count, post_entry


def adjustment(points: int = 5) -> dict[str, object]:
    return {
        "points": points,
        "reason": "补记志愿服务",
        "counts_score": True,
        "counts_balance": True,
    }


async def test_a_retry_writes_once_and_answers_the_same(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    headers = {**scene.admin_headers, "Idempotency-Key": str(uuid.uuid4())}
    url = f"{API}/households/{scene.household.id}/adjustments"
    first = await client.post(url, json=adjustment(), headers=headers)
    second = await client.post(url, json=adjustment(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await entry_count(db, scene.village.id) == 1
    assert await balance_of(db, scene.household.id) == 5
    audits = await db.execute(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "ledger.adjust")
    )
    assert audits.scalar_one() == 1


async def test_the_same_key_for_another_request_is_409_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    headers = {**scene.admin_headers, "Idempotency-Key": str(uuid.uuid4())}
    url = f"{API}/households/{scene.household.id}/adjustments"
    assert (await client.post(url, json=adjustment(5), headers=headers)).status_code == 201
    response = await client.post(url, json=adjustment(6), headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency.key_reused"
    assert await entry_count(db, scene.village.id) == 1
    assert await balance_of(db, scene.household.id) == 5


async def test_a_refused_request_leaves_its_key_free(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    """An answer is only kept with the work it describes: a refusal is rolled back with it."""
    headers = {**scene.admin_headers, "Idempotency-Key": str(uuid.uuid4())}
    url = f"{API}/households/{scene.household.id}/adjustments"
    refused = await client.post(url, json=adjustment(-5), headers=headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "ledger.insufficient_balance"
    records = await db.execute(select(func.count()).select_from(IdempotencyRecord))
    assert records.scalar_one() == 0
    await post_entry(db, scene.household, 10)
    retried = await client.post(url, json=adjustment(-5), headers=headers)
    assert retried.status_code == 201
    assert await balance_of(db, scene.household.id) == 5


async def test_keys_belong_to_their_caller(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other_admin = await f.create_person(db, scene.village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=scene.village)
    other = await f.login_headers(db, settings, other_admin)
    key = str(uuid.uuid4())
    url = f"{API}/households/{scene.household.id}/adjustments"
    first = await client.post(
        url, json=adjustment(), headers={**scene.admin_headers, "Idempotency-Key": key}
    )
    second = await client.post(url, json=adjustment(), headers={**other, "Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert await entry_count(db, scene.village.id) == 2


async def test_corrections_honour_the_key(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entry = await post_entry(db, scene.household, 8)
    headers = {**scene.admin_headers, "Idempotency-Key": str(uuid.uuid4())}
    url = f"{API}/ledger-entries/{entry['id']}/correction"
    first = await client.post(url, json={"reason": "录入错误"}, headers=headers)
    second = await client.post(url, json={"reason": "录入错误"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    corrections = await db.execute(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.reverses_id == entry["id"])
    )
    assert corrections.scalar_one() == 1


async def test_a_malformed_key_is_422(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    url = f"{API}/households/{scene.household.id}/adjustments"
    response = await client.post(
        url, json=adjustment(), headers={**scene.admin_headers, "Idempotency-Key": "short"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid"
    assert await entry_count(db, scene.village.id) == 0
