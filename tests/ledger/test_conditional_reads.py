"""A phone that holds an answer asks with its ETag and gets a 304 without a body, until the
answer changes; every check of the read still runs first (app/conditional.py)."""

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from tests.ledger.conftest import API, Scene, post_entry


async def test_a_balance_the_phone_holds_is_not_sent_again_until_it_moves(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 5)
    url = f"{API}/households/{scene.household.id}/balance"
    first = await client.get(url, headers=scene.villager_headers)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "private, no-cache"
    etag = first.headers["etag"]

    held = {**scene.villager_headers, "If-None-Match": etag}
    again = await client.get(url, headers=held)
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert "content-type" not in again.headers
    listed = {**scene.villager_headers, "If-None-Match": f'"other", W/{etag}'}
    assert (await client.get(url, headers=listed)).status_code == 304

    await post_entry(db, scene.household, 3)
    moved = await client.get(url, headers=held)
    assert moved.status_code == 200
    assert moved.json()["balance"] == first.json()["balance"] + 3
    assert moved.headers["etag"] != etag


async def test_each_answer_has_its_own_tag(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 5)
    await post_entry(db, scene.admin_household, 7)
    mine = await client.get(
        f"{API}/households/{scene.household.id}/ledger", headers=scene.villager_headers
    )
    theirs = await client.get(
        f"{API}/households/{scene.admin_household.id}/ledger", headers=scene.admin_headers
    )
    assert mine.status_code == theirs.status_code == 200
    assert mine.headers["etag"] != theirs.headers["etag"]
    # The admin's tag does not stand for the villager's ledger.
    crossed = await client.get(
        f"{API}/households/{scene.household.id}/ledger",
        headers={**scene.villager_headers, "If-None-Match": theirs.headers["etag"]},
    )
    assert crossed.status_code == 200
    assert crossed.json() == mine.json()


async def test_a_logged_out_phone_gets_401_and_a_stranger_404_never_304(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    url = f"{API}/households/{scene.household.id}/balance"
    etag = (await client.get(url, headers=scene.villager_headers)).headers["etag"]

    outside = await client.get(
        f"{API}/households/{uuid.uuid4()}/balance",
        headers={**scene.villager_headers, "If-None-Match": "*"},
    )
    assert outside.status_code == 404
    assert outside.json()["code"] == "household.not_found"
    assert "etag" not in outside.headers

    logout = await client.post(f"{API}/auth/logout", headers=scene.villager_headers)
    assert logout.status_code == 204
    stale = await client.get(url, headers={**scene.villager_headers, "If-None-Match": etag})
    assert stale.status_code == 401
    assert stale.json()["code"] == "auth.session_revoked"


async def test_writes_carry_no_tag(client: httpx.AsyncClient, scene: Scene) -> None:
    response = await client.post(
        f"{API}/households/{scene.household.id}/adjustments",
        json={"points": 2, "reason": "打扫公共区域"},
        headers={**scene.admin_headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    assert "etag" not in response.headers


def test_the_contract_says_which_reads_answer_304(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    balance = paths[f"{API}/households/{{household_id}}/balance"]["get"]
    assert "304" in balance["responses"]
    assert "ETag" in balance["responses"]["200"]["headers"]
    assert {"$ref": "#/components/parameters/IfNoneMatch"} in balance["parameters"]
    passbook = paths[f"{API}/households/{{household_id}}/passbook"]["get"]
    assert "304" not in passbook["responses"]
    assert "304" not in paths[f"{API}/households/{{household_id}}/adjustments"]["post"]["responses"]
