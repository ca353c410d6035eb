"""A town shop's counter: an attendant placed there by a village's grant serves that village's
households only; a village-wide grant does not reach the town shop at all."""

from io import BytesIO

import httpx
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import OrderStatus, Role, Shop, ShopCodeUse, ShopOrder, Town
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import balance_of, post_entry
from tests.shop.conftest import API, TODAY, Scene, create_item, stock_of


async def status_of(db: AsyncSession, order_id: str) -> OrderStatus:
    found = await db.scalar(select(col(ShopOrder.status)).where(col(ShopOrder.id) == order_id))
    assert found is not None
    return found


async def test_a_village_attendant_serves_only_their_village_at_a_town_shop(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, settings: Settings
) -> None:
    town = await db.get(Town, scene.village.town_id)
    assert town is not None
    neighbour = await f.create_village(db, town)
    await f.create_rule_set(db, neighbour, year=TODAY.year)
    shop = Shop(
        town_id=town.id, served_village_ids=[scene.village.id, neighbour.id], name="镇积分超市"
    )
    db.add(shop)
    await db.flush()
    broom = await create_item(db, shop, name="竹扫帚", price_points=10, stock=5)
    home = await f.create_household(db, neighbour)
    person = await f.create_person(db, neighbour)
    await f.add_member(db, home, person, is_head=True)
    await post_entry(db, home, 30)
    neighbour_headers = await f.login_headers(db, settings, person)
    body = {"lines": [{"item_id": str(broom.id), "quantity": 1}]}
    theirs = await client.post(
        f"{API}/shops/{shop.id}/orders", json=body, headers=neighbour_headers
    )
    ours = await client.post(
        f"{API}/shops/{shop.id}/orders", json=body, headers=scene.villager_headers
    )
    assert theirs.status_code == ours.status_code == 201, theirs.text
    theirs_id, ours_id = theirs.json()["id"], ours.json()["id"]

    attendant = await f.create_person(db, scene.village)
    (await f.grant(db, attendant, Role.SHOP_ATTENDANT, village=scene.village)).shop_id = shop.id
    wide = await f.create_person(db, scene.village)
    await f.grant(db, wide, Role.SHOP_ATTENDANT, village=scene.village)
    await db.flush()
    headers = await f.login_headers(db, settings, attendant)
    wide_headers = await f.login_headers(db, settings, wide)

    # A village-wide grant covers the village's own shops, not the town's.
    listed = await client.get(f"{API}/shops/{shop.id}/orders", headers=wide_headers)
    assert_problem(listed, 404, "shop.not_found")
    pickup = {"code": theirs.json()["pickup_code"]}
    collect = await client.post(f"{API}/shops/{shop.id}/pickups", json=pickup, headers=wide_headers)
    assert_problem(collect, 404, "shop.not_found")

    # The town shop's attendant from this village sees and hands over this village's orders.
    listed = await client.get(f"{API}/shops/{shop.id}/orders", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == [ours_id]
    assert_problem(
        await client.get(f"{API}/shop-orders/{theirs_id}", headers=headers),
        404,
        "shop_order.not_found",
    )
    for path in ("scans", "pickups"):
        refused = await client.post(f"{API}/shops/{shop.id}/{path}", json=pickup, headers=headers)
        assert_problem(refused, 403, "shop.other_village")
    assert await status_of(db, theirs_id) is OrderStatus.RESERVED
    pay = await client.post(f"{API}/shops/{shop.id}/pay-code", headers=neighbour_headers)
    redeem = await client.post(
        f"{API}/shops/{shop.id}/counter-redemptions",
        json={"code": pay.json()["code"], **body},
        headers=headers,
    )
    assert_problem(redeem, 403, "shop.other_village")
    uses = await db.scalar(
        select(col(ShopCodeUse.nonce)).where(col(ShopCodeUse.household_id) == home.id)
    )
    assert uses is None

    # Handed over by the district, the neighbour's goods are not this attendant's to refund.
    district = await f.create_person(db)
    await f.grant(db, district, Role.DISTRICT_ADMIN)
    district_headers = await f.login_headers(db, settings, district)
    collected = await client.post(
        f"{API}/shops/{shop.id}/pickups", json=pickup, headers=district_headers
    )
    assert collected.status_code == 200, collected.text
    refund = await client.post(
        f"{API}/shop-orders/{theirs_id}/refund", json={"reason": "退货"}, headers=headers
    )
    assert_problem(refund, 404, "shop_order.not_found")
    assert await status_of(db, theirs_id) is OrderStatus.COLLECTED
    assert await balance_of(db, home.id) == 20
    assert await stock_of(db, broom) == 3

    ours_pickup = {"code": ours.json()["pickup_code"]}
    done = await client.post(f"{API}/shops/{shop.id}/pickups", json=ours_pickup, headers=headers)
    assert done.status_code == 200, done.text
    back = await client.post(
        f"{API}/shop-orders/{ours_id}/refund", json={"reason": "退货"}, headers=headers
    )
    assert back.status_code == 200, back.text
    assert await balance_of(db, scene.household.id) == 100

    # The month's sheet the attendant prints lists this village's households only.
    for who, numbers in (
        (headers, {scene.household.number}),
        (district_headers, {scene.household.number, home.number}),
    ):
        sheet = await client.get(f"{API}/shops/{shop.id}/redemption-sheet", headers=who)
        assert sheet.status_code == 200, sheet.text
        rows = list(load_workbook(BytesIO(sheet.content)).active.iter_rows(values_only=True))
        assert {r[2] for r in rows[2:-1]} == numbers
