"""Invariant 1, second half: a correction reverses an entry once, and nothing else changes."""

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import LedgerEntry, LedgerKind, Role
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import (
    API,
    Scene,
    assert_ledger_consistent,
    audits,
    balance_of,
    entry_count,
    post_entry,
    score_of,
)


def correction_url(entry_id: object) -> str:
    return f"{API}/ledger-entries/{entry_id}/correction"


async def corrections_of(db: AsyncSession, entry_id: uuid.UUID) -> list[LedgerEntry]:
    rows = await db.execute(select(LedgerEntry).where(col(LedgerEntry.reverses_id) == entry_id))
    return list(rows.scalars())


async def test_a_correction_reverses_the_entry_and_the_summaries(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 50)
    wrong = await post_entry(db, scene.household, 30, counts_score=True, counts_balance=True)
    score_only = await post_entry(db, scene.household, 7, counts_balance=False)
    assert (await balance_of(db, scene.household.id), await score_of(db, scene.household.id)) == (
        80,
        87,
    )

    response = await client.post(
        correction_url(wrong["id"]),
        json={"reason": "录入错误，重复计分"},
        headers=scene.admin_headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["kind"] == "correction"
    assert body["points"] == -30
    assert body["reverses_id"] == str(wrong["id"])
    assert (body["counts_score"], body["counts_balance"]) == (True, True)
    assert body["year"] == wrong["year"]
    assert body["memo"] == "录入错误，重复计分"
    assert body["seq"] == 4
    # The original stands as it was; only a new entry was added.
    original = await db.get(LedgerEntry, wrong["id"])
    assert original is not None
    await db.refresh(original)
    assert (original.points, original.hash) == (30, wrong["hash"])
    assert await entry_count(db, scene.village.id) == 4
    assert await balance_of(db, scene.household.id) == 50
    assert await score_of(db, scene.household.id) == 57
    [audit] = await audits(db, scene.village.id, "ledger.correct")
    assert audit.object_id == uuid.UUID(body["id"])
    assert audit.actor_id == scene.admin.id
    assert audit.before == {"entry_id": str(wrong["id"]), "points": 30}
    assert audit.after == {"points": -30, "reason": "录入错误，重复计分"}

    # A score-only entry is reversed as score-only: the balance does not move.
    response = await client.post(
        correction_url(score_only["id"]), json={"reason": "不应计分"}, headers=scene.admin_headers
    )
    assert response.status_code == 201, response.text
    assert (response.json()["counts_score"], response.json()["counts_balance"]) == (True, False)
    assert await balance_of(db, scene.household.id) == 50
    assert await score_of(db, scene.household.id) == 50
    await assert_ledger_consistent(db, scene.village.id)


async def test_an_entry_is_corrected_only_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entry = await post_entry(db, scene.household, 20)
    first = await client.post(
        correction_url(entry["id"]), json={"reason": "第一次更正"}, headers=scene.admin_headers
    )
    assert first.status_code == 201, first.text

    again = await client.post(
        correction_url(entry["id"]), json={"reason": "再次更正"}, headers=scene.admin_headers
    )

    assert_problem(again, 409, "ledger.already_corrected")
    assert len(await corrections_of(db, entry["id"])) == 1
    assert await entry_count(db, scene.village.id) == 2
    assert await balance_of(db, scene.household.id) == 0
    assert len(await audits(db, scene.village.id, "ledger.correct")) == 1
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_correction_is_not_itself_corrected(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entry = await post_entry(db, scene.household, 20)
    first = await client.post(
        correction_url(entry["id"]), json={"reason": "更正"}, headers=scene.admin_headers
    )
    assert first.status_code == 201, first.text

    response = await client.post(
        correction_url(first.json()["id"]), json={"reason": "撤销更正"}, headers=scene.admin_headers
    )

    assert_problem(response, 409, "ledger.correction_of_correction")
    assert await entry_count(db, scene.village.id) == 2
    assert await balance_of(db, scene.household.id) == 0
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_correction_never_takes_the_balance_below_zero(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    entry = await post_entry(db, scene.household, 30)
    spent = await client.post(
        f"{API}/households/{scene.household.id}/adjustments",
        json={"points": -25, "reason": "兑换物品", "counts_score": False, "counts_balance": True},
        headers=scene.admin_headers,
    )
    assert spent.status_code == 201, spent.text

    response = await client.post(
        correction_url(entry["id"]), json={"reason": "录入错误"}, headers=scene.admin_headers
    )

    assert_problem(response, 409, "ledger.insufficient_balance")
    assert await corrections_of(db, entry["id"]) == []
    assert await entry_count(db, scene.village.id) == 2
    assert await balance_of(db, scene.household.id) == 5
    assert await score_of(db, scene.household.id) == 30
    assert await audits(db, scene.village.id, "ledger.correct") == []
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_zero_point_veto_has_nothing_to_correct(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    veto = await post_entry(db, scene.household, 0, kind=LedgerKind.VETO)

    response = await client.post(
        correction_url(veto["id"]), json={"reason": "否决有误"}, headers=scene.admin_headers
    )

    assert_problem(response, 409, "ledger.nothing_to_correct")
    assert await entry_count(db, scene.village.id) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"reason": "x"}, id="one-char"),
        pytest.param({"reason": "  x  "}, id="one-char-padded"),
        pytest.param({"reason": "x" * 501}, id="too-long"),
        pytest.param({}, id="missing"),
        pytest.param({"reason": "录入错误", "points": 5}, id="extra-field"),
    ],
)
async def test_a_correction_needs_a_reason(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, body: dict[str, object]
) -> None:
    entry = await post_entry(db, scene.household, 20)

    response = await client.post(
        correction_url(entry["id"]), json=body, headers=scene.admin_headers
    )

    assert_problem(response, 422, "request.invalid")
    assert await corrections_of(db, entry["id"]) == []
    assert await balance_of(db, scene.household.id) == 20


async def test_who_may_correct(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    own = await post_entry(db, scene.admin_household, 20)
    entry = await post_entry(db, scene.household, 20)
    other_village = await f.create_village(db)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)
    other_headers = await f.login_headers(db, settings, other_admin)
    reason = {"reason": "录入错误"}

    assert_problem(
        await client.post(correction_url(own["id"]), json=reason, headers=scene.admin_headers),
        403,
        "ledger.own_household",
    )
    assert_problem(
        await client.post(correction_url(entry["id"]), json=reason, headers=other_headers),
        404,
        "ledger_entry.not_found",
    )
    assert_problem(
        await client.post(correction_url(entry["id"]), json=reason, headers=scene.villager_headers),
        403,
        "auth.forbidden",
    )
    assert_problem(
        await client.post(correction_url(uuid.uuid4()), json=reason, headers=scene.admin_headers),
        404,
        "ledger_entry.not_found",
    )
    assert_problem(
        await client.post(correction_url(entry["id"]), json=reason), 401, "auth.token_missing"
    )
    assert await entry_count(db, scene.village.id) == 2
    assert await audits(db, scene.village.id, "ledger.correct") == []
