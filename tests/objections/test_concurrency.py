"""Two handlers ruling the same objection at once: one ruling, one correction.

Ledger entries can never be deleted, so this commits into a database of its own."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    AuditEntry,
    HouseholdPeriodScore,
    LedgerEntry,
    LedgerKind,
    Notification,
    Objection,
    ObjectionStatus,
)
from app.services import ledger
from tests.auth.conftest import wait_for_lock_waiters
from tests.conftest import database_of_its_own
from tests.ledger.conftest import assert_ledger_consistent
from tests.objections.conftest import (
    FEBRUARY,
    PUBLISHED_AT,
    approve_and_publish,
    build_scene,
    file,
    rule,
    scored_period,
)


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "vp_objections") as url:
        engine = create_engine(url, pool_size=6)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture
async def committed_client(
    engine_of_its_own: AsyncEngine, app: FastAPI, asgi_client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    app.state.sessionmaker = create_sessionmaker(engine_of_its_own)
    try:
        yield asgi_client
    finally:
        del app.state.sessionmaker


@pytest.mark.parametrize("decisions", [("uphold", "uphold"), ("uphold", "dismiss")])
async def test_two_handlers_ruling_at_once_make_one_ruling_and_one_correction(
    engine_of_its_own: AsyncEngine,
    committed_client: httpx.AsyncClient,
    settings: Settings,
    set_clock: Callable[[datetime], None],
    decisions: tuple[str, str],
) -> None:
    sessionmaker = create_sessionmaker(engine_of_its_own)
    set_clock(PUBLISHED_AT)
    async with sessionmaker() as session, session.begin():
        scene = await build_scene(session, settings)
        period = await scored_period(
            session,
            scene,
            FEBRUARY,
            {scene.household.id: (7, False), scene.neighbour.id: (10, False)},
        )
    client = committed_client
    await approve_and_publish(client, scene, period)
    filed = (await file(client, scene.villager_headers, period)).json()
    lines = [{"rule_item_id": str(scene.items.inspection.id), "outcome": "compliant"}]

    # Hold the village's chain lock, which a ruling takes first, so both handlers queue behind
    # it; then let them go together.
    async with sessionmaker() as holder, holder.begin():
        await ledger.lock_chain(holder, scene.village.id)
        race = asyncio.gather(
            *(
                rule(
                    client, headers, filed["id"], decision, "复查",
                    **({"lines": lines} if decision == "uphold" else {}),
                )
                for headers, decision in zip(
                    (scene.admin_headers, scene.leader_headers), decisions, strict=True
                )
            )
        )  # fmt: skip
        await wait_for_lock_waiters(engine_of_its_own, 2)
        await holder.rollback()
    responses = await asyncio.wait_for(race, timeout=30)

    outcomes = Counter(
        (r.status_code, r.json()["status"] if r.status_code == 200 else r.json()["code"])
        for r in responses
    )
    winner = next(r.json()["status"] for r in responses if r.status_code == 200)
    assert outcomes == {(200, winner): 1, (409, "objection.already_ruled"): 1}, outcomes

    objection_id = uuid.UUID(filed["id"])
    async with sessionmaker() as session:
        stored = await session.get(Objection, objection_id)
        assert stored is not None
        assert stored.status is ObjectionStatus(winner)
        written = (
            await session.execute(
                select(LedgerEntry.kind, func.count())
                .where(LedgerEntry.source_id == objection_id)
                .group_by(LedgerEntry.kind)
            )
        ).all()
        expected = (
            {(LedgerKind.CORRECTION, 1), (LedgerKind.INSPECTION, 1)}
            if winner == "upheld"
            else set()
        )
        assert set(written) == expected
        score = await session.get(HouseholdPeriodScore, (scene.household.id, period.id))
        assert score is not None
        assert score.score == (10 if winner == "upheld" else 7)
        rulings = (
            await session.execute(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.object_id == objection_id, AuditEntry.action == "objection.rule")
            )
        ).scalar_one()
        assert rulings == 1
        told = (
            await session.execute(
                select(func.count())
                .select_from(Notification)
                .where(Notification.person_id == scene.villager.id)
                .where(Notification.kind == "objection_ruled")
            )
        ).scalar_one()
        assert told == 1
        await assert_ledger_consistent(session, scene.village.id)
