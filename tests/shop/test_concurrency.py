"""Invariant 2 at the counter, with real commits and 50 requests at once: a code redeems once,
a balance never goes negative, the last units are never oversold, and expiry racing pickups
leaves every order either collected or given back. After each race the ledger's summaries
equal its entries, its chain verifies, and stock equals what the orders took.

Ledger entries can never be deleted, so these tests commit into a database of their own.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col

from app import clock
from app.cli import _expire_orders
from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    Notification,
    NotificationKind,
    OrderStatus,
    ShopItem,
    ShopOrder,
    ShopOrderLine,
    ShopRoundUse,
    WechatIdentity,
)
from app.schemas.rules import Policy, RedemptionPolicy
from app.services.points_year import calendar_of
from app.services.shop_orders import expire_due_order, remind_due_orders
from tests import factories as f
from tests.auth.conftest import assert_problem, wait_for_lock_waiters
from tests.conftest import database_of_its_own
from tests.ledger.conftest import assert_ledger_consistent, balance_of, post_entry
from tests.shop.conftest import API, Scene, build_scene, publish_scores, snapshot

RACERS = 50


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "vp_shop") as url:
        engine = create_engine(url, pool_size=30)
        try:
            yield engine
        finally:
            await engine.dispose()


@dataclass
class Committed:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    settings: Settings

    async def scene(self, policy: Policy | None = None) -> Scene:
        async with self.sessionmaker() as session, session.begin():
            return await build_scene(session, self.settings, policy)

    async def check(self, scene: Scene, item: ShopItem, initial_stock: int) -> None:
        """Ledger consistent, and the item's stock is what its live orders left."""
        async with self.sessionmaker() as session:
            await assert_ledger_consistent(session, scene.village.id)
            taken = await session.scalar(
                select(func.coalesce(func.sum(col(ShopOrderLine.quantity)), 0))
                .join(ShopOrder, col(ShopOrder.id) == col(ShopOrderLine.order_id))
                .where(
                    col(ShopOrderLine.item_id) == item.id,
                    col(ShopOrder.status).in_([OrderStatus.RESERVED, OrderStatus.COLLECTED]),
                )
            )
            stock = await session.scalar(
                select(col(ShopItem.stock)).where(col(ShopItem.id) == item.id)
            )
            assert stock == initial_stock - int(taken or 0)
            assert stock is not None
            assert stock >= 0


@pytest.fixture
async def committed(
    engine_of_its_own: AsyncEngine, app: FastAPI, asgi_client: httpx.AsyncClient, settings: Settings
) -> AsyncIterator[Committed]:
    app.state.sessionmaker = create_sessionmaker(engine_of_its_own)
    try:
        yield Committed(engine_of_its_own, app.state.sessionmaker, asgi_client, settings)
    finally:
        del app.state.sessionmaker


class ChainHeld:
    """Holds the village's chain head so racers pile up behind it and go together."""

    def __init__(self, engine: AsyncEngine, scene: Scene) -> None:
        self.engine, self.scene = engine, scene

    async def __aenter__(self) -> "ChainHeld":
        self.conn: AsyncConnection = await self.engine.connect()
        self.transaction = await self.conn.begin()
        await self.conn.execute(
            text("SELECT 1 FROM ledger_chain WHERE village_id = :v FOR UPDATE"),
            {"v": self.scene.village.id},
        )
        return self

    async def release_when_waiting(self, count: int) -> None:
        await wait_for_lock_waiters(self.engine, count)
        await self.transaction.rollback()

    async def __aexit__(self, *exc: object) -> None:
        if self.transaction.is_active:
            await self.transaction.rollback()
        await self.conn.close()


def lines(item: ShopItem, quantity: int = 1) -> list[dict[str, object]]:
    return [{"item_id": str(item.id), "quantity": quantity}]


async def test_one_code_scanned_at_many_counters_redeems_once(committed: Committed) -> None:
    scene = await committed.scene()
    issued = await committed.client.post(
        f"{API}/shops/{scene.shop.id}/pay-code", headers=scene.villager_headers
    )
    code = issued.json()["code"]
    async with ChainHeld(committed.engine, scene) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/shops/{scene.shop.id}/counter-redemptions",
                    json={"code": code, "lines": lines(scene.soap)},
                    headers=scene.attendant_headers,
                )
                for _ in range(RACERS)
            ),
            held.release_when_waiting(RACERS),
        )
    assert sorted(r.status_code for r in responses) == [201] + [409] * (RACERS - 1)
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "shop.code_replayed")
    async with committed.sessionmaker() as session:
        assert await balance_of(session, scene.household.id) == 80
        uses = await session.scalar(
            text("SELECT count(*) FROM shop_code_use WHERE household_id = :h"),
            {"h": scene.household.id},
        )
        assert uses == 1
    await committed.check(scene, scene.soap, 10)


