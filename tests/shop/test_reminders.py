"""An order placed ahead and not yet collected is reminded once, some hours before its pickup
deadline, by an order_expiring subscribe message queued with the mark that it was reminded."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlmodel import col

from app.config import Settings
from app.integrations.fake_wechat import FakeWechatServer
from app.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Person,
    ShopOrder,
    ShopOrderLine,
    WechatIdentity,
)
from app.services.notification_delivery import NotificationWorker
from app.services.shop_orders import (
    PICKUP_HINT,
    expire_due_order,
    expiring_message,
    remind_due_orders,
)
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.shop.conftest import API, Scene
from tests.shop.test_orders import place

WECHAT_TIME = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}$")


async def bind(db: AsyncSession, person: Person, openid: str) -> None:
    db.add(WechatIdentity(openid=openid, session_key="session-key", person_id=person.id))
    await db.flush()


async def spouse_of(db: AsyncSession, scene: Scene) -> Person:
    member = await f.add_member(db, scene.household)
    spouse = await db.get(Person, member.person_id)
    assert spouse is not None
    return spouse


async def order_row(db: AsyncSession, order_id: object) -> ShopOrder:
    order = (
        await db.execute(
            select(ShopOrder)
            .where(col(ShopOrder.id) == uuid.UUID(str(order_id)))
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return order


async def messages(db: AsyncSession, scene: Scene) -> list[Notification]:
    rows = await db.execute(
        select(Notification)
        .where(
            col(Notification.village_id) == scene.village.id,
            col(Notification.kind) == NotificationKind.ORDER_EXPIRING,
        )
        .order_by(col(Notification.created_at), col(Notification.openid))
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())


async def test_an_order_is_reminded_once_a_day_before_its_deadline(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await bind(db, scene.villager, "openid-placer")
    await bind(db, await spouse_of(db, scene), "openid-spouse")
    placed = await place(client, scene, (scene.soap.id, 2), (scene.haircut.id, 1))
    assert placed.status_code == 201, placed.text
    order = await order_row(db, placed.json()["id"])
    assert order.expires_at is not None
    deadline = order.expires_at

    # Not before the reminder time (24 hours by default).
    assert await remind_due_orders(db, settings, deadline - timedelta(hours=24, minutes=1)) == 0
    assert await messages(db, scene) == []
    assert (await order_row(db, order.id)).reminded_at is None

    due = deadline - timedelta(hours=23)
    assert await remind_due_orders(db, settings, due) == 1
    # The job runs again, and again later: nothing more.
    assert await remind_due_orders(db, settings, due) == 0
    assert await remind_due_orders(db, settings, deadline - timedelta(minutes=1)) == 0

    [message] = await messages(db, scene)
    # To the villager who placed it, not the whole household.
    assert (message.person_id, message.openid) == (scene.villager.id, "openid-placer")
    assert message.status is NotificationStatus.QUEUED
    local = deadline.astimezone(SHANGHAI)
    assert {k: v["value"] for k, v in message.data.items()} == {
        "thing1": "洗衣皂×2等2种",
        "time2": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}",
        "thing3": scene.shop.name,
        "thing4": PICKUP_HINT,
    }
    assert WECHAT_TIME.match(message.data["time2"]["value"])
    assert (await order_row(db, order.id)).reminded_at == due


async def test_collected_cancelled_and_expired_orders_are_not_reminded(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await bind(db, scene.villager, "openid-placer")
    orders = [(await place(client, scene, (scene.soap.id, 1))).json() for _ in range(3)]
    collected, cancelled, expired = orders
    pickup = await client.post(
        f"{API}/shops/{scene.shop.id}/pickups",
        json={"code": collected["pickup_code"]},
        headers=scene.attendant_headers,
    )
    assert pickup.status_code == 200, pickup.text
    cancel = await client.post(
        f"{API}/shop-orders/{cancelled['id']}/cancel", headers=scene.villager_headers
    )
    assert cancel.status_code == 200, cancel.text
    deadline = (await order_row(db, expired["id"])).expires_at
    assert deadline is not None
    after = deadline + timedelta(minutes=1)
    # Past its deadline but not yet expired by the job: too late to remind.
    assert await remind_due_orders(db, settings, after) == 0
    assert await expire_due_order(db, after) is True
    assert await remind_due_orders(db, settings, deadline - timedelta(hours=1)) == 0

    assert await messages(db, scene) == []
    for order in orders:
        assert (await order_row(db, order["id"])).reminded_at is None


async def test_an_order_placed_with_less_than_the_reminder_time_left_is_reminded_halfway(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await bind(db, scene.villager, "openid-placer")
    # Orders are held for 72 hours: reminding 100 hours ahead would remind at placement.
    long_lead = settings.model_copy(update={"shop_order_reminder_hours": 100})
    order = await order_row(db, (await place(client, scene, (scene.soap.id, 1))).json()["id"])
    assert order.expires_at is not None
    halfway = order.created_at + (order.expires_at - order.created_at) / 2

    assert await remind_due_orders(db, long_lead, order.created_at) == 0
    assert await remind_due_orders(db, long_lead, halfway - timedelta(minutes=1)) == 0
    assert await remind_due_orders(db, long_lead, halfway + timedelta(minutes=1)) == 1
    assert len(await messages(db, scene)) == 1


async def test_a_placer_who_cannot_be_reached_leaves_the_reminder_to_the_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    spouse = await spouse_of(db, scene)
    await bind(db, spouse, "openid-spouse")
    order = await order_row(db, (await place(client, scene, (scene.soap.id, 1))).json()["id"])
    assert order.expires_at is not None

    assert await remind_due_orders(db, settings, order.expires_at - timedelta(hours=1)) == 1

    [message] = await messages(db, scene)
    assert (message.person_id, message.openid) == (spouse.id, "openid-spouse")
    assert (await order_row(db, order.id)).reminded_at is not None


async def test_the_worker_delivers_the_reminder_through_wechat(
    client: httpx.AsyncClient,
    db: AsyncSession,
    connection: AsyncConnection,
    settings: Settings,
    wechat: FakeWechatServer,
    scene: Scene,
) -> None:
    await bind(db, scene.villager, "openid-placer")
    long_name = await place(client, scene, (scene.haircut.id, 1))
    order = await order_row(db, long_name.json()["id"])
    assert order.expires_at is not None
    assert await remind_due_orders(db, settings, order.expires_at - timedelta(hours=1)) == 1

    sessions = async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    one_at_a_time = settings.model_copy(update={"notify_concurrency": 1})
    async with httpx.AsyncClient(timeout=1.0) as http:
        worker = NotificationWorker(sessions, http, one_at_a_time)
        assert await worker.deliver_batch() == 1

    [sent] = wechat.delivered()
    assert sent["touser"] == "openid-placer"
    assert sent["template_id"] == settings.notify_template_order_expiring
    assert sent["data"]["thing1"] == {"value": "理发×1"}
    assert sent["data"]["thing3"] == {"value": scene.shop.name}
    assert WECHAT_TIME.match(sent["data"]["time2"]["value"])
    [message] = await messages(db, scene)
    assert message.status is NotificationStatus.SENT
    assert message.sent_at is not None


def test_a_long_item_name_gives_way_to_its_count() -> None:
    def line(name: str, quantity: int) -> ShopOrderLine:
        return ShopOrderLine(
            order_id=uuid.uuid4(), item_id=uuid.uuid4(), item_name=name, unit_points=1,
            quantity=quantity,
        )  # fmt: skip

    at = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
    data = expiring_message(
        [line("金龙鱼东北大米五常稻花香十公斤家庭装", 12), line("黄豆酱", 1)], "新秀村积分超市", at
    )
    assert data["thing1"] == "金龙鱼东北大米五常稻花香十…×12等2种"
    assert len(data["thing1"]) == 20
    assert data["time2"] == "2026年11月22日 14:30"
