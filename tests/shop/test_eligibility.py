"""Who may redeem, and when, as the policy says: windows (旧县's months, a fixed day), minimum
period score, top N of the village group and score tiers (翁源), and an item's own tier."""

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import RuleSetStatus, ShopRoundUse
from app.schemas.rules import Policy, RedemptionPolicy, RedemptionWindow, ScoreTier
from app.services.points_year import calendar_of
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.shop.conftest import API, TODAY, Scene, build_scene, publish_scores, snapshot
from tests.shop.test_orders import place

WENGYUAN = RedemptionPolicy(
    spends_balance=False,
    min_period_score=80,
    top_n_in_group=2,
    tiers=[
        ScoreTier(label="第一档次", min_score=95),
        ScoreTier(label="第二档次", min_score=90),
        ScoreTier(label="第三档次", min_score=85),
        ScoreTier(label="第四档次", min_score=80),
    ],
)


async def refused(client: httpx.AsyncClient, db: AsyncSession, scene: Scene, code: str) -> None:
    """The catalog says why, and an order is refused with that code, writing nothing."""
    items = await client.get(f"{API}/shops/{scene.shop.id}/items", headers=scene.villager_headers)
    assert {(i["redeemable_now"], i["refusal_code"]) for i in items.json()} == {(False, code)}
    before = await snapshot(db, scene.household)
    assert_problem(await place(client, scene, (scene.soap.id, 1)), 409, code)
    assert await snapshot(db, scene.household) == before


@pytest.mark.parametrize(
    "window",
    [
        RedemptionWindow(months=[m for m in (1, 4, 7, 10) if m != TODAY.month][:3]),
        RedemptionWindow(day_of_month=(TODAY + timedelta(days=1)).day),
    ],
    ids=["months", "day"],
)
async def test_outside_the_window(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, window: RedemptionWindow
) -> None:
    scene = await build_scene(db, settings, Policy(redemption=RedemptionPolicy(window=window)))
    await refused(client, db, scene, "shop.outside_window")


async def test_inside_the_window(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    window = RedemptionWindow(months=[TODAY.month], day_of_month=TODAY.day)
    scene = await build_scene(db, settings, Policy(redemption=RedemptionPolicy(window=window)))
    assert (await place(client, scene, (scene.soap.id, 1))).status_code == 201


async def test_without_approved_rules_nobody_redeems(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings, rule_status=RuleSetStatus.DRAFT)
    await refused(client, db, scene, "shop.no_rules")


async def wengyuan(db: AsyncSession, settings: Settings) -> tuple[Scene, dict[str, object]]:
    scene = await build_scene(db, settings, Policy(redemption=WENGYUAN))
    others = [await f.create_household(db, scene.village, scene.group) for _ in range(3)]
    return scene, {"others": others}


@pytest.mark.parametrize(
    ("mine", "others", "vetoed", "code"),
    [
        (None, [96, 91, 85], False, "shop.no_period_score"),
        (79, [60, 50, 40], False, "shop.below_min_score"),
        (88, [96, 91, 85], False, "shop.not_top_n"),
        (97, [96, 91, 85], True, "shop.vetoed"),
    ],
)
async def test_wengyuan_household_rules(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    mine: int | None,
    others: list[int],
    vetoed: bool,
    code: str,
) -> None:
    scene, extra = await wengyuan(db, settings)
    homes = extra["others"]
    assert isinstance(homes, list)
    scores = {h.id: s for h, s in zip(homes, others, strict=True)}
    if mine is not None:
        scores[scene.household.id] = mine
    await publish_scores(
        db, scene.village, scene.rule_set, scores,
        vetoed={scene.household.id} if vetoed else set(),
    )  # fmt: skip
    await refused(client, db, scene, code)


async def test_below_every_tier(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    policy = WENGYUAN.model_copy(update={"min_period_score": None, "top_n_in_group": None})
    scene = await build_scene(db, settings, Policy(redemption=policy))
    await publish_scores(db, scene.village, scene.rule_set, {scene.household.id: 75})
    await refused(client, db, scene, "shop.below_tier")


async def test_wengyuan_tier_goods_leave_the_balance_alone(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene, extra = await wengyuan(db, settings)
    homes = extra["others"]
    assert isinstance(homes, list)
    scene.soap.min_period_score = 95  # a 第一档次 item
    scene.soap.limit_per_period = 1
    await db.flush()
    await publish_scores(
        db, scene.village, scene.rule_set,
        {scene.household.id: 91, homes[0].id: 96, homes[1].id: 80, homes[2].id: 70},
    )  # fmt: skip
    items = await client.get(f"{API}/shops/{scene.shop.id}/items", headers=scene.villager_headers)
    assert {i["name"]: i["refusal_code"] for i in items.json()} == {
        "洗衣皂": "shop.below_item_tier",
        "理发": None,
    }
    before = await snapshot(db, scene.household)
    assert_problem(await place(client, scene, (scene.soap.id, 1)), 409, "shop.below_item_tier")
    assert await snapshot(db, scene.household) == before

    order = await place(client, scene, (scene.haircut.id, 1))
    assert order.status_code == 201, order.text
    assert order.json()["spends_balance"] is False
    after = await snapshot(db, scene.household)
    # The goods go by tier: no points leave the balance and nothing is posted to the ledger.
    assert (after.balance, after.entries) == (before.balance, before.entries)
    assert after.orders == before.orders + 1


async def test_wengyuan_tier_goods_once_a_round(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Goods that cost no points go once a month (orders_per_round 1): a second order is refused
    whatever the item, writes nothing, and a cancelled order gives its turn back."""
    policy = WENGYUAN.model_copy(update={"orders_per_round": 1})
    scene = await build_scene(db, settings, Policy(redemption=policy))
    homes = [await f.create_household(db, scene.village, scene.group) for _ in range(2)]
    await publish_scores(
        db, scene.village, scene.rule_set,
        {scene.household.id: 96, homes[0].id: 91, homes[1].id: 70},
    )  # fmt: skip
    first = await place(client, scene, (scene.haircut.id, 1))
    assert first.status_code == 201, first.text
    assert (await snapshot(db, scene.household)).rounds == 1

    await refused(client, db, scene, "shop.round_used")

    cancel = await client.post(
        f"{API}/shop-orders/{first.json()['id']}/cancel", headers=scene.villager_headers
    )
    assert cancel.status_code == 200, cancel.text
    assert (await snapshot(db, scene.household)).rounds == 0
    again = await place(client, scene, (scene.soap.id, 1))
    assert again.status_code == 201, again.text
    assert (await snapshot(db, scene.household)).rounds == 1


async def test_an_order_that_took_no_turn_gives_none_back(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Orders placed while the policy set no orders_per_round did not count, so cancelling one
    leaves the turns counted since (here one, counted under a later policy) alone."""
    scene = await build_scene(db, settings)
    order = await place(client, scene, (scene.soap.id, 1))
    assert order.status_code == 201, order.text
    await db.execute(
        insert(ShopRoundUse).values(
            household_id=scene.household.id,
            round_key=calendar_of(Policy()).round_key(TODAY),
            orders=1,
        )
    )
    cancel = await client.post(
        f"{API}/shop-orders/{order.json()['id']}/cancel", headers=scene.villager_headers
    )
    assert cancel.status_code == 200, cancel.text
    assert (await snapshot(db, scene.household)).rounds == 1
