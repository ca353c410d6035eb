"""Admin adjustments: written with their reason, audited, never below zero, never one's own."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import LedgerEntry, LedgerKind, Role
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import (
    API,
    THIS_YEAR,
    Scene,
    assert_ledger_consistent,
    audits,
    balance_of,
    entry_count,
    post_entry,
    score_of,
)


def adjust_url(household_id: object) -> str:
    return f"{API}/households/{household_id}/adjustments"


def adjustment(points: int, **overrides: Any) -> dict[str, Any]:
    return {"points": points, "reason": "村民代表会议决定", **overrides}


async def test_an_adjustment_is_written_with_its_reason_and_audited(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 40)

    response = await client.post(
        adjust_url(scene.household.id),
        json=adjustment(15, reason="抗洪救灾表彰", counts_score=True, counts_balance=True),
        headers=scene.admin_headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["points"], body["memo"]) == ("adjustment", 15, "抗洪救灾表彰")
    assert (body["counts_score"], body["counts_balance"], body["year"]) == (True, True, THIS_YEAR)
    entry = await db.get(LedgerEntry, uuid.UUID(body["id"]))
    assert entry is not None
    assert (entry.kind, entry.memo, entry.actor_id) == (
        LedgerKind.ADJUSTMENT,
        "抗洪救灾表彰",
        scene.admin.id,
    )
    assert await balance_of(db, scene.household.id) == 55
    assert await score_of(db, scene.household.id) == 55
    [audit] = await audits(db, scene.village.id, "ledger.adjust")
    assert audit.object_id == entry.id
    assert audit.actor_id == scene.admin.id
    assert audit.before is not None
    assert audit.after is not None
    assert (audit.before["balance"], audit.before["year_score"]) == (40, 40)
    assert (audit.after["balance"], audit.after["year_score"]) == (55, 55)
    assert audit.after["reason"] == "抗洪救灾表彰"
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_spend_counts_the_balance_only_and_the_score_may_go_negative(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 40)
    spend = await client.post(
        adjust_url(scene.household.id),
        json=adjustment(-30, counts_score=False, counts_balance=True),
        headers=scene.admin_headers,
    )
    penalty = await client.post(
        adjust_url(scene.household.id),
        json=adjustment(-50, counts_score=True, counts_balance=False),
        headers=scene.admin_headers,
    )

    assert spend.status_code == 201, spend.text
    assert penalty.status_code == 201, penalty.text
    assert await balance_of(db, scene.household.id) == 10
    # The score ranks households and may go below zero; only the spendable balance may not.
    assert await score_of(db, scene.household.id) == -10
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_spend_beyond_the_balance_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 40)

    response = await client.post(
        adjust_url(scene.household.id), json=adjustment(-41), headers=scene.admin_headers
    )
    never_had = await client.post(
        adjust_url(scene.neighbour.id), json=adjustment(-1), headers=scene.admin_headers
    )

    assert_problem(response, 409, "ledger.insufficient_balance")
    assert_problem(never_had, 409, "ledger.insufficient_balance")
    assert await entry_count(db, scene.village.id) == 1
    assert await balance_of(db, scene.household.id) == 40
    assert await score_of(db, scene.household.id) == 40
    assert await balance_of(db, scene.neighbour.id) == 0
    assert await audits(db, scene.village.id, "ledger.adjust") == []
    await assert_ledger_consistent(db, scene.village.id)


async def test_nobody_adjusts_their_own_household(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    response = await client.post(
        adjust_url(scene.admin_household.id), json=adjustment(10), headers=scene.admin_headers
    )

    assert_problem(response, 403, "ledger.own_household")
    assert await entry_count(db, scene.village.id) == 0
    assert await balance_of(db, scene.admin_household.id) == 0
    assert await audits(db, scene.village.id, "ledger.adjust") == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(
            adjustment(10, counts_score=False, counts_balance=False),
            422,
            "ledger.adjustment_counts_nothing",
            id="counts-nothing",
        ),
        pytest.param(adjustment(1001), 422, "request.invalid", id="above-1000"),
        pytest.param(adjustment(-1001), 422, "request.invalid", id="below-minus-1000"),
        pytest.param(adjustment(0), 422, "request.invalid", id="zero"),
        pytest.param(adjustment(10, reason="x"), 422, "request.invalid", id="short-reason"),
        pytest.param({"points": 10}, 422, "request.invalid", id="no-reason"),
        pytest.param(
            adjustment(10, actor_id=str(uuid.uuid4())), 422, "request.invalid", id="extra"
        ),
        pytest.param(adjustment("ten"), 422, "request.invalid", id="not-a-number"),
    ],
)
async def test_bad_adjustments_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    scene: Scene,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    await post_entry(db, scene.household, 40)

    response = await client.post(
        adjust_url(scene.household.id), json=body, headers=scene.admin_headers
    )

    assert_problem(response, status, code)
    assert await entry_count(db, scene.village.id) == 1
    assert await balance_of(db, scene.household.id) == 40
    assert await audits(db, scene.village.id, "ledger.adjust") == []


async def test_the_limits_themselves_are_allowed(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    up = await client.post(
        adjust_url(scene.household.id), json=adjustment(1000), headers=scene.admin_headers
    )
    down = await client.post(
        adjust_url(scene.household.id), json=adjustment(-1000), headers=scene.admin_headers
    )

    assert (up.status_code, down.status_code) == (201, 201), (up.text, down.text)
    assert await balance_of(db, scene.household.id) == 0
    await assert_ledger_consistent(db, scene.village.id)


async def test_who_may_adjust(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    other_village = await f.create_village(db)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)
    scorer = await f.create_person(db, scene.village)
    await f.grant(db, scorer, Role.SCORER, village=scene.village)
    url = adjust_url(scene.household.id)

    outsider = await client.post(
        url, json=adjustment(10), headers=await f.login_headers(db, settings, other_admin)
    )
    by_scorer = await client.post(
        url, json=adjustment(10), headers=await f.login_headers(db, settings, scorer)
    )
    by_villager = await client.post(url, json=adjustment(10), headers=scene.villager_headers)
    unknown = await client.post(
        adjust_url(uuid.uuid4()), json=adjustment(10), headers=scene.admin_headers
    )

    assert_problem(outsider, 404, "household.not_found")
    assert_problem(by_scorer, 403, "auth.forbidden")
    assert_problem(by_villager, 403, "auth.forbidden")
    assert_problem(unknown, 404, "household.not_found")
    assert await entry_count(db, scene.village.id) == 0
    assert await audits(db, scene.village.id, "ledger.adjust") == []


async def test_a_nul_character_in_the_reason_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    response = await client.post(
        f"{API}/households/{scene.household.id}/adjustments",
        json={"points": 5, "reason": "ab\u0000cd"},
        headers=scene.admin_headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid_value"
    assert await entry_count(db, scene.village.id) == 0
