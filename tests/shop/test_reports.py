"""The shop's redemption sheet (兑换表) and the village's liability in points and yuan."""

from decimal import Decimal
from io import BytesIO

import httpx
from openpyxl import load_workbook
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.schemas.rules import Policy, RedemptionPolicy, RedemptionWindow
from tests.auth.conftest import assert_problem
from tests.shop.conftest import API, TODAY, build_scene
from tests.shop.test_codes import pay_code, redeem
from tests.shop.test_orders import place

JIUXIAN = Policy(
    carry_over=True,
    redemption=RedemptionPolicy(
        window=RedemptionWindow(months=[TODAY.month]), yuan_per_point=Decimal("1")
    ),
)


async def test_sheet_and_liability(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings, JIUXIAN)
    counter = await redeem(client, scene, await pay_code(client, scene), 2)
    assert counter.status_code == 201
    ahead = (await place(client, scene, (scene.haircut.id, 1))).json()
    await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": ahead["pickup_code"]},
        headers=scene.attendant_headers,
    )
    refunded = await client.post(
        f"{API}/shop-orders/{ahead['id']}/refund",
        json={"reason": "服务未提供"},
        headers=scene.attendant_headers,
    )
    assert refunded.status_code == 200
    # Reserved but not collected: owed, not yet on the sheet.
    assert (await place(client, scene, (scene.soap.id, 1))).status_code == 201

    sheet = await client.get(
        f"{API}/shops/{scene.shop.id}/redemption-sheet",
        params={"year": TODAY.year, "month": TODAY.month},
        headers=scene.attendant_headers,
    )
    assert sheet.status_code == 200, sheet.text
    rows = list(load_workbook(BytesIO(sheet.content)).active.iter_rows(values_only=True))
    assert rows[0][0] == f"积分超市家庭积分兑换表（{TODAY.year}年{TODAY.month}月）"
    body = [(r[2], r[3], r[5], r[6], r[8], r[9], r[10]) for r in rows[2:-1]]
    assert body == [
        (scene.household.number, "王秀英", "洗衣皂", 2, 40, "扫码兑换", "已领取"),
        (scene.household.number, "王秀英", "理发", 1, 30, "预约自提", "已退货"),
    ]
    assert rows[-1][8] == 40

    liability = await client.get(
        f"{API}/villages/{scene.village.id}/shop-liability", headers=scene.admin_headers
    )
    assert liability.status_code == 200, liability.text
    assert liability.json() == {
        "village_id": str(scene.village.id),
        "year": TODAY.year,
        "yuan_per_point": "1",
        "points_redeemed": 60,  # 40 at the counter and 20 reserved; the refund came back
        "yuan_redeemed": "60",
        "outstanding_points": 40,
        "outstanding_yuan": "40",
    }
    villager = await client.get(
        f"{API}/villages/{scene.village.id}/shop-liability", headers=scene.villager_headers
    )
    assert_problem(villager, 403, "auth.forbidden")
