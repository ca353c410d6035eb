"""Check-ins racing for the last places never oversell them, and one person scanning several
times at once checks in once. Commits into a database of its own."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import Activity, ActivityCheckIn
from tests import factories as f
from tests.activities.conftest import announce, check_in, code_now
from tests.auth.conftest import wait_for_lock_waiters
from tests.claims.conftest import Scene, build_scene
from tests.conftest import database_of_its_own

RACERS = 10
PLACES = 3


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "vp_activities") as url:
        engine = create_engine(url, pool_size=RACERS + 4)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def committed(
    engine_of_its_own: AsyncEngine, app: FastAPI, asgi_client: httpx.AsyncClient
) -> AsyncIterator[tuple[httpx.AsyncClient, async_sessionmaker[AsyncSession]]]:
    sessionmaker = create_sessionmaker(engine_of_its_own)
    app.state.sessionmaker = sessionmaker
    try:
        yield asgi_client, sessionmaker
    finally:
        del app.state.sessionmaker


async def _race(
    engine: AsyncEngine, activity: dict[str, Any], calls: list[Any]
) -> list[httpx.Response]:
    """Hold the activity's row so every racer queues behind it, then let them go together."""
    async with engine.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM activity WHERE id = :id FOR UPDATE"), {"id": activity["id"]}
        )
        race = asyncio.gather(*calls)
        await wait_for_lock_waiters(engine, len(calls))
        await transaction.rollback()
        return list(await asyncio.wait_for(race, timeout=30))


async def _state(
    sessionmaker: async_sessionmaker[AsyncSession], activity: dict[str, Any]
) -> tuple[int, int]:
    async with sessionmaker() as session:
        stored = await session.get(Activity, uuid.UUID(activity["id"]))
        assert stored is not None
        rows = await session.execute(
            select(func.count())
            .select_from(ActivityCheckIn)
            .where(ActivityCheckIn.activity_id == stored.id)
        )
        return stored.taken, rows.scalar_one()


async def _scene(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, villagers: int
) -> tuple[Scene, list[dict[str, str]]]:
    async with sessionmaker() as session, session.begin():
        scene = await build_scene(session, settings)
        headers = []
        for _ in range(villagers):
            household = await f.create_household(session, scene.village, scene.group)
            member = await f.add_member(session, household)
            person = await session.get(f.Person, member.person_id)
            assert person is not None
            headers.append(await f.login_headers(session, settings, person))
    return scene, headers


async def test_racing_check_ins_never_exceed_the_places(
    engine_of_its_own: AsyncEngine,
    committed: tuple[httpx.AsyncClient, async_sessionmaker[AsyncSession]],
    settings: Settings,
) -> None:
    client, sessionmaker = committed
    scene, villagers = await _scene(sessionmaker, settings, RACERS)
    activity = await announce(client, scene, places=PLACES)
    code = code_now(settings, activity)
    responses = await _race(
        engine_of_its_own, activity, [check_in(client, h, activity, code) for h in villagers]
    )
    outcomes = Counter(
        r.status_code if r.status_code == 201 else r.json()["code"] for r in responses
    )
    assert outcomes == {201: PLACES, "activity.full": RACERS - PLACES}
    assert await _state(sessionmaker, activity) == (PLACES, PLACES)


async def test_one_person_scanning_at_once_checks_in_once(
    engine_of_its_own: AsyncEngine,
    committed: tuple[httpx.AsyncClient, async_sessionmaker[AsyncSession]],
    settings: Settings,
) -> None:
    client, sessionmaker = committed
    scene, [villager] = await _scene(sessionmaker, settings, 1)
    activity = await announce(client, scene, places=PLACES)
    code = code_now(settings, activity)
    scans = 5
    responses = await _race(
        engine_of_its_own,
        activity,
        [check_in(client, villager, activity, code) for _ in range(scans)],
    )
    outcomes = Counter(
        r.status_code if r.status_code == 201 else r.json()["code"] for r in responses
    )
    assert outcomes == {201: 1, "activity.already_checked_in": scans - 1}
    assert await _state(sessionmaker, activity) == (1, 1)


async def test_a_check_in_queued_behind_the_confirmation_is_refused(
    engine_of_its_own: AsyncEngine,
    committed: tuple[httpx.AsyncClient, async_sessionmaker[AsyncSession]],
    settings: Settings,
) -> None:
    """The check-in reads the activity as announced, then waits for the row while attendance
    is being confirmed; once the confirmation commits it must not take a place."""
    client, sessionmaker = committed
    scene, [villager] = await _scene(sessionmaker, settings, 1)
    activity = await announce(client, scene, places=PLACES)
    code = code_now(settings, activity)
    async with engine_of_its_own.connect() as organiser:
        transaction = await organiser.begin()
        await organiser.execute(
            text("UPDATE activity SET status = 'confirmed', confirmed_at = now() WHERE id = :id"),
            {"id": activity["id"]},
        )
        late = asyncio.ensure_future(check_in(client, villager, activity, code))
        await wait_for_lock_waiters(engine_of_its_own, 1, timeout=30)
        await transaction.commit()
        response = await asyncio.wait_for(late, timeout=30)
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "activity.closed"
    assert await _state(sessionmaker, activity) == (0, 0)
