"""Points of a period approved but not yet published (公示) are not spendable: the villager does
not see them yet, so neither an order nor the counter may spend them, and the scan and the
catalog count without them. Once the period is published they spend like any other."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import HouseholdPeriodScore, LedgerKind, PeriodStatus, ScoringPeriod, ShopItem
from app.services import ledger
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import assert_ledger_consistent, balance_of
from tests.shop.conftest import API, TODAY, Scene, create_item, publish_scores, snapshot
from tests.shop.test_codes import pay_code, scan
from tests.shop.test_orders import place


async def approved_unpublished(db: AsyncSession, scene: Scene, points: int) -> ScoringPeriod:
    """Last month approved with `points` for the household, as approval posts them."""
    period = await publish_scores(db, scene.village, scene.rule_set, {})
    period.status = PeriodStatus.APPROVED
    await ledger.post(
        db,
        scene.village.id,
        [
            ledger.NewEntry(
                household_id=scene.household.id,
                kind=LedgerKind.INSPECTION,
                points=points,
                counts_score=True,
                counts_balance=True,
                year=TODAY.year,
                source_type="test",
                period_id=period.id,
            )
        ],
    )
    # Approval writes the period's scores from the same results.
    db.add(
        HouseholdPeriodScore(
            household_id=scene.household.id, period_id=period.id, village_id=scene.village.id,
            score=points,
        )
    )  # fmt: skip
    await db.flush()
    return period


async def rice_cooker(db: AsyncSession, scene: Scene) -> ShopItem:
    # More than the 100 published points, less than the 150 with last month's 50.
    return await create_item(db, scene.shop, name="电饭煲", category="家电", price_points=120)


async def catalog_entry(
    client: httpx.AsyncClient, scene: Scene, item: ShopItem
) -> dict[str, object]:
    response = await client.get(
        f"{API}/shops/{scene.shop.id}/items", headers=scene.villager_headers
    )
    assert response.status_code == 200, response.text
    [entry] = [i for i in response.json() if i["id"] == str(item.id)]
    return dict(entry)


async def test_unpublished_points_cannot_be_spent_until_publication(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    period = await approved_unpublished(db, scene, 50)
    cooker = await rice_cooker(db, scene)
    assert await balance_of(db, scene.household.id) == 150
    before = await snapshot(db, scene.household)

    # The catalog and the counter's scan count only what is published.
    entry = await catalog_entry(client, scene, cooker)
    assert (entry["redeemable_now"], entry["refusal_code"]) == (
        False,
        "ledger.insufficient_balance",
    )
    scanned = await scan(client, scene, await pay_code(client, scene))
    assert scanned.status_code == 200, scanned.text
    assert scanned.json()["balance"] == 100

    ordered = await place(client, scene, (cooker.id, 1))
    assert_problem(ordered, 409, "ledger.insufficient_balance")
    at_counter = await client.post(
        f"{API}/shops/{scene.shop.id}/counter-redemptions",
        json={
            "code": await pay_code(client, scene),
            "lines": [{"item_id": str(cooker.id), "quantity": 1}],
        },
        headers=scene.attendant_headers,
    )
    assert_problem(at_counter, 409, "ledger.insufficient_balance")
    assert await snapshot(db, scene.household) == before

    # What is published still spends.
    affordable = await place(client, scene, (scene.soap.id, 5))
    assert affordable.status_code == 201, affordable.text
    assert await balance_of(db, scene.household.id) == 50
    cancelled = await client.post(
        f"{API}/shop-orders/{affordable.json()['id']}/cancel", headers=scene.villager_headers
    )
    assert cancelled.status_code == 200, cancelled.text

    published = await client.post(f"{API}/periods/{period.id}/publish", headers=scene.admin_headers)
    assert published.status_code == 200, published.text

    entry = await catalog_entry(client, scene, cooker)
    assert (entry["redeemable_now"], entry["refusal_code"]) == (True, None)
    scanned = await scan(client, scene, await pay_code(client, scene))
    assert scanned.json()["balance"] == 150
    ordered = await place(client, scene, (cooker.id, 1))
    assert ordered.status_code == 201, ordered.text
    assert await balance_of(db, scene.household.id) == 30
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_counter_redemption_spends_only_published_points(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await approved_unpublished(db, scene, 50)
    code = await pay_code(client, scene)
    # 6 × 20 = 120: within the raw 150, beyond the published 100.
    refused = await client.post(
        f"{API}/shops/{scene.shop.id}/counter-redemptions",
        json={"code": code, "lines": [{"item_id": str(scene.soap.id), "quantity": 6}]},
        headers=scene.attendant_headers,
    )
    assert_problem(refused, 409, "ledger.insufficient_balance")
    # The refusal rolled the code's claim back: it still redeems what is spendable.
    redeemed = await client.post(
        f"{API}/shops/{scene.shop.id}/counter-redemptions",
        json={"code": code, "lines": [{"item_id": str(scene.soap.id), "quantity": 5}]},
        headers=scene.attendant_headers,
    )
    assert redeemed.status_code == 201, redeemed.text
    assert await balance_of(db, scene.household.id) == 50
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_deduction_waiting_for_publication_is_not_spendable_either(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await approved_unpublished(db, scene, -30)
    assert await balance_of(db, scene.household.id) == 70
    scanned = await scan(client, scene, await pay_code(client, scene))
    # The 30 points are gone from the balance even though the villager does not see why yet.
    assert scanned.json()["balance"] == 70
    refused = await place(client, scene, (scene.soap.id, 4))
    assert_problem(refused, 409, "ledger.insufficient_balance")
