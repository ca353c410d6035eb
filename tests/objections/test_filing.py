"""Filing an objection: within the window of a published period, for the caller's own household,
once per entry or period score; every refusal writes nothing."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import LedgerKind, Objection, ObjectionStatus, Photo, ScoringPeriod
from app.schemas.rules import Policy
from app.services.objections.reads import open_objections_blocking
from app.timeutil import SHANGHAI
from tests.auth.conftest import assert_problem
from tests.objections.conftest import (
    API,
    Scene,
    approve_and_publish,
    build_scene,
    entry_of,
    file,
    objection_count,
    published_february,
    scored_period,
)
from tests.photos import images
from tests.photos.conftest import upload

Clock = Callable[[datetime], None]


async def test_a_member_objects_to_an_entry_with_photos_and_sees_it(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    entry = await entry_of(db, scene.household, period, LedgerKind.INSPECTION)
    photo = await upload(client, scene.villager_headers, images.jpeg())
    assert photo.status_code == 201, photo.text
    filed = await file(
        client,
        scene.villager_headers,
        period,
        entry,
        photo_ids=[photo.json()["id"]],
    )
    assert filed.status_code == 201, filed.text
    body = filed.json()
    assert body["status"] == "open"
    assert body["entry"]["points"] == 7
    assert body["photo_ids"] == [photo.json()["id"]]
    # The household does not see who scored it or the working group's view of the card.
    assert body["scored_by"] is None
    assert body["card"] == []

    stored = await db.get(Objection, body["id"])
    assert stored is not None
    assert stored.status is ObjectionStatus.OPEN
    assert stored.ledger_entry_id == entry.id
    assert stored.household_id == scene.household.id
    attached = await db.get(Photo, photo.json()["id"])
    assert attached is not None
    assert str(attached.objection_id) == body["id"]

    # The working group sees it in its queue with the card and who scored it.
    queue = await client.get(
        f"{API}/villages/{scene.village.id}/objection-queue", headers=scene.leader_headers
    )
    assert queue.status_code == 200, queue.text
    [row] = queue.json()["items"]
    assert row["id"] == body["id"]
    assert row["scored_by"] == str(scene.scorer.id)
    assert row["scorer_name"] == scene.scorer.name
    assert {line["item_code"]: line["points"] for line in row["card"]} == {"1.1": 7, "V1": 0}
    assert row["age_days"] == 0
    # The admin who lives in the household does not get it in their queue.
    own = await client.get(
        f"{API}/villages/{scene.village.id}/objection-queue", headers=scene.admin_at_home_headers
    )
    assert own.json()["items"] == []
    # The photo is evidence the working group may open.
    seen = await client.get(f"{API}/photos/{photo.json()['id']}", headers=scene.leader_headers)
    assert seen.status_code == 200

    mine = await client.get(
        f"{API}/households/{scene.household.id}/objections", headers=scene.villager_headers
    )
    assert [o["id"] for o in mine.json()["items"]] == [body["id"]]


async def test_a_retried_filing_is_written_once(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    headers = {**scene.villager_headers, "Idempotency-Key": "objection-retry-0001"}
    first = await file(client, headers, period)
    again = await file(client, headers, period)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await objection_count(db) == 1


async def test_refusals_write_nothing(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    neighbours = await entry_of(db, scene.neighbour, period, LedgerKind.INSPECTION)
    mine = await entry_of(db, scene.household, period, LedgerKind.INSPECTION)

    # Another household's entry is not found.
    assert_problem(
        await file(client, scene.villager_headers, period, neighbours),
        404,
        "ledger_entry.not_found",
    )
    # Staff without a household of their own cannot object.
    assert_problem(await file(client, scene.admin_headers, period), 403, "objection.no_household")
    # A second open objection to the same entry, or to the same period score.
    assert (await file(client, scene.villager_headers, period, mine)).status_code == 201
    assert (await file(client, scene.villager_headers, period)).status_code == 201
    assert_problem(
        await file(client, scene.villager_headers, period, mine), 409, "objection.duplicate"
    )
    assert_problem(await file(client, scene.villager_headers, period), 409, "objection.duplicate")
    # Too many photos, and a photo that is not the caller's upload.
    assert_problem(
        await file(client, scene.neighbour_headers, period, photo_ids=[str(mine.id)] * 10),
        422,
        "request.invalid",
    )
    assert_problem(
        await file(client, scene.neighbour_headers, period, photo_ids=[str(mine.id)]),
        422,
        "objection.photo_unavailable",
    )
    # The window closes at the end of 12 March (published on the 5th, 7 days).
    set_clock(datetime(2031, 3, 13, 0, 5, tzinfo=SHANGHAI))
    assert_problem(
        await file(client, scene.neighbour_headers, period), 409, "objection.window_closed"
    )
    assert await objection_count(db) == 2


async def test_a_period_not_yet_published_takes_no_objection(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    set_clock(datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI))
    period = await scored_period(db, scene, date(2031, 2, 1), {scene.household.id: (7, False)})
    approved = await client.post(f"{API}/periods/{period.id}/approve", headers=scene.admin_headers)
    assert approved.status_code == 200
    assert_problem(
        await file(client, scene.villager_headers, period), 409, "objection.period_not_published"
    )
    assert await objection_count(db) == 0


async def test_a_household_vetoed_for_the_year_may_still_object(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings, set_clock: Clock
) -> None:
    """A year veto in January does not stop the household disputing February (nor the veto)."""
    scene = await build_scene(db, settings, policy=Policy(veto_scope="year"))
    set_clock(datetime(2031, 2, 5, 10, 0, tzinfo=SHANGHAI))
    january = await scored_period(db, scene, date(2031, 1, 1), {scene.household.id: (7, True)})
    await approve_and_publish(client, scene, january)
    veto = await entry_of(db, scene.household, january, LedgerKind.VETO)
    assert (await file(client, scene.villager_headers, january, veto)).status_code == 201
    set_clock(datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI))
    february = await scored_period(db, scene, date(2031, 2, 1), {scene.household.id: (9, False)})
    await approve_and_publish(client, scene, february)
    unrelated = await entry_of(db, scene.household, february, LedgerKind.INSPECTION)
    filed = await file(client, scene.villager_headers, february, unrelated)
    assert filed.status_code == 201, filed.text
    assert filed.json()["vetoed"] is True
    rows = (await db.execute(select(Objection.period_id))).scalars().all()
    assert sorted(map(str, rows)) == sorted([str(january.id), str(february.id)])


async def test_closing_waits_for_open_and_escalated_objections(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    filed = (await file(client, scene.villager_headers, period)).json()
    set_clock(datetime(2031, 3, 13, 9, 0, tzinfo=SHANGHAI))
    close = f"{API}/periods/{period.id}/close"
    body = assert_problem(
        await client.post(close, headers=scene.admin_headers), 409, "period.objections_pending"
    )
    assert body["open"] == [filed["id"]]
    assert body["escalated"] == []
    # What the year close is to wait for, the same objections.
    blocking = await open_objections_blocking(db, scene.village.id, 2031)
    assert [(str(o), p, s) for o, p, s in blocking] == [
        (filed["id"], period.id, ObjectionStatus.OPEN)
    ]
    assert await open_objections_blocking(db, scene.village.id, 2030) == []
    dismissed = await client.post(
        f"{API}/objections/{filed['id']}/ruling",
        headers=scene.leader_headers,
        json={"decision": "dismiss", "reason": "检查当天确有垃圾堆放"},
    )
    assert dismissed.status_code == 200, dismissed.text
    escalated = await client.post(
        f"{API}/objections/{filed['id']}/escalation",
        headers=scene.villager_headers,
        json={"reason": "请镇里复核"},
    )
    assert escalated.status_code == 200, escalated.text
    body = assert_problem(
        await client.post(close, headers=scene.admin_headers), 409, "period.objections_pending"
    )
    assert (body["open"], body["escalated"]) == ([], [filed["id"]])
    stored = await db.get(ScoringPeriod, period.id)
    assert stored is not None
    await db.refresh(stored)
    assert stored.status.value == "published"
    ruled = await client.post(
        f"{API}/objections/{filed['id']}/town-ruling",
        headers=scene.town_headers,
        json={"decision": "dismiss", "reason": "维持村工作小组的处理"},
    )
    assert ruled.status_code == 200, ruled.text
    closed = await client.post(close, headers=scene.admin_headers)
    assert closed.status_code == 200, closed.text
    assert await open_objections_blocking(db, scene.village.id, 2031) == []
