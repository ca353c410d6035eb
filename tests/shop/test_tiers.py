"""翁源's goods go by tier: a household takes its own tier's goods in a round, nothing of
another tier's, in one order or several."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.schemas.rules import Policy
from tests.auth.conftest import assert_problem
from tests.shop.conftest import API, build_scene, publish_scores, snapshot
from tests.shop.test_eligibility import WENGYUAN
from tests.shop.test_orders import place


async def test_a_first_tier_household_takes_first_tier_goods_only(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Item 7: a first-tier household once took the first-tier and the fourth-tier goods in
    one order."""
    policy = WENGYUAN.model_copy(update={"orders_per_round": 1})
    scene = await build_scene(db, settings, Policy(redemption=policy))
    scene.soap.min_period_score = 95  # 第一档次
    scene.haircut.min_period_score = 80  # 第四档次
    await db.flush()
    await publish_scores(db, scene.village, scene.rule_set, {scene.household.id: 96})

    items = await client.get(f"{API}/shops/{scene.shop.id}/items", headers=scene.villager_headers)
    assert {i["name"]: i["refusal_code"] for i in items.json()} == {
        "洗衣皂": None,
        "理发": "shop.other_tier",
    }
    before = await snapshot(db, scene.household)
    both = await place(client, scene, (scene.soap.id, 1), (scene.haircut.id, 1))
    assert_problem(both, 409, "shop.other_tier")
    assert await snapshot(db, scene.household) == before

    own = await place(client, scene, (scene.soap.id, 1))
    assert own.status_code == 201, own.text
