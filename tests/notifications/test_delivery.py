"""The worker against the fake WeChat server: payload, token cache, refusals, retries, leases."""

import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.integrations.fake_wechat import FakeWechatServer
from app.integrations.wechat import SendResult
from app.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    Village,
    WechatAccessToken,
)
from app.services.notification_delivery import NotificationWorker
from app.services.notifications import notify_person
from tests import factories as f
from tests.notifications.conftest import bound_villager, outbox


async def queue_one(
    db: AsyncSession, openid: str = "openid-li", *, page: str | None = "pages/index"
) -> Village:
    village = await f.create_village(db)
    person = await bound_villager(db, village, openid)
    await notify_person(
        db,
        village_id=village.id,
        person_id=person.id,
        kind=NotificationKind.CLAIM_DECIDED,
        data={"thing1": "志愿服务加分申请的审核结果通知书已经出来了请查看", "phrase2": "已通过"},
        page=page,
    )
    return village


async def make_due(db: AsyncSession, village: Village) -> None:
    """As if the retry delay had passed."""
    await db.execute(
        update(Notification)
        .where(Notification.village_id == village.id)  # type: ignore[arg-type]
        .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await db.flush()


async def cached_token(db: AsyncSession, settings: Settings) -> WechatAccessToken:
    row = await db.execute(
        select(WechatAccessToken)
        .where(WechatAccessToken.appid == settings.wechat_appid)  # type: ignore[arg-type]
        .execution_options(populate_existing=True)
    )
    return row.scalar_one()


async def test_a_queued_message_is_sent_with_wechats_payload(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    village = await queue_one(db)

    assert await worker.deliver_batch() == 1

    [sent] = wechat.delivered()
    assert sent == {
        "touser": "openid-li",
        "template_id": notify_settings.notify_template_claim_decided,
        "page": "pages/index",
        "data": {
            "thing1": {"value": "志愿服务加分申请的审核结果通知书已经出…"},
            "phrase2": {"value": "已通过"},
        },
        "miniprogram_state": notify_settings.notify_miniprogram_state,
        "lang": "zh_CN",
    }
    [call] = wechat.calls_to("send")
    assert call["access_token"] == wechat.current_token()
    [row] = await outbox(db, village)
    assert (row.status, row.attempts, row.last_errcode) == (NotificationStatus.SENT, 1, 0)
    assert row.template_id == notify_settings.notify_template_claim_decided
    assert row.sent_at is not None
    assert (row.lease_token, row.lease_expires_at) == (None, None)
    assert await worker.deliver_batch() == 0
    assert len(wechat.delivered()) == 1


async def test_a_message_without_a_page_opens_nothing(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    await queue_one(db, page=None)

    await worker.deliver_batch()

    assert "page" not in wechat.delivered()[0]


async def test_the_access_token_is_cached_in_the_database_and_reused(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    await queue_one(db, "openid-1")
    await worker.deliver_batch()
    await queue_one(db, "openid-2")
    await worker.deliver_batch()

    assert len(wechat.delivered()) == 2
    [token_call] = wechat.calls_to("token")
    assert token_call["force_refresh"] is False
    cached = await cached_token(db, notify_settings)
    assert cached.token == wechat.current_token()
    left = cached.expires_at - datetime.now(UTC)
    assert timedelta(seconds=7190) < left <= timedelta(seconds=7200)


async def test_a_token_about_to_expire_is_refreshed_before_it_does(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    # Five minutes left as soon as it is handed out: within the window in which stable_token
    # already hands out the next one, so each use fetches again.
    wechat.state.token_expires_in = 300
    await queue_one(db, "openid-1")
    await worker.deliver_batch()
    wechat.state.token_expires_in = 7200
    await queue_one(db, "openid-2")
    await worker.deliver_batch()
    await queue_one(db, "openid-3")
    await worker.deliver_batch()

    assert len(wechat.calls_to("token")) == 2
    assert len(wechat.delivered()) == 3
    cached = await cached_token(db, notify_settings)
    assert cached.expires_at - datetime.now(UTC) > timedelta(hours=1)


async def test_another_process_finds_the_token_in_the_database(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    worker_sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    notify_settings: Settings,
) -> None:
    await queue_one(db, "openid-1")
    await worker.deliver_batch()
    await queue_one(db, "openid-2")

    await NotificationWorker(worker_sessions, http, notify_settings).deliver_batch()

    assert len(wechat.calls_to("token")) == 1
    assert len(wechat.delivered()) == 2


async def test_a_token_wechat_invalidated_is_replaced_once_and_the_send_retried(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    await queue_one(db, "openid-1")
    await worker.deliver_batch()
    stale = wechat.current_token()
    wechat.expire_token()  # e.g. someone force-refreshed it with the AppSecret elsewhere
    village = await queue_one(db, "openid-2")

    await worker.deliver_batch()

    sends = wechat.calls_to("send")
    assert [call["access_token"] for call in sends[1:]] == [stale, wechat.current_token()]
    assert [call["force_refresh"] for call in wechat.calls_to("token")] == [False, False]
    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 1)
    assert (await cached_token(db, notify_settings)).token == wechat.current_token()


async def test_a_refused_token_wechat_still_hands_out_is_force_refreshed(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    wechat.fail_next("send", errcode=40001)

    await worker.deliver_batch()

    assert [call["force_refresh"] for call in wechat.calls_to("token")] == [False, False, True]
    first, second = wechat.calls_to("send")
    assert first["access_token"] != second["access_token"] == wechat.current_token()
    [row] = await outbox(db, village)
    assert row.status is NotificationStatus.SENT


async def test_a_villager_who_refused_is_recorded_and_never_retried(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    wechat.refuse("openid-refuser")
    village = await queue_one(db, "openid-refuser")

    await worker.deliver_batch()
    await make_due(db, village)

    assert await worker.deliver_batch() == 0
    assert len(wechat.calls_to("send")) == 1
    assert wechat.delivered() == []
    [row] = await outbox(db, village)
    assert (row.status, row.attempts, row.last_errcode) == (NotificationStatus.REFUSED, 1, 43101)
    assert row.sent_at is None


async def test_server_errors_are_retried_with_backoff_then_failed_after_max_attempts(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    village = await queue_one(db)
    wechat.fail_next("send", http_status=502, times=notify_settings.notify_max_attempts)
    base = notify_settings.notify_retry_base_seconds

    for attempt in range(1, notify_settings.notify_max_attempts):
        before = datetime.now(UTC)
        assert await worker.deliver_batch() == 1
        [row] = await outbox(db, village)
        assert (row.status, row.attempts) == (NotificationStatus.QUEUED, attempt)
        assert (row.last_errcode, row.last_errmsg) == (None, "WeChat answered HTTP 502")
        delay = timedelta(seconds=base * 2 ** (attempt - 1))
        assert before + delay <= row.next_attempt_at <= datetime.now(UTC) + delay
        # Not due yet: nothing is sent early.
        assert await worker.deliver_batch() == 0
        await make_due(db, village)

    assert await worker.deliver_batch() == 1
    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.FAILED, 3)
    await make_due(db, village)
    assert await worker.deliver_batch() == 0
    assert len(wechat.calls_to("send")) == notify_settings.notify_max_attempts
    assert wechat.delivered() == []


async def test_a_busy_wechat_is_retried_and_the_retry_gets_through(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    wechat.fail_next("send", errcode=-1)

    await worker.deliver_batch()
    [row] = await outbox(db, village)
    assert (row.status, row.last_errcode) == (NotificationStatus.QUEUED, -1)
    await make_due(db, village)
    await worker.deliver_batch()

    [row] = await outbox(db, village)
    assert (row.status, row.attempts, row.last_errcode) == (NotificationStatus.SENT, 2, 0)
    assert len(wechat.delivered()) == 1


async def test_an_error_a_retry_cannot_fix_fails_at_once(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    wechat.fail_next("send", errcode=47003)

    await worker.deliver_batch()

    [row] = await outbox(db, village)
    assert (row.status, row.attempts, row.last_errcode) == (NotificationStatus.FAILED, 1, 47003)


async def test_when_the_token_api_fails_the_message_waits_for_a_retry(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    wechat.fail_next("token", http_status=503)

    await worker.deliver_batch()

    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.QUEUED, 1)
    assert row.last_errmsg is not None
    assert row.last_errmsg.startswith("access token:")
    assert wechat.calls_to("send") == []


async def test_a_crashed_workers_lease_runs_out_and_another_sends_the_message(
    db: AsyncSession,
    worker: NotificationWorker,
    wechat: FakeWechatServer,
    notify_settings: Settings,
) -> None:
    village = await queue_one(db)
    [crashed] = await worker._claim()  # claimed, then the process died

    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.SENDING, 1)
    assert await worker.deliver_batch() == 0  # leased: nobody else touches it
    await db.execute(
        update(Notification)
        .where(Notification.id == row.id)  # type: ignore[arg-type]
        .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await db.flush()

    assert await worker.deliver_batch() == 1
    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 2)
    # The first worker wakes up late: its lease is gone, so its outcome is not recorded.
    await worker._record(crashed, "late-template", SendResult(None, "late"))
    [row] = await outbox(db, village)
    assert (row.status, row.template_id, row.last_errcode) == (
        NotificationStatus.SENT,
        notify_settings.notify_template_claim_decided,
        0,
    )
    assert len(wechat.delivered()) == 1


async def test_a_message_whose_lease_is_nearly_over_is_handed_back_unsent(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    [claimed] = await worker._claim()

    await worker._deliver(dataclasses.replace(claimed, deadline=0.0))

    [row] = await outbox(db, village)
    assert (row.status, row.attempts, row.lease_token) == (NotificationStatus.QUEUED, 0, None)
    assert wechat.calls_to("send") == []


async def test_an_answer_without_an_errcode_is_retried_not_marked_sent(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await queue_one(db)
    for body in (b"{}", b'{"errcode": null, "errmsg": "ok"}'):
        wechat.fail_next("send", body=body)
        await worker.deliver_batch()
        [row] = await outbox(db, village)
        assert (row.status, row.last_errcode, row.sent_at) == (
            NotificationStatus.QUEUED,
            None,
            None,
        )
        assert row.last_errmsg == "WeChat answered something that is not an errcode"
        await make_due(db, village)
    await worker.deliver_batch()
    [row] = await outbox(db, village)
    assert (row.status, row.attempts) == (NotificationStatus.SENT, 3)
    assert len(wechat.delivered()) == 1


async def test_one_message_failing_leaves_the_rest_of_the_batch_delivered_once(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await f.create_village(db)
    for name in ("zhao", "qian", "sun"):
        person = await bound_villager(db, village, f"openid-{name}")
        await notify_person(
            db,
            village_id=village.id,
            person_id=person.id,
            kind=NotificationKind.CLAIM_DECIDED,
            data={"thing1": "审核结果", "phrase2": "已通过"},
        )
    # Said to be gzip but is not: httpx raises DecodingError, which is no TransportError.
    wechat.fail_next("send", body=b"not gzip at all", content_encoding="gzip")

    assert await worker.deliver_batch() == 3

    rows = await outbox(db, village)
    assert sorted(r.status for r in rows) == [
        NotificationStatus.SENDING,
        NotificationStatus.SENT,
        NotificationStatus.SENT,
    ]
    [stuck] = [r for r in rows if r.status is NotificationStatus.SENDING]
    assert stuck.lease_token is not None
    assert len(wechat.delivered()) == 2
    # Its lease runs out; the next batch sends it and nothing else.
    await db.execute(
        update(Notification)
        .where(Notification.id == stuck.id)  # type: ignore[arg-type]
        .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await db.flush()
    assert await worker.deliver_batch() == 1
    assert {r.status for r in await outbox(db, village)} == {NotificationStatus.SENT}
    assert sorted(m["touser"] for m in wechat.delivered()) == [
        "openid-qian",
        "openid-sun",
        "openid-zhao",
    ]
