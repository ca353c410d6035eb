"""报街镇备案: filed once published; the town acknowledges or queries with a note; a queried
filing is filed again; the dashboard shows where each period stands."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import AuditEntry, PeriodFiling
from tests.auth.conftest import assert_problem
from tests.supervision.conftest import API, FAIR, YEAR, add_village, at, build_scene, run_period


async def _filing(db: AsyncSession, period_id: str) -> PeriodFiling | None:
    return (
        await db.execute(
            select(PeriodFiling)
            .where(col(PeriodFiling.period_id) == period_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def test_file_query_refile_acknowledge(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    fair = scene.villages["fair"]
    path = f"{API}/periods/{fair.period_id}/filing"
    set_clock(at(date(YEAR, 3, 26)))

    # The town cannot answer what was never filed; the village files its published month.
    assert_problem(
        await client.post(f"{path}/acknowledge", json={}, headers=scene.supervisor),
        409,
        "filing.not_filed",
    )
    unfiled = await client.get(path, headers=scene.supervisor)
    assert (unfiled.status_code, unfiled.json()["status"]) == (200, None)
    filed = await client.post(path, json={"note": "3月积分已公示"}, headers=fair.admin)
    assert filed.status_code == 200, filed.text
    assert (filed.json()["status"], filed.json()["times_filed"]) == ("filed", 1)
    assert_problem(await client.post(path, json={}, headers=fair.admin), 409, "filing.exists")

    # A query needs its note, and a village cannot answer its own filing.
    assert_problem(
        await client.post(f"{path}/query", json={"note": " "}, headers=scene.supervisor),
        422,
        "filing.note_missing",
    )
    assert_problem(
        await client.post(f"{path}/acknowledge", json={}, headers=fair.admin),
        403,
        "auth.forbidden",
    )
    queried = await client.post(
        f"{path}/query", json={"note": "第3户扣分缺照片"}, headers=scene.supervisor
    )
    assert queried.status_code == 200, queried.text
    assert_problem(
        await client.post(f"{path}/acknowledge", json={}, headers=scene.supervisor),
        409,
        "filing.already_answered",
    )
    board = await client.get(
        f"{API}/villages/{fair.village.id}/dashboard",
        params={"year": YEAR, "month": 3},
        headers=scene.supervisor,
    )
    assert board.json()["periods"][0]["filing"]["status"] == "queried"
    assert board.json()["periods"][0]["filing"]["answer_note"] == "第3户扣分缺照片"
    assert board.json()["periods_queried"] == 1
    assert board.json()["periods"][0]["filing"]["days_after_publication"] == 2  # 24th → 26th

    refiled = await client.post(path, json={"note": "已补照片"}, headers=fair.admin)
    assert refiled.status_code == 200, refiled.text
    assert (refiled.json()["status"], refiled.json()["times_filed"]) == ("filed", 2)
    acknowledged = await client.post(f"{path}/acknowledge", json={}, headers=scene.supervisor)
    assert acknowledged.status_code == 200, acknowledged.text
    filing = await _filing(db, fair.period_id)
    assert filing is not None
    assert (filing.status, filing.times_filed) == ("acknowledged", 2)
    actions = (
        (
            await db.execute(
                select(col(AuditEntry.action))
                .where(col(AuditEntry.object_id) == filing.period_id)
                .where(col(AuditEntry.action).startswith("filing."))
                .order_by(col(AuditEntry.at), col(AuditEntry.id))
            )
        )
        .scalars()
        .all()
    )
    assert actions == ["filing.file", "filing.query", "filing.file", "filing.acknowledge"]
    board = await client.get(
        f"{API}/towns/{scene.town.id}/dashboard",
        params={"year": YEAR, "quarter": 1},
        headers=scene.supervisor,
    )
    filed_counts = {v["name"]: v["periods_filed"] for v in board.json()["villages"]}
    assert filed_counts == {"和美村": 1, "人情村": 0}


async def test_only_published_results_are_filed(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    v = await add_village(db, settings, scene.town, "未公示村", FAIR)
    period_id = await run_period(
        client, db, set_clock, v, FAIR, submitted=date(YEAR, 3, 19), published=None
    )
    refused = await client.post(f"{API}/periods/{period_id}/filing", json={}, headers=v.admin)
    assert_problem(refused, 409, "period.wrong_status")
    assert await _filing(db, period_id) is None
    count = select(func.count()).select_from(PeriodFiling)
    assert (await db.execute(count)).scalar_one() == 0
