"""Ordering ahead, collecting, cancelling, expiring and refunding: points, stock and allowances
move together, and every refusal leaves the database as it was."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    LedgerEntry,
    LedgerKind,
    OrderStatus,
    ShopOrder,
    StockChange,
    StockMovement,
)
from app.services import ledger, shop_codes
from app.services.shop_orders import expire_due_order
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import (
    assert_ledger_consistent,
    audits,
    balance_of,
    publish_the_year,
    score_of,
)
from tests.shop.conftest import API, TODAY, Scene, build_scene, snapshot, stock_of


def order_body(*lines: tuple[object, int]) -> dict[str, object]:
    return {"lines": [{"item_id": str(item), "quantity": q} for item, q in lines]}


async def place(
    client: httpx.AsyncClient, scene: Scene, *lines: tuple[object, int]
) -> httpx.Response:
    return await client.post(
        f"{API}/shops/{scene.shop.id}/orders",
        json=order_body(*lines),
        headers=scene.villager_headers,
    )


async def test_an_order_reserves_points_and_stock_at_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    score_before = await score_of(db, scene.household.id)
    response = await place(client, scene, (scene.soap.id, 2), (scene.haircut.id, 1))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "reserved"
    assert order["points"] == 2 * 20 + 30
    assert order["pickup_code"].startswith("VP1O.")
    assert order["expires_at"] is not None
    assert await balance_of(db, scene.household.id) == 100 - 70
    # Spending never lowers the score a household is ranked by.
    assert await score_of(db, scene.household.id) == score_before
    assert await stock_of(db, scene.soap) == 8
    [entry] = (
        await db.execute(
            select(LedgerEntry).where(
                col(LedgerEntry.household_id) == scene.household.id,
                col(LedgerEntry.kind) == LedgerKind.REDEMPTION,
            )
        )
    ).scalars()
    assert (entry.points, entry.counts_balance, entry.counts_score) == (-70, True, False)
    assert entry.source_type == "shop_order"
    assert str(entry.source_id) == order["id"]
    await assert_ledger_consistent(db, scene.village.id)

    # The household reads it back with its code; the attendant sees it without.
    mine = await client.get(f"{API}/shop-orders/{order['id']}", headers=scene.villager_headers)
    assert mine.json()["pickup_code"] == order["pickup_code"]
    theirs = await client.get(f"{API}/shop-orders/{order['id']}", headers=scene.attendant_headers)
    assert theirs.status_code == 200
    assert theirs.json()["pickup_code"] is None


async def test_pickup_hands_over_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    order = (await place(client, scene, (scene.soap.id, 1))).json()
    scan = await client.post(
        f"{API}/shops/{scene.shop.id}/scans",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    assert scan.status_code == 200, scan.text
    assert scan.json()["kind"] == "pickup"
    assert scan.json()["order"]["id"] == order["id"]
    assert scan.json()["head_name"] == "王**"

    pickup = lambda: client.post(  # noqa: E731
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    first = await pickup()
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "collected"
    before = await snapshot(db, scene.household)
    assert_problem(await pickup(), 409, "shop.order_collected")
    assert await snapshot(db, scene.household) == before
    # Collecting moves nothing more: the points and stock left at ordering.
    assert before.balance == 80
    assert await stock_of(db, scene.soap) == 9


async def test_cancel_before_pickup_gives_everything_back_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    order = (await place(client, scene, (scene.soap.id, 3))).json()
    cancel = await client.post(
        f"{API}/shop-orders/{order['id']}/cancel", headers=scene.villager_headers
    )
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "cancelled"
    assert cancel.json()["pickup_code"] is None
    assert await balance_of(db, scene.household.id) == 100
    assert await stock_of(db, scene.soap) == 10
    before = await snapshot(db, scene.household)
    assert before.allowances == 0
    again = await client.post(
        f"{API}/shop-orders/{order['id']}/cancel", headers=scene.villager_headers
    )
    assert_problem(again, 409, "shop.order_cancelled")
    assert await snapshot(db, scene.household) == before
    # A cancelled order's pickup code collects nothing.
    pickup = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    assert_problem(pickup, 409, "shop.order_cancelled")
    await assert_ledger_consistent(db, scene.village.id)


async def test_only_the_household_cancels(client: httpx.AsyncClient, scene: Scene) -> None:
    order = (await place(client, scene, (scene.soap.id, 1))).json()
    response = await client.post(
        f"{API}/shop-orders/{order['id']}/cancel", headers=scene.attendant_headers
    )
    assert_problem(response, 403, "auth.forbidden")


async def test_expiry_releases_points_and_stock_and_voids_the_pickup(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    order = (await place(client, scene, (scene.soap.id, 2))).json()
    assert await expire_due_order(db) is False
    await db.execute(
        update(ShopOrder)
        .where(col(ShopOrder.id) == order["id"])
        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    # Past its deadline it can't be collected, even before the job ran.
    pickup = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    assert_problem(pickup, 409, "shop.order_expired")
    assert await expire_due_order(db) is True
    assert await expire_due_order(db) is False
    stored = await db.get(ShopOrder, order["id"])
    assert stored is not None
    await db.refresh(stored)
    assert stored.status is OrderStatus.EXPIRED
    assert await balance_of(db, scene.household.id) == 100
    assert await stock_of(db, scene.soap) == 10
    assert (await snapshot(db, scene.household)).allowances == 0
    await assert_ledger_consistent(db, scene.village.id)


async def test_refund_reverses_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    order = (await place(client, scene, (scene.soap.id, 2))).json()
    refund = lambda: client.post(  # noqa: E731
        f"{API}/shop-orders/{order['id']}/refund",
        json={"reason": "包装破损，退货"},
        headers=scene.attendant_headers,
    )
    # Not handed over yet: the household cancels instead.
    assert_problem(await refund(), 409, "shop.order_not_collected")
    await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    first = await refund()
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "refunded"
    assert await balance_of(db, scene.household.id) == 100
    assert await stock_of(db, scene.soap) == 10
    before = await snapshot(db, scene.household)
    assert_problem(await refund(), 409, "shop.already_refunded")
    assert await snapshot(db, scene.household) == before
    kinds = (
        await db.execute(
            select(col(LedgerEntry.kind), col(LedgerEntry.points))
            .where(col(LedgerEntry.source_id) == order["id"])
            .order_by(col(LedgerEntry.seq))
        )
    ).all()
    assert [(k, p) for k, p in kinds] == [(LedgerKind.REDEMPTION, -40), (LedgerKind.REFUND, 40)]
    await assert_ledger_consistent(db, scene.village.id)


async def test_refusals_write_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, settings: Settings
) -> None:
    scene.soap.limit_per_period = 2
    scene.haircut.active = False
    await db.flush()
    before = await snapshot(db, scene.household)

    assert_problem(await place(client, scene, (scene.soap.id, 3)), 409, "shop.over_limit")
    assert_problem(await place(client, scene, (scene.haircut.id, 1)), 409, "shop.item_inactive")
    scene.soap.limit_per_period = None
    await db.flush()
    assert_problem(
        await place(client, scene, (scene.soap.id, 6)), 409, "ledger.insufficient_balance"
    )
    assert_problem(await place(client, scene, (scene.soap.id, 11)), 409, "shop.out_of_stock")
    unknown = await place(client, scene, ("00000000-0000-0000-0000-000000000001", 1))
    assert_problem(unknown, 404, "shop_item.not_found")
    assert await snapshot(db, scene.household) == before


async def test_the_limit_counts_across_orders_in_a_round(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    scene.soap.limit_per_period = 2
    await db.flush()
    first = await place(client, scene, (scene.soap.id, 1))
    assert first.status_code == 201
    assert (await place(client, scene, (scene.soap.id, 1))).status_code == 201
    before = await snapshot(db, scene.household)
    assert_problem(await place(client, scene, (scene.soap.id, 1)), 409, "shop.over_limit")
    assert await snapshot(db, scene.household) == before
    # Cancelling gives the allowance back.
    await client.post(
        f"{API}/shop-orders/{first.json()['id']}/cancel", headers=scene.villager_headers
    )
    assert (await place(client, scene, (scene.soap.id, 1))).status_code == 201


async def test_only_households_of_served_villages_order(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    # Staff without a household are refused; the shop is hidden from another village.
    response = await client.post(
        f"{API}/shops/{scene.shop.id}/orders",
        json=order_body((scene.soap.id, 1)),
        headers=scene.attendant_headers,
    )
    assert_problem(response, 403, "auth.forbidden")


async def test_pickup_code_of_another_shop_is_refused(
    client: httpx.AsyncClient, scene: Scene, settings: Settings
) -> None:
    order = (await place(client, scene, (scene.soap.id, 1))).json()
    code = shop_codes.pickup_code(
        settings, scene.soap.id, uuid.UUID(order["id"])
    )  # signed, wrong shop
    response = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups", json={"code": code}, headers=scene.attendant_headers
    )
    assert_problem(response, 409, "shop.code_other_shop")


async def test_a_retried_order_with_one_key_orders_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    headers = {**scene.villager_headers, "Idempotency-Key": str(uuid.uuid4())}
    body = order_body((scene.soap.id, 1))
    url = f"{API}/shops/{scene.shop.id}/orders"
    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert (await snapshot(db, scene.household)).orders == 1
    assert await balance_of(db, scene.household.id) == 80


async def test_order_lists_for_the_household_and_the_counter(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, settings: Settings
) -> None:
    first = (await place(client, scene, (scene.soap.id, 1))).json()
    second = (await place(client, scene, (scene.haircut.id, 1), (scene.soap.id, 1))).json()
    await client.post(f"{API}/shop-orders/{first['id']}/cancel", headers=scene.villager_headers)

    mine = await client.get(
        f"{API}/households/{scene.household.id}/shop-orders", headers=scene.villager_headers
    )
    assert mine.status_code == 200, mine.text
    assert [(o["id"], o["status"]) for o in mine.json()["items"]] == [
        (first["id"], "cancelled"),
        (second["id"], "reserved"),
    ]
    assert mine.json()["items"][1]["pickup_code"] == second["pickup_code"]
    assert [line["item_name"] for line in mine.json()["items"][1]["lines"]] == ["洗衣皂", "理发"]

    waiting = await client.get(
        f"{API}/shops/{scene.shop.id}/orders",
        params={"status": "reserved"},
        headers=scene.attendant_headers,
    )
    assert [o["id"] for o in waiting.json()["items"]] == [second["id"]]
    assert waiting.json()["items"][0]["pickup_code"] is None

    page = await client.get(
        f"{API}/shops/{scene.shop.id}/orders", params={"limit": 1}, headers=scene.admin_headers
    )
    assert [o["id"] for o in page.json()["items"]] == [first["id"]]
    rest = await client.get(
        f"{API}/shops/{scene.shop.id}/orders",
        params={"limit": 1, "cursor": page.json()["next_cursor"]},
        headers=scene.admin_headers,
    )
    assert [o["id"] for o in rest.json()["items"]] == [second["id"]]

    other = await build_scene(db, settings)
    hidden = await client.get(
        f"{API}/households/{scene.household.id}/shop-orders", headers=other.villager_headers
    )
    assert_problem(hidden, 404, "household.not_found")
    not_theirs = await client.get(
        f"{API}/shops/{scene.shop.id}/orders", headers=other.attendant_headers
    )
    assert_problem(not_theirs, 404, "shop.not_found")


async def entries_of(db: AsyncSession, scene: Scene) -> list[tuple[LedgerKind, int, int]]:
    rows = await db.execute(
        select(col(LedgerEntry.kind), col(LedgerEntry.points), col(LedgerEntry.year))
        .where(col(LedgerEntry.household_id) == scene.household.id)
        .order_by(col(LedgerEntry.seq))
    )
    return [(kind, points, year) for kind, points, year in rows]


async def test_a_give_back_after_the_year_closed_expires_with_it(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    year = TODAY.year
    order = (await place(client, scene, (scene.soap.id, 2))).json()
    await publish_the_year(db, scene.village, year)
    (closed,) = (await ledger.close_year(db, year, village_ids=[scene.village.id])).closed
    assert (closed.carried_over, closed.points_expired) == (False, 60)
    assert await balance_of(db, scene.household.id) == 0

    cancelled = await client.post(
        f"{API}/shop-orders/{order['id']}/cancel", headers=scene.villager_headers
    )
    assert cancelled.status_code == 200, cancelled.text
    # The 40 points come back into the closed year and expire as the reset would have.
    assert await balance_of(db, scene.household.id) == 0
    assert (await entries_of(db, scene))[1:] == [
        (LedgerKind.REDEMPTION, -40, year),
        (LedgerKind.EXPIRY, -60, year),
        (LedgerKind.REFUND, 40, year),
        (LedgerKind.EXPIRY, -40, year),
    ]
    assert await stock_of(db, scene.soap) == 10
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_give_back_after_new_year_counts_in_the_year_spent(
    client: httpx.AsyncClient,
    db: AsyncSession,
    scene: Scene,
    set_clock: Callable[[datetime], None],
) -> None:
    year = TODAY.year
    set_clock(datetime(year, 12, 31, 20, tzinfo=SHANGHAI))
    order = (await place(client, scene, (scene.soap.id, 2))).json()
    set_clock(datetime(year + 1, 1, 1, 10, tzinfo=SHANGHAI))
    cancelled = await client.post(
        f"{API}/shop-orders/{order['id']}/cancel", headers=scene.villager_headers
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await entries_of(db, scene))[-1] == (LedgerKind.REFUND, 40, year)
    # The year is still open: the close expires the returned points with the rest.
    await publish_the_year(db, scene.village, year)
    (closed,) = (await ledger.close_year(db, year, village_ids=[scene.village.id])).closed
    assert closed.points_expired == 100
    assert await balance_of(db, scene.household.id) == 0
    await assert_ledger_consistent(db, scene.village.id)


async def collected_order(client: httpx.AsyncClient, scene: Scene) -> dict[str, object]:
    order: dict[str, object] = (
        await place(client, scene, (scene.soap.id, 2), (scene.haircut.id, 1))
    ).json()
    picked = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": order["pickup_code"]},
        headers=scene.attendant_headers,
    )
    assert picked.status_code == 200, picked.text
    return order


async def test_a_refund_is_audited_and_puts_stock_back_on_record(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    order = await collected_order(client, scene)
    refunded = await client.post(
        f"{API}/shop-orders/{order['id']}/refund",
        json={"reason": "包装破损"},
        headers=scene.attendant_headers,
    )
    assert refunded.status_code == 200, refunded.text
    movements = list(
        (
            await db.execute(
                select(StockMovement).where(col(StockMovement.shop_id) == scene.shop.id)
            )
        ).scalars()
    )
    assert [(m.item_id, m.kind, m.delta, m.stock_after, m.actor_id) for m in movements] == [
        (scene.soap.id, StockChange.RESTOCK, 2, 10, scene.attendant.id)
    ]  # the haircut is a service: no stock, no movement
    assert movements[0].reason == f"订单退货 {order['id']}"
    (entry,) = await audits(db, scene.village.id, "shop_order.refund")
    assert (entry.actor_id, entry.object_id) == (scene.attendant.id, uuid.UUID(str(order["id"])))
    assert entry.after == {"status": "refunded", "points": 70, "reason": "包装破损"}


async def test_an_attendant_may_not_refund_their_own_household(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await f.add_member(db, scene.household, scene.attendant)
    order = await collected_order(client, scene)
    before = await snapshot(db, scene.household)
    refused = await client.post(
        f"{API}/shop-orders/{order['id']}/refund",
        json={"reason": "退货"},
        headers=scene.attendant_headers,
    )
    assert_problem(refused, 403, "shop.own_household")
    assert await snapshot(db, scene.household) == before
    stored = await db.get(ShopOrder, uuid.UUID(str(order["id"])))
    assert stored is not None
    await db.refresh(stored)
    assert stored.status is OrderStatus.COLLECTED
    assert await audits(db, scene.village.id, "shop_order.refund") == []
    # A colleague (here the village admin) takes the goods back.
    done = await client.post(
        f"{API}/shop-orders/{order['id']}/refund",
        json={"reason": "退货"},
        headers=scene.admin_headers,
    )
    assert done.status_code == 200, done.text
    assert await balance_of(db, scene.household.id) == 100