async def test_many_orders_never_overdraw_a_balance(committed: Committed) -> None:
    scene = await committed.scene()
    async with committed.sessionmaker() as session, session.begin():
        await session.execute(
            update(ShopItem).where(col(ShopItem.id) == scene.soap.id).values(stock=1000)
        )
    async with ChainHeld(committed.engine, scene) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/shops/{scene.shop.id}/orders",
                    json={"lines": lines(scene.soap)},
                    headers=scene.villager_headers,
                )
                for _ in range(RACERS)
            ),
            held.release_when_waiting(RACERS),
        )
    won = [r for r in responses if r.status_code == 201]
    assert len(won) == 100 // 20
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "ledger.insufficient_balance")
    async with committed.sessionmaker() as session:
        assert await balance_of(session, scene.household.id) == 0
        allowance = await session.scalar(
            text("SELECT sum(quantity) FROM shop_allowance WHERE household_id = :h"),
            {"h": scene.household.id},
        )
        assert allowance == len(won)
    await committed.check(scene, scene.soap, 1000)


async def test_one_order_a_round_however_many_race(committed: Committed) -> None:
    """翁源's goods cost no points, so no chain lock orders the racers: the round's counter
    row does. All fifty pass the unlocked eligibility check, and one takes the turn."""
    policy = Policy(redemption=RedemptionPolicy(spends_balance=False, orders_per_round=1))
    scene = await committed.scene(policy)
    key = calendar_of(policy).round_key(clock.today())
    async with committed.sessionmaker() as session, session.begin():
        await publish_scores(session, scene.village, scene.rule_set, {scene.household.id: 90})
        await session.execute(
            insert(ShopRoundUse).values(household_id=scene.household.id, round_key=key, orders=0)
        )
    async with committed.engine.connect() as holder:
        await holder.execute(
            select(ShopRoundUse).where(col(ShopRoundUse.household_id) == scene.household.id)
            .with_for_update()
        )  # fmt: skip

        async def release() -> None:
            await wait_for_lock_waiters(committed.engine, RACERS)
            await holder.rollback()

        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/shops/{scene.shop.id}/orders",
                    json={"lines": lines(scene.soap)},
                    headers=scene.villager_headers,
                )
                for _ in range(RACERS)
            ),
            release(),
        )
    assert sorted(r.status_code for r in responses) == [201] + [409] * (RACERS - 1)
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "shop.round_used")
    async with committed.sessionmaker() as session:
        after = await snapshot(session, scene.household)
    # The scores were published without entries, so the ledger check is not for this race.
    assert (after.rounds, after.orders, after.allowances) == (1, 1, 1)
    assert after.stock[scene.soap.id] == 10 - 1


async def test_the_last_units_are_never_oversold(committed: Committed) -> None:
    scene = await committed.scene()
    headers = []
    async with committed.sessionmaker() as session, session.begin():
        await session.execute(
            update(ShopItem).where(col(ShopItem.id) == scene.soap.id).values(stock=3)
        )
        for _ in range(RACERS):
            household = await f.create_household(session, scene.village, scene.group)
            member = await f.add_member(session, household, is_head=True)
            await post_entry(session, household, 50)
            person = await session.get(f.Person, member.person_id)
            assert person is not None
            headers.append(await f.login_headers(session, committed.settings, person))
    async with ChainHeld(committed.engine, scene) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/shops/{scene.shop.id}/orders",
                    json={"lines": lines(scene.soap)},
                    headers=h,
                )
                for h in headers
            ),
            held.release_when_waiting(RACERS),
        )
    assert sorted(r.status_code for r in responses) == [201] * 3 + [409] * (RACERS - 3)
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "shop.out_of_stock")
    async with committed.sessionmaker() as session:
        spent = await session.scalar(
            text("SELECT count(*) FROM household_balance WHERE village_id = :v AND balance = 30"),
            {"v": scene.village.id},
        )
        assert spent == 3
    await committed.check(scene, scene.soap, 3)


