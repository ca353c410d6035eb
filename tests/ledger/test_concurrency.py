"""Invariant 2 with real commits: simultaneous spends never overdraw, a village's chain stays
gapless whatever the concurrency, villages do not wait for each other, and an entry is
corrected once however many admins press the button.

Ledger entries can never be deleted, so these tests commit into a database of their own,
dropped at the end of the module; nothing is committed into the shared test database.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlmodel import col

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import Household, LedgerEntry, LedgerKind, Role, Village
from app.services import ledger
from tests import factories as f
from tests.auth.conftest import assert_problem, wait_for_lock_waiters
from tests.conftest import database_of_its_own
from tests.ledger.conftest import (
    API,
    THIS_YEAR,
    assert_ledger_consistent,
    audits,
    balance_of,
    post_entry,
)

SPENDERS = 50


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of this module's own, built by the migrations and dropped afterwards."""
    async with database_of_its_own(database_url, "vp_ledger") as url:
        # Up to 60 connections: every racer at once, the holder of a chain and its watcher.
        engine = create_engine(url, pool_size=30)
        try:
            yield engine
        finally:
            await engine.dispose()


@dataclass
class Committed:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    settings: Settings

    async def village(self, households: int) -> tuple[Village, list[Household]]:
        async with self.sessionmaker() as session, session.begin():
            village = await f.create_village(session)
            homes = [await f.create_household(session, village) for _ in range(households)]
        return village, homes

    async def admin_of(self, village: Village) -> dict[str, str]:
        async with self.sessionmaker() as session, session.begin():
            person = await f.create_person(session, village)
            await f.grant(session, person, Role.VILLAGE_ADMIN, village=village)
            return await f.login_headers(session, self.settings, person)

    async def post(self, household: Household, points: int, **kwargs: Any) -> dict[str, Any]:
        """One entry in a transaction of its own, committed."""
        async with self.sessionmaker() as session, session.begin():
            return await post_entry(session, household, points, **kwargs)

    async def consistent(self, village: Village) -> None:
        async with self.sessionmaker() as session:
            await assert_ledger_consistent(session, village.id)

    async def seqs(self, village: Village) -> list[int]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(col(LedgerEntry.seq))
                .where(col(LedgerEntry.village_id) == village.id)
                .order_by(col(LedgerEntry.seq))
            )
            return list(rows.scalars())


@pytest.fixture
async def committed(
    engine_of_its_own: AsyncEngine,
    app: FastAPI,
    asgi_client: httpx.AsyncClient,
    settings: Settings,
) -> AsyncIterator[Committed]:
    """The shared app, its requests committing into this module's database."""
    sessionmaker = create_sessionmaker(engine_of_its_own)
    app.state.sessionmaker = sessionmaker
    try:
        yield Committed(engine_of_its_own, sessionmaker, asgi_client, settings)
    finally:
        del app.state.sessionmaker


class ChainHeld:
    """A transaction holding a village's chain head, so racers pile up behind it and are
    released together."""

    def __init__(self, engine: AsyncEngine, village: Village) -> None:
        self.engine, self.village = engine, village

    async def __aenter__(self) -> "ChainHeld":
        self.conn: AsyncConnection = await self.engine.connect()
        self.transaction = await self.conn.begin()
        locked = await self.conn.scalar(
            text("SELECT last_seq FROM ledger_chain WHERE village_id = :v FOR UPDATE"),
            {"v": self.village.id},
        )
        assert locked is not None, "the village has no chain yet"
        return self

    async def release_when_waiting(self, count: int) -> None:
        await wait_for_lock_waiters(self.engine, count)
        await self.transaction.rollback()

    async def __aexit__(self, *exc: object) -> None:
        if self.transaction.is_active:
            await self.transaction.rollback()
        await self.conn.close()


async def test_simultaneous_spends_never_overdraw(committed: Committed) -> None:
    village, [household] = await committed.village(1)
    admin = await committed.admin_of(village)
    await committed.post(household, 100)
    spend = 7

    async with ChainHeld(committed.engine, village) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/households/{household.id}/adjustments",
                    json={
                        "points": -spend,
                        "reason": "积分兑换",
                        "counts_score": False,
                        "counts_balance": True,
                    },
                    headers=admin,
                )
                for _ in range(SPENDERS)
            ),
            held.release_when_waiting(SPENDERS),
        )

    won = [r for r in responses if r.status_code == 201]
    assert len(won) == 100 // spend, [r.text for r in responses if r.status_code != 409]
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409, "ledger.insufficient_balance")
    async with committed.sessionmaker() as session:
        assert await balance_of(session, household.id) == 100 % spend
        # Each audit saw the balance its own entry started from, though all raced.
        recorded = await audits(session, village.id, "ledger.adjust")
    assert len(recorded) == len(won)
    steps = sorted(
        (a.before["balance"], a.after["balance"])
        for a in recorded
        if a.before is not None and a.after is not None
    )
    assert steps == [(100 - spend * k, 100 - spend * (k + 1)) for k in range(len(won))][::-1]
    assert await committed.seqs(village) == list(range(1, len(won) + 2))
    await committed.consistent(village)


