"""Reviewers racing to the quorum decide a claim once and post its bonus once.

Ledger entries can never be deleted, so this commits into a database of its own."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    BonusAward,
    Claim,
    ClaimReview,
    ClaimStatus,
    HouseholdPeriodScore,
    LedgerEntry,
    PeriodStatus,
    Role,
)
from app.schemas.rules import ClaimPolicy, Policy
from app.services import ledger
from tests import factories as f
from tests.auth.conftest import wait_for_lock_waiters
from tests.claims.conftest import API, TODAY, build_scene, review, submit
from tests.claims.test_periods import add_card, add_period
from tests.conftest import database_of_its_own
from tests.ledger.conftest import assert_ledger_consistent

RACERS = 8


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "vp_claims") as url:
        engine = create_engine(url, pool_size=RACERS + 4)
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


async def test_racing_reviewers_post_the_bonus_once(
    engine_of_its_own: AsyncEngine, committed_client: httpx.AsyncClient, settings: Settings
) -> None:
    sessionmaker = create_sessionmaker(engine_of_its_own)
    policy = Policy(claims=ClaimPolicy(review_quorum=3, leader_decides_alone=False))
    async with sessionmaker() as session, session.begin():
        scene = await build_scene(session, settings, policy=policy)
        racers = []
        for _ in range(RACERS):
            person = await f.create_person(session, scene.village)
            await f.grant(session, person, Role.SCORER, village=scene.village)
            racers.append(await f.login_headers(session, settings, person))
    client = committed_client
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    assert (await review(client, scene.scorers[0], claim["id"])).status_code == 200

    # Hold the claim's row so every racer is queued behind it, then let them go together.
    async with engine_of_its_own.connect() as holder:
        transaction = await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM claim WHERE id = :id FOR UPDATE"), {"id": claim["id"]}
        )
        race = asyncio.gather(*(review(client, h, claim["id"]) for h in racers))
        await wait_for_lock_waiters(engine_of_its_own, RACERS)
        await transaction.rollback()
        responses = await asyncio.wait_for(race, timeout=30)

    outcomes = Counter(
        (r.status_code, r.json()["status"] if r.status_code == 200 else r.json()["code"])
        for r in responses
    )
    # One more approval stays pending, the next reaches the quorum, the rest find it decided.
    assert outcomes == {
        (200, "pending"): 1,
        (200, "approved"): 1,
        (409, "claim.already_decided"): RACERS - 2,
    }
    claim_id = uuid.UUID(claim["id"])
    async with sessionmaker() as session:
        stored = await session.get(Claim, claim_id)
        assert stored is not None
        assert stored.status is ClaimStatus.APPROVED
        entries = (
            await session.execute(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.source_id == claim_id)
            )
        ).scalar_one()
        assert entries == 1
        awards = (
            await session.execute(
                select(func.count()).select_from(BonusAward).where(BonusAward.source_id == claim_id)
            )
        ).scalar_one()
        assert awards == 1
        reviews = (
            await session.execute(
                select(func.count())
                .select_from(ClaimReview)
                .where(ClaimReview.claim_id == claim_id)
            )
        ).scalar_one()
        assert reviews == 3
        await assert_ledger_consistent(session, scene.village.id)


@pytest.mark.parametrize("round_", range(3))
async def test_a_bonus_racing_the_periods_approval_is_counted_or_lands_elsewhere(
    engine_of_its_own: AsyncEngine,
    committed_client: httpx.AsyncClient,
    settings: Settings,
    round_: int,
) -> None:
    """The approval of a claim and of its activity's period, let go together from behind the
    village's chain lock: the bonus is either in the period and in its score, or in no period,
    never in the period but missing from its score."""
    sessionmaker = create_sessionmaker(engine_of_its_own)
    async with sessionmaker() as session, session.begin():
        scene = await build_scene(session, settings)
        period = await add_period(session, scene, TODAY, PeriodStatus.SUBMITTED)
        await add_card(session, scene, period, scene.household, 7)
    client = committed_client
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()

    async with sessionmaker() as holder, holder.begin():
        await ledger.lock_chain(holder, scene.village.id)
        race = asyncio.gather(
            review(client, scene.leader, claim["id"]),
            client.post(f"{API}/periods/{period.id}/approve", headers=scene.admin),
        )
        await wait_for_lock_waiters(engine_of_its_own, 2)
        await holder.rollback()
    decided, approved = await asyncio.wait_for(race, timeout=30)
    assert (decided.status_code, approved.status_code) == (200, 200), (decided.text, approved.text)

    async with sessionmaker() as session:
        entry = (
            await session.execute(
                select(LedgerEntry).where(LedgerEntry.source_id == uuid.UUID(claim["id"]))
            )
        ).scalar_one()
        score = await session.get(HouseholdPeriodScore, (scene.household.id, period.id))
        assert score is not None
        assert (entry.period_id, score.score) in {(period.id, 7 + 2), (None, 7)}
        await assert_ledger_consistent(session, scene.village.id)