async def test_expiry_racing_pickups_settles_every_order_once(committed: Committed) -> None:
    scene = await committed.scene()
    async with committed.sessionmaker() as session, session.begin():
        await post_entry(session, scene.household, 2000)
        await session.execute(
            update(ShopItem).where(col(ShopItem.id) == scene.soap.id).values(stock=RACERS)
        )
    orders = []
    for _ in range(RACERS):
        response = await committed.client.post(
            f"{API}/shops/{scene.shop.id}/orders",
            json={"lines": lines(scene.soap)},
            headers=scene.villager_headers,
        )
        assert response.status_code == 201, response.text
        orders.append(response.json())
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    async with committed.sessionmaker() as session, session.begin():
        await session.execute(
            update(ShopOrder)
            .where(col(ShopOrder.id).in_([uuid.UUID(o["id"]) for o in orders]))
            .values(expires_at=deadline)
        )

    async def expirer() -> int:
        """Runs until a look made after the deadline finds nothing left due. The time of the
        look is taken before it: under load the answer may come back much later."""
        done = 0
        while True:
            looked_at = datetime.now(UTC)
            async with committed.sessionmaker() as session, session.begin():
                expired = await expire_due_order(session, looked_at)
            done += int(expired)
            if not expired and looked_at > deadline:
                return done
            await asyncio.sleep(0.005)

    async def pickup(order: dict[str, str], delay: float) -> httpx.Response:
        await asyncio.sleep(delay)
        return await committed.client.post(
            f"{API}/shops/{scene.shop.id}/pickups",
            json={"code": order["pickup_code"]},
            headers=scene.attendant_headers,
        )

    # Pickups spread across the deadline, while four expiry jobs run side by side.
    results = await asyncio.gather(
        *(pickup(o, 0.6 + 0.8 * n / RACERS) for n, o in enumerate(orders)),
        *(expirer() for _ in range(4)),
    )
    responses = results[:RACERS]
    expired_by_jobs = sum(r for r in results[RACERS:] if isinstance(r, int))
    collected = {o["id"] for o, r in zip(orders, responses, strict=True) if r.status_code == 200}
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 409, "shop.order_expired")
    async with committed.sessionmaker() as session:
        statuses = dict(
            (str(order_id), status)
            for order_id, status in await session.execute(
                select(col(ShopOrder.id), col(ShopOrder.status)).where(
                    col(ShopOrder.household_id) == scene.household.id
                )
            )
        )
        refunds = await session.scalar(
            text("SELECT count(*) FROM ledger_entry WHERE household_id = :h AND kind = 'refund'"),
            {"h": scene.household.id},
        )
        balance = await balance_of(session, scene.household.id)
    # Each order went exactly one way: collected by its pickup, or expired and given back.
    assert {o["id"]: statuses[o["id"]] for o in orders} == {
        o["id"]: OrderStatus.COLLECTED if o["id"] in collected else OrderStatus.EXPIRED
        for o in orders
    }
    assert 0 < len(collected) < RACERS, "the race did not straddle the deadline"
    assert expired_by_jobs == RACERS - len(collected) == refunds
    assert balance == 2100 - 20 * len(collected)
    await committed.check(scene, scene.soap, RACERS)