async def test_simultaneous_posts_make_a_gapless_chain(committed: Committed) -> None:
    """Forty transactions start on a village with no chain yet, each posting two entries."""
    village, [first, second] = await committed.village(2)
    posts = 40

    async def post_pair(n: int) -> None:
        async with committed.sessionmaker() as session, session.begin():
            await ledger.post(
                session,
                village.id,
                [
                    ledger.NewEntry(
                        household_id=h.id,
                        kind=LedgerKind.BONUS,
                        points=points,
                        counts_score=True,
                        counts_balance=True,
                        year=THIS_YEAR,
                        source_type="test",
                    )
                    for h, points in ((first, n + 1), (second, 1))
                ],
            )

    await asyncio.gather(*(post_pair(n) for n in range(posts)))

    assert await committed.seqs(village) == list(range(1, 2 * posts + 1))
    async with committed.sessionmaker() as session:
        chain = await ledger.verify_village_chain(session, village.id)
        assert (chain.ok, chain.entries_checked) == (True, 2 * posts)
        assert await balance_of(session, first.id) == posts * (posts + 1) // 2
        assert await balance_of(session, second.id) == posts
    await committed.consistent(village)


async def test_villages_do_not_wait_for_each_other(committed: Committed) -> None:
    held_village, [held_home] = await committed.village(1)
    free_village, [free_home] = await committed.village(1)
    await committed.post(held_home, 1)
    racers = 10

    async with ChainHeld(committed.engine, held_village) as held:
        waiting = [asyncio.create_task(committed.post(held_home, 1)) for _ in range(racers)]
        # The other village's posts all finish while the first village's chain is held.
        await asyncio.wait_for(
            asyncio.gather(*(committed.post(free_home, 2) for _ in range(racers))), timeout=10
        )
        assert not any(task.done() for task in waiting)
        await held.release_when_waiting(racers)
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)

    assert await committed.seqs(held_village) == list(range(1, racers + 2))
    assert await committed.seqs(free_village) == list(range(1, racers + 1))
    await committed.consistent(held_village)
    await committed.consistent(free_village)


async def test_simultaneous_corrections_reverse_an_entry_once(committed: Committed) -> None:
    village, [household] = await committed.village(1)
    admin = await committed.admin_of(village)
    entry = await committed.post(household, 30)
    racers = 10

    async with ChainHeld(committed.engine, village) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/ledger-entries/{entry['id']}/correction",
                    json={"reason": "录入错误"},
                    headers=admin,
                )
                for _ in range(racers)
            ),
            held.release_when_waiting(racers),
        )

    assert sorted(r.status_code for r in responses) == [201] + [409] * (racers - 1)
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, "ledger.already_corrected")
    async with committed.sessionmaker() as session:
        assert await balance_of(session, household.id) == 0
        assert len(await audits(session, village.id, "ledger.correct")) == 1
    assert await committed.seqs(village) == [1, 2]
    await committed.consistent(village)


async def test_simultaneous_retries_with_one_key_write_once(committed: Committed) -> None:
    """A phone on a bad line sends the same adjustment 20 times at once: one entry, one answer."""
    village, [household] = await committed.village(1)
    admin = await committed.admin_of(village)
    await committed.post(household, 1)
    headers = {**admin, "Idempotency-Key": str(uuid.uuid4())}
    async with ChainHeld(committed.engine, village) as held:
        *responses, _ = await asyncio.gather(
            *(
                committed.client.post(
                    f"{API}/households/{household.id}/adjustments",
                    json={"points": 4, "reason": "补记志愿服务"},
                    headers=headers,
                )
                for _ in range(20)
            ),
            # The first holds the key's row and waits for the chain; the others wait for it.
            held.release_when_waiting(20),
        )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    async with committed.sessionmaker() as session:
        assert await balance_of(session, household.id) == 5
    assert len(await committed.seqs(village)) == 2
    await committed.consistent(village)
