"""Pay codes at the counter: signed, short-lived, for one shop, spent once; each refusal has its
own problem code and spends nothing."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Shop
from app.services import shop_codes
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import assert_ledger_consistent, balance_of
from tests.shop.conftest import API, Scene, snapshot, stock_of


async def pay_code(client: httpx.AsyncClient, scene: Scene) -> str:
    response = await client.post(
        f"{API}/shops/{scene.shop.id}/pay-code", headers=scene.villager_headers
    )
    assert response.status_code == 200, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(seconds=120)
    code: str = response.json()["code"]
    return code


async def redeem(
    client: httpx.AsyncClient, scene: Scene, code: str, quantity: int = 1, **extra: object
) -> httpx.Response:
    return await client.post(
        f"{API}/shops/{scene.shop.id}/counter-redemptions",
        json={
            "code": code,
            "lines": [{"item_id": str(scene.soap.id), "quantity": quantity}],
            **extra,
        },
        headers=scene.attendant_headers,
    )


async def scan(client: httpx.AsyncClient, scene: Scene, code: str) -> httpx.Response:
    return await client.post(
        f"{API}/shops/{scene.shop.id}/scans", json={"code": code}, headers=scene.attendant_headers
    )


async def test_scan_then_redeem_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    code = await pay_code(client, scene)
    seen = await scan(client, scene, code)
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["kind"] == "pay"
    assert body["household_id"] == str(scene.household.id)
    assert body["head_name"] == "王**"
    assert body["balance"] == 100
    assert body["redeemable_now"] is True
    # Scanning spends nothing; scanning again is fine.
    assert (await scan(client, scene, code)).status_code == 200

    done = await redeem(client, scene, code, 2)
    assert done.status_code == 201, done.text
    assert done.json()["channel"] == "pay_code"
    assert done.json()["status"] == "collected"
    assert await balance_of(db, scene.household.id) == 60
    assert await stock_of(db, scene.soap) == 8

    before = await snapshot(db, scene.household)
    assert_problem(await redeem(client, scene, code), 409, "shop.code_replayed")
    assert_problem(await scan(client, scene, code), 409, "shop.code_replayed")
    assert await snapshot(db, scene.household) == before
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_refused_redemption_leaves_the_code_usable(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    code = await pay_code(client, scene)
    before = await snapshot(db, scene.household)
    assert_problem(await redeem(client, scene, code, 6), 409, "ledger.insufficient_balance")
    assert await snapshot(db, scene.household) == before
    assert (await redeem(client, scene, code, 1)).status_code == 201


async def test_expired_forged_and_other_shop_codes(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, settings: Settings
) -> None:
    before = await snapshot(db, scene.household)
    old, _ = shop_codes.pay_code(
        settings, scene.shop.id, scene.household.id, now=datetime.now(UTC) - timedelta(minutes=3)
    )
    assert_problem(await scan(client, scene, old), 409, "shop.code_expired")
    assert_problem(await redeem(client, scene, old), 409, "shop.code_expired")

    good = await pay_code(client, scene)
    message, _, signature = good.rpartition(".")
    fields = message.split(".")
    fields[2] = uuid.uuid4().hex  # someone else's household, same signature
    for forged in (
        ".".join(fields) + "." + signature,
        message + "." + signature[:-2] + ("AA" if not signature.endswith("AA") else "BB"),
        "VP1P.not.a.code",
        "hello",
        shop_codes.pay_code(Settings(jwt_secret="x" * 40), scene.shop.id, scene.household.id)[0],
    ):
        assert_problem(await scan(client, scene, forged), 422, "shop.code_forged")
        assert_problem(await redeem(client, scene, forged), 422, "shop.code_forged")

    other = Shop(
        town_id=scene.village.town_id,
        village_id=scene.village.id,
        served_village_ids=[scene.village.id],
        name="邻村超市",
    )
    db.add(other)
    await db.flush()
    elsewhere, _ = shop_codes.pay_code(settings, other.id, scene.household.id)
    assert_problem(await scan(client, scene, elsewhere), 409, "shop.code_other_shop")
    assert_problem(await redeem(client, scene, elsewhere), 409, "shop.code_other_shop")
    assert await snapshot(db, scene.household) == before


async def test_a_pickup_code_is_not_a_pay_code(
    client: httpx.AsyncClient, scene: Scene, settings: Settings
) -> None:
    code = shop_codes.pickup_code(settings, scene.shop.id, uuid.uuid4())
    assert_problem(await redeem(client, scene, code), 422, "shop.code_wrong_kind")
    pay = await pay_code(client, scene)
    collect = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups", json={"code": pay}, headers=scene.attendant_headers
    )
    assert_problem(collect, 422, "shop.code_wrong_kind")


async def test_counter_refusals_spend_nothing(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    scene.soap.limit_per_period = 1
    await db.flush()
    code = await pay_code(client, scene)
    before = await snapshot(db, scene.household)
    assert_problem(await redeem(client, scene, code, 2), 409, "shop.over_limit")
    assert await snapshot(db, scene.household) == before


async def test_household_card_with_identity_check_revoke_and_reissue(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    card_url = f"{API}/households/{scene.household.id}/card"
    issued = await client.post(card_url, headers=scene.admin_headers)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    assert code.startswith("VP1C.")
    png = await client.get(f"{card_url}/image", headers=scene.admin_headers)
    assert png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    pdf = await client.get(f"{card_url}/image?format=pdf", headers=scene.admin_headers)
    assert pdf.content.startswith(b"%PDF")

    seen = await scan(client, scene, code)
    assert seen.json()["kind"] == "card"
    assert seen.json()["expires_at"] is None
    before = await snapshot(db, scene.household)
    assert_problem(await redeem(client, scene, code), 422, "shop.identity_not_checked")
    assert await snapshot(db, scene.household) == before
    done = await redeem(client, scene, code, identity_checked=True)
    assert done.status_code == 201, done.text
    assert done.json()["channel"] == "card"
    assert done.json()["identity_checked"] is True
    # A card is not spent by use: the member comes back next month with the same card.
    assert (await redeem(client, scene, code, identity_checked=True)).status_code == 201

    reissued = await client.post(card_url, headers=scene.admin_headers)
    new_code = reissued.json()["code"]
    assert new_code != code
    before = await snapshot(db, scene.household)
    assert_problem(await scan(client, scene, code), 409, "shop.card_revoked")
    assert_problem(
        await redeem(client, scene, code, identity_checked=True), 409, "shop.card_revoked"
    )
    assert await snapshot(db, scene.household) == before
    assert (await scan(client, scene, new_code)).status_code == 200

    assert (await client.delete(card_url, headers=scene.admin_headers)).status_code == 204
    assert_problem(await scan(client, scene, new_code), 409, "shop.card_revoked")
    assert_problem(
        await client.delete(card_url, headers=scene.admin_headers), 404, "household_card.not_found"
    )
    assert_problem(
        await client.get(f"{card_url}/image", headers=scene.admin_headers),
        404,
        "household_card.not_found",
    )
    assert_problem(
        await client.post(card_url, headers=scene.attendant_headers), 403, "auth.forbidden"
    )


async def test_a_retried_counter_redemption_with_one_key_spends_once(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    card = await client.post(
        f"{API}/households/{scene.household.id}/card", headers=scene.admin_headers
    )
    url = f"{API}/shops/{scene.shop.id}/counter-redemptions"
    lines = [{"item_id": str(scene.soap.id), "quantity": 1}]
    for body, balance in (
        ({"code": card.json()["code"], "identity_checked": True, "lines": lines}, 80),
        ({"code": await pay_code(client, scene), "lines": lines}, 60),
    ):
        headers = {**scene.attendant_headers, "Idempotency-Key": str(uuid.uuid4())}
        before = await snapshot(db, scene.household)
        first = await client.post(url, json=body, headers=headers)
        again = await client.post(url, json=body, headers=headers)
        assert first.status_code == again.status_code == 201, again.text
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        after = await snapshot(db, scene.household)
        assert (after.orders, after.entries) == (before.orders + 1, before.entries + 1)
        assert await balance_of(db, scene.household.id) == balance
        assert await stock_of(db, scene.soap) == 10 - (100 - balance) // 20
    await assert_ledger_consistent(db, scene.village.id)
