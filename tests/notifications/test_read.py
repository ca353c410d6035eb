"""A village admin reads the village's messages and whom they did not reach."""

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Notification, NotificationKind, NotificationStatus, Role
from app.services.notifications import notify_person
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.notifications.conftest import bound_villager

API = "/api/v1"


async def test_an_admin_lists_the_villages_messages_by_status(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village, other = await f.create_village(db), await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    people = [await bound_villager(db, village) for _ in range(3)]
    for person in people:
        await notify_person(
            db,
            village_id=village.id,
            person_id=person.id,
            kind=NotificationKind.CLAIM_DECIDED,
            data={"thing1": "x"},
        )
    stranger = await bound_villager(db, other)
    await notify_person(
        db,
        village_id=other.id,
        person_id=stranger.id,
        kind=NotificationKind.CLAIM_DECIDED,
        data={"thing1": "x"},
    )
    await db.execute(
        update(Notification)
        .where(Notification.person_id == people[1].id)  # type: ignore[arg-type]
        .values(status=NotificationStatus.FAILED, attempts=6, last_errcode=-1, last_errmsg="busy")
    )
    await db.flush()
    headers = await f.login_headers(db, settings, admin)

    everything = await client.get(
        f"{API}/villages/{village.id}/notifications", params={"limit": 2}, headers=headers
    )
    assert everything.status_code == 200
    first = everything.json()
    rest = await client.get(
        f"{API}/villages/{village.id}/notifications",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=headers,
    )
    listed = [item["person_id"] for item in first["items"] + rest.json()["items"]]
    assert sorted(listed) == sorted(str(p.id) for p in people)
    assert rest.json()["next_cursor"] is None

    failed = await client.get(
        f"{API}/villages/{village.id}/notifications",
        params={"status": "failed"},
        headers=headers,
    )
    [item] = failed.json()["items"]
    assert (item["person_id"], item["status"], item["attempts"]) == (str(people[1].id), "failed", 6)
    assert (item["last_errcode"], item["last_errmsg"]) == (-1, "busy")
    assert "openid" not in item

    assert_problem(
        await client.get(f"{API}/villages/{other.id}/notifications", headers=headers),
        404,
        "village.not_found",
    )
    assert_problem(
        await client.get(
            f"{API}/villages/{village.id}/notifications",
            params={"status": "lost"},
            headers=headers,
        ),
        422,
        "request.invalid",
    )
