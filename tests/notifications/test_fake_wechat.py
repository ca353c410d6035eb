"""The fake WeChat server's controls over HTTP, as the demo uses them."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.integrations.fake_wechat import FakeWechatServer
from app.models import NotificationKind, NotificationStatus
from app.services.notification_delivery import NotificationWorker
from app.services.notifications import notify_person
from tests import factories as f
from tests.notifications.conftest import bound_villager, outbox


async def test_refusals_and_sent_messages_over_http(
    db: AsyncSession, worker: NotificationWorker, wechat: FakeWechatServer
) -> None:
    village = await f.create_village(db)
    for openid in ("openid-yes", "openid-no"):
        person = await bound_villager(db, village, openid)
        await notify_person(
            db,
            village_id=village.id,
            person_id=person.id,
            kind=NotificationKind.ORDER_EXPIRING,
            data={"thing1": openid},
        )
    async with httpx.AsyncClient(base_url=wechat.base_url) as http:
        refused = await http.post("/__fake/refuse", json={"openid": "openid-no"})
        assert refused.status_code == 200
        assert (await http.post("/__fake/refuse", json={})).status_code == 400

        await worker.deliver_batch()

        sent = (await http.get("/__fake/sent")).json()["sent"]
    assert [message["touser"] for message in sent] == ["openid-yes"]
    assert {row.openid: row.status for row in await outbox(db, village)} == {
        "openid-yes": NotificationStatus.SENT,
        "openid-no": NotificationStatus.REFUSED,
    }
