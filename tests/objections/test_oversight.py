"""What objections hold up beyond their own period: the year close, and what the town's
dashboard shows still waiting."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.schemas.rules import Policy
from app.services import ledger
from app.timeutil import SHANGHAI
from tests.objections.conftest import (
    API,
    Scene,
    approve_and_publish,
    build_scene,
    file,
    published_february,
    rule,
    scored_period,
)

Clock = Callable[[datetime], None]


async def test_the_year_close_waits_for_an_open_objection(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings, set_clock: Clock
) -> None:
    """December is published on 2 January and objected to: the close names the objection and
    waits; once the working group has ruled, the close goes ahead (a dismissal still within its
    escalation window does not hold it, as it does not hold the period's close)."""
    scene = await build_scene(
        db, settings, policy=Policy(carry_over=False), effective_from=date(2031, 12, 1)
    )
    set_clock(datetime(2032, 1, 2, 9, 0, tzinfo=SHANGHAI))
    december = await scored_period(
        db,
        scene,
        date(2031, 12, 1),
        {scene.household.id: (7, False), scene.neighbour.id: (10, False)},
    )
    await approve_and_publish(client, scene, december)
    filed = await file(client, scene.villager_headers, december)
    assert filed.status_code == 201, filed.text

    waiting = await ledger.close_year(db, 2031, village_ids=[scene.village.id])
    assert waiting.closed == []
    [blocker] = waiting.blocked
    assert (blocker.village_id, blocker.code, blocker.period) == (
        scene.village.id,
        "year_close.objection_open",
        "2031年12月",
    )
    assert filed.json()["id"] in blocker.message

    dismissed = await rule(client, scene.admin_headers, filed.json()["id"], "dismiss", "检查无误")
    assert dismissed.status_code == 200, dismissed.text
    [closed] = (await ledger.close_year(db, 2031, village_ids=[scene.village.id])).closed
    assert closed.village_id == scene.village.id


async def dashboard_row(client: httpx.AsyncClient, scene: Scene) -> dict[str, object]:
    response = await client.get(
        f"{API}/towns/{scene.village.town_id}/dashboard",
        params={"year": 2031},
        headers=scene.town_headers,
    )
    assert response.status_code == 200, response.text
    [row] = [v for v in response.json()["villages"] if v["village_id"] == str(scene.village.id)]
    return row


async def test_the_town_dashboard_shows_objections_waiting_by_age(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    mine = await file(client, scene.villager_headers, period)
    theirs = await file(client, scene.neighbour_headers, period)
    assert mine.status_code == theirs.status_code == 201
    dismissed = await rule(client, scene.admin_headers, theirs.json()["id"], "dismiss", "属实")
    assert dismissed.status_code == 200, dismissed.text
    escalated = await client.post(
        f"{API}/objections/{theirs.json()['id']}/escalation",
        headers=scene.neighbour_headers,
        json={"reason": "请镇里复核"},
    )
    assert escalated.status_code == 200, escalated.text

    row = await dashboard_row(client, scene)
    fresh = {"total": 1, "under_7_days": 1, "days_7_to_30": 0, "over_30_days": 0}
    assert row["objections_open"] == fresh
    assert row["objections_escalated"] == fresh

    # Ten days on, the village's objection has waited past a week; the escalation is counted
    # from when it reached the town, so it ages the same way here.
    set_clock(datetime(2031, 3, 15, 10, 0, tzinfo=SHANGHAI))
    row = await dashboard_row(client, scene)
    aged = {"total": 1, "under_7_days": 0, "days_7_to_30": 1, "over_30_days": 0}
    assert row["objections_open"] == aged
    assert row["objections_escalated"] == aged

    ruled = await rule(
        client, scene.town_headers, theirs.json()["id"], "dismiss", "维持", town=True
    )
    assert ruled.status_code == 200, ruled.text
    row = await dashboard_row(client, scene)
    assert row["objections_escalated"]["total"] == 0
    assert row["objections_open"]["total"] == 1