async def test_orders_cancellations_and_expiry_racing_on_one_item_never_deadlock(
    committed: Committed,
) -> None:
    """Every path takes its locks in the same order, so a mix of them all finishes cleanly."""
    scene = await committed.scene()
    async with committed.sessionmaker() as session, session.begin():
        await post_entry(session, scene.household, 2000)
        await session.execute(
            update(ShopItem).where(col(ShopItem.id) == scene.soap.id).values(stock=RACERS * 2)
        )
    placed = []
    for _ in range(RACERS // 2):
        response = await committed.client.post(
            f"{API}/shops/{scene.shop.id}/orders",
            json={"lines": [*lines(scene.soap), *lines(scene.haircut)]},
            headers=scene.villager_headers,
        )
        placed.append(response.json()["id"])
    # Half of them past their deadline, for the expiry jobs.
    async with committed.sessionmaker() as session, session.begin():
        await session.execute(
            update(ShopOrder)
            .where(col(ShopOrder.id).in_([uuid.UUID(o) for o in placed[::2]]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    async def expire_all() -> None:
        while True:
            async with committed.sessionmaker() as session, session.begin():
                if not await expire_due_order(session):
                    return

    async with ChainHeld(committed.engine, scene) as held:
        *responses, _, _, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/shop-orders/{order_id}/cancel", headers=scene.villager_headers
                )
                for order_id in placed[1::2]
            ),
            *(
                committed.client.post(
                    f"{API}/shops/{scene.shop.id}/orders",
                    json={"lines": [*lines(scene.haircut), *lines(scene.soap)]},
                    headers=scene.villager_headers,
                )
                for _ in range(RACERS // 2)
            ),
            held.release_when_waiting(RACERS // 2),
            expire_all(),
            expire_all(),
        )
    assert {r.status_code for r in responses} <= {200, 201}, [r.text for r in responses]
    async with committed.sessionmaker() as session:
        live = await session.scalar(
            select(func.count())
            .select_from(ShopOrder)
            .where(
                col(ShopOrder.household_id) == scene.household.id,
                col(ShopOrder.status) == OrderStatus.RESERVED,
            )
        )
        assert live == RACERS // 2
        assert await balance_of(session, scene.household.id) == 2100 - live * 50
    await committed.check(scene, scene.soap, RACERS * 2)


async def test_reminder_jobs_running_at_once_remind_each_order_once(committed: Committed) -> None:
    scene = await committed.scene()
    async with committed.sessionmaker() as session, session.begin():
        await post_entry(session, scene.household, 1000)
        session.add(
            WechatIdentity(openid="openid-placer", session_key="k", person_id=scene.villager.id)
        )
    orders = []
    for _ in range(30):
        response = await committed.client.post(
            f"{API}/shops/{scene.shop.id}/orders",
            json={"lines": lines(scene.haircut)},
            headers=scene.villager_headers,
        )
        assert response.status_code == 201, response.text
        orders.append(uuid.UUID(response.json()["id"]))
    due, overdue = orders[:25], orders[25:]
    now = datetime.now(UTC)
    async with committed.sessionmaker() as session, session.begin():
        # As if placed 71 hours ago: inside the reminder's 24 hours, and (the last five)
        # past the deadline.
        for ids, expires_at in ((due, now + timedelta(hours=1)), (overdue, now)):
            await session.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id).in_(ids))
                .values(created_at=now - timedelta(hours=71), expires_at=expires_at)
            )

    async def job() -> int:
        reminded = 0
        while True:
            async with committed.sessionmaker() as session, session.begin():
                batch = await remind_due_orders(session, committed.settings, batch=2)
            if not batch:
                return reminded
            reminded += batch

    url = committed.engine.url.render_as_string(hide_password=False)
    # Two `village-points expire-orders` runs and two bare reminder loops, side by side.
    results = await asyncio.gather(
        _expire_orders(url, committed.settings),
        _expire_orders(url, committed.settings),
        job(),
        job(),
    )
    expired = results[0][0] + results[1][0]
    reminded = results[0][1] + results[1][1] + results[2] + results[3]
    assert (expired, reminded) == (5, 25)
    async with committed.sessionmaker() as session:
        messages = await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                col(Notification.village_id) == scene.village.id,
                col(Notification.kind) == NotificationKind.ORDER_EXPIRING,
            )
        )
        marked = dict(
            (order_id, reminded_at)
            for order_id, reminded_at in await session.execute(
                select(col(ShopOrder.id), col(ShopOrder.reminded_at)).where(
                    col(ShopOrder.id).in_(orders)
                )
            )
        )
        assert await remind_due_orders(session, committed.settings) == 0
    # One message per due order (all to the one villager), none for the expired ones.
    assert messages == 25
    assert all(marked[order_id] is not None for order_id in due)
    assert all(marked[order_id] is None for order_id in overdue)


@pytest.mark.parametrize("service", [False, True], ids=["goods", "service"])
async def test_an_order_in_flight_when_its_item_is_taken_off_sale_is_refused(
    committed: Committed, service: bool
) -> None:
    scene = await committed.scene()
    item = scene.haircut if service else scene.soap
    async with committed.sessionmaker() as session:
        before = await snapshot(session, scene.household)
    async with committed.engine.connect() as admin:
        edit = await admin.begin()
        # The admin's edit holds the item while the order reads it as still on sale.
        await admin.execute(
            select(col(ShopItem.id)).where(col(ShopItem.id) == item.id).with_for_update()
        )
        ordering = asyncio.create_task(
            committed.client.post(
                f"{API}/shops/{scene.shop.id}/orders",
                json={"lines": lines(item)},
                headers=scene.villager_headers,
            )
        )
        await wait_for_lock_waiters(committed.engine, 1)
        await admin.execute(
            update(ShopItem).where(col(ShopItem.id) == item.id).values(active=False)
        )
        await edit.commit()
        response = await ordering
    assert_problem(response, 409, "shop.item_inactive")
    async with committed.sessionmaker() as session:
        assert await snapshot(session, scene.household) == before
        await assert_ledger_consistent(session, scene.village.id)
