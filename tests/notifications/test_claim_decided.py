"""Deciding a claim tells the household by a WeChat subscribe message, queued with the decision:
the villager who claimed, or every bound member when a scorer recorded it on their behalf."""

import re
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.integrations.fake_wechat import FakeWechatServer
from app.models import NotificationKind, NotificationStatus, Person, WechatIdentity
from app.services.notification_delivery import NotificationWorker
from tests import factories as f
from tests.activities.conftest import announce, check_in, code_now, villager_of
from tests.auth.conftest import assert_problem
from tests.claims.conftest import API, Scene, build_scene, claim_body, review, submit
from tests.notifications.conftest import outbox

DECIDED_AT = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}$")


async def bind(db: AsyncSession, person: Person, openid: str) -> None:
    db.add(WechatIdentity(openid=openid, session_key="session-key", person_id=person.id))
    await db.flush()


async def scene_with_wechat(db: AsyncSession, settings: Settings) -> Scene:
    """The claims scene, its villager bound to WeChat, and a second bound member at home."""
    scene = await build_scene(db, settings)
    await bind(db, scene.villager_person, "openid-claimant")
    spouse = await f.add_member(db, scene.household)
    spouse_person = await db.get(Person, spouse.person_id)
    assert spouse_person is not None
    await bind(db, spouse_person, "openid-spouse")
    return scene


async def test_an_approval_tells_the_villager_who_claimed(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await scene_with_wechat(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    assert await outbox(db, scene.village) == []

    decided = await review(client, scene.leader, claim["id"])
    assert decided.json()["status"] == "approved"

    [message] = await outbox(db, scene.village)
    assert (message.openid, message.person_id) == ("openid-claimant", scene.villager_person.id)
    assert (message.kind, message.status) == (
        NotificationKind.CLAIM_DECIDED,
        NotificationStatus.QUEUED,
    )
    assert {k: v["value"] for k, v in message.data.items() if k != "time4"} == {
        "thing1": "参加志愿服务",
        "phrase2": "已通过",
        "thing3": "获得2分",
    }
    assert DECIDED_AT.match(message.data["time4"]["value"])
    # A review refused as too late tells nobody again.
    late = await review(client, scene.scorers[0], claim["id"])
    assert_problem(late, 409, "claim.already_decided")
    assert len(await outbox(db, scene.village)) == 1


async def test_a_rejection_tells_the_reason(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await scene_with_wechat(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    reason = "当天未见到本人参加志愿服务，请补充现场照片后重新申报"
    await review(client, scene.leader, claim["id"], "reject", reason)

    [message] = await outbox(db, scene.village)
    assert message.openid == "openid-claimant"
    assert message.data["phrase2"] == {"value": "未通过"}
    # A thing holds 20 characters: the reason is cut, and the household reads it in full in
    # the mini-program.
    assert message.data["thing3"] == {"value": reason[:19] + "…"}


async def test_a_claim_recorded_on_behalf_tells_every_bound_member(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await scene_with_wechat(db, settings)
    recorded = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=scene.scorers[0],
        json=claim_body(scene.items.volunteer),
    )
    assert recorded.status_code == 201, recorded.text
    await review(client, scene.leader, recorded.json()["id"])

    messages = await outbox(db, scene.village)
    assert sorted(m.openid for m in messages) == ["openid-claimant", "openid-spouse"]
    assert {m.data["thing3"]["value"] for m in messages} == {"获得2分"}


async def test_a_pending_review_a_withdrawal_and_a_refused_review_tell_nobody(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await scene_with_wechat(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    # One scorer of a quorum of two: still pending.
    assert (await review(client, scene.scorers[0], claim["id"])).json()["status"] == "pending"
    withdrawn = await client.post(f"{API}/claims/{claim['id']}/withdraw", headers=scene.villager)
    assert withdrawn.json()["status"] == "withdrawn"
    refused = await review(client, scene.scorers[1], claim["id"])
    assert_problem(refused, 409, "claim.already_decided")
    assert await outbox(db, scene.village) == []


async def test_the_worker_delivers_it_through_wechat(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    scene = await scene_with_wechat(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await review(client, scene.leader, claim["id"])

    assert await worker.deliver_batch() == 1

    [sent] = wechat.delivered()
    assert sent["touser"] == "openid-claimant"
    assert sent["template_id"] == notify_settings.notify_template_claim_decided
    assert sent["data"]["phrase2"] == {"value": "已通过"}
    [message] = await outbox(db, scene.village)
    assert message.status is NotificationStatus.SENT


async def test_confirming_attendance_tells_everyone_who_checked_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await scene_with_wechat(db, settings)
    activity = await announce(client, scene)
    came = await check_in(client, scene.villager, activity, code_now(settings, activity))
    assert came.status_code == 201, came.text
    _, neighbour = await villager_of(db, settings, scene)
    absent = await check_in(client, neighbour, activity, code_now(settings, activity))
    assert absent.status_code == 201, absent.text
    neighbour_person = await db.get(Person, uuid.UUID(absent.json()["person_id"]))
    assert neighbour_person is not None
    await bind(db, neighbour_person, "openid-neighbour")

    confirmed = await client.post(
        f"{API}/activities/{activity['id']}/attendance",
        headers=scene.admin,
        json={"attended_check_in_ids": [came.json()["id"]]},
    )
    assert confirmed.status_code == 200, confirmed.text

    messages = await outbox(db, scene.village)
    # The spouse did not check in: only the two who did hear of it.
    assert sorted(
        (m.openid, m.data["phrase2"]["value"], m.data["thing3"]["value"]) for m in messages
    ) == [
        ("openid-claimant", "已通过", "获得2分"),
        ("openid-neighbour", "未通过", "未确认到场"),
    ]
    assert {m.data["thing1"]["value"] for m in messages} == {"清理河道"}
