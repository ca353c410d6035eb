"""Saves racing with real commits, in a database of this module's own (dropped at the end)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from app.config import Settings
from app.db import create_engine, create_sessionmaker
from app.models import PeriodStatus
from app.services import ledger
from tests.auth.conftest import wait_for_lock_waiters
from tests.conftest import database_of_its_own
from tests.scorecards.conftest import API, Scene, build_scene, card, line, stored

RACERS = 20


@pytest.fixture(scope="module")
async def engine_of_its_own(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with database_of_its_own(database_url, "vp_scorecards") as url:
        engine = create_engine(url, pool_size=RACERS + 5)
        try:
            yield engine
        finally:
            await engine.dispose()


@dataclass
class Committed:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    client: httpx.AsyncClient
    scene: Scene

    async def gather_held(self, *requests: Awaitable[httpx.Response]) -> list[httpx.Response]:
        """Send the requests while another transaction holds the period FOR UPDATE (as an
        approval would, without changing it), so they pile up on the period and are let go
        together into the card."""
        async with self.engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(
                text("SELECT 1 FROM scoring_period WHERE id = :p FOR UPDATE"),
                {"p": self.scene.period.id},
            )

            async def release() -> None:
                await wait_for_lock_waiters(self.engine, len(requests))
                await transaction.rollback()

            *responses, _ = await asyncio.gather(*requests, release())
        return responses

    async def stored(self) -> dict[uuid.UUID, list[tuple[Any, ...]]]:
        async with self.sessionmaker() as session:
            return await stored(session, self.scene.period)


@pytest.fixture
async def committed(
    engine_of_its_own: AsyncEngine,
    app: FastAPI,
    asgi_client: httpx.AsyncClient,
    settings: Settings,
) -> AsyncIterator[Committed]:
    """The shared app, its requests committing into this module's database; a fresh open
    period with nothing saved yet."""
    sessionmaker = create_sessionmaker(engine_of_its_own)
    async with sessionmaker() as session, session.begin():
        scene = await build_scene(session, settings)
        # Already scoring, so the racers are not queued behind the first save's status change.
        scene.period.status = PeriodStatus.SCORING
    app.state.sessionmaker = sessionmaker
    try:
        yield Committed(engine_of_its_own, sessionmaker, asgi_client, scene)
    finally:
        del app.state.sessionmaker


async def test_simultaneous_retries_with_one_key_write_once(committed: Committed) -> None:
    scene = committed.scene
    household = scene.group_a[0]
    body = card(line(scene.items["clean"]), line(scene.items["penalty"], "finding"))
    headers = {**scene.headers["scorer"], "Idempotency-Key": str(uuid.uuid4())}
    responses = await committed.gather_held(
        *(
            committed.client.put(scene.url(household), json=body, headers=headers)
            for _ in range(RACERS)
        )
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    # The same answer (replays come from the stored JSON, so compare values, not bytes).
    assert all(r.json() == responses[0].json() for r in responses)
    assert responses[0].json()["revision"] == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == RACERS - 1
    saved = await committed.stored()
    assert list(saved) == [household.id]
    assert {line_id for line_id, *_ in saved[household.id]} == {
        uuid.UUID(ln["id"]) for ln in body["lines"]
    }


async def test_simultaneous_saves_leave_one_card_with_one_saves_lines(
    committed: Committed,
) -> None:
    """Twenty phones save the same household's card at once, each with its own card id, line
    ids and findings: one card, holding exactly one of the saves' lines."""
    scene = committed.scene
    household = scene.group_a[0]
    items = scene.items
    bodies = [
        card(
            line(items["clean"], "finding" if n % 2 else "compliant", note=f"第{n}次"),
            line(items["penalty"], "finding" if n % 3 else "compliant"),
            *([line(items["veto"])] if n % 4 else []),
        )
        for n in range(RACERS)
    ]
    responses = await committed.gather_held(
        *(
            committed.client.put(scene.url(household), json=body, headers=scene.headers[who])
            for body, who in zip(bodies, ["scorer", "leader"] * (RACERS // 2), strict=True)
        )
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    # One card id throughout (the first save's), revisions 1..20 in the order they landed.
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(r.json()["revision"] for r in responses) == list(range(1, RACERS + 1))
    saved = await committed.stored()
    assert list(saved) == [household.id]
    line_ids = {line_id for line_id, *_ in saved[household.id]}
    last = max(responses, key=lambda r: r.json()["revision"])
    winner = next(b for b in bodies if b["lines"][0]["id"] == last.json()["lines"][0]["id"])
    assert line_ids == {uuid.UUID(ln["id"]) for ln in winner["lines"]}
    assert last.json()["id"] in {b["id"] for b in bodies}


async def test_approval_racing_late_saves_never_posts_half_a_period(committed: Committed) -> None:
    """Late saves queued behind an approval are refused; the approval posts every household's
    card as it stood, and the period's ledger, scores and chain agree."""
    scene, client = committed.scene, committed.client
    admin = scene.headers["admin"]
    households = [*scene.group_a, *scene.group_b, scene.leader_household]
    due = [scene.items[name] for name in ("clean", "penalty", "veto")]
    for household in households:
        saved = await client.put(
            scene.url(household), json=card(*(line(i) for i in due)), headers=admin
        )
        assert saved.status_code == 200, saved.text
    period_url = f"{API}/periods/{scene.period.id}"
    assert (await client.post(f"{period_url}/submit", headers=admin)).status_code == 200

    late = card(
        line(scene.items["clean"], "finding"),
        line(scene.items["penalty"]),
        line(scene.items["veto"]),
    )
    approval, *saves = await committed.gather_held(
        client.post(f"{period_url}/approve", headers=admin),
        *(client.put(scene.url(households[0]), json=late, headers=admin) for _ in range(10)),
    )
    assert approval.status_code == 200, approval.text
    assert {s.status_code for s in saves} == {409}
    assert {s.json()["code"] for s in saves} == {"period.not_open"}

    async with committed.sessionmaker() as session:
        scores = (
            await session.execute(
                text("SELECT household_id, score FROM household_period_score WHERE period_id = :p"),
                {"p": scene.period.id},
            )
        ).all()
        posted = (
            await session.execute(
                text(
                    "SELECT coalesce(sum(points), 0) FROM ledger_entry"
                    " WHERE period_id = :p AND counts_score"
                ),
                {"p": scene.period.id},
            )
        ).scalar_one()
        verified = await ledger.verify_village_chain(session, scene.village.id)
    # Every card compliant: 10 for the clean yard, nothing for the penalty item not incurred.
    assert sorted(score for _, score in scores) == [10] * len(households)
    assert posted == 10 * len(households)
    assert verified.ok
    cards = await committed.stored()
    assert all(outcome == "compliant" for lines in cards.values() for (_, _, outcome, _) in lines)


async def test_two_approvals_at_once_post_the_period_once(committed: Committed) -> None:
    """The second approval waits for the first and then sees the period approved: a clean 409,
    not a second posting of every card."""
    scene, client = committed.scene, committed.client
    admin = scene.headers["admin"]
    due = [scene.items[name] for name in ("clean", "penalty", "veto")]
    for household in [*scene.group_a, *scene.group_b, scene.leader_household]:
        saved = await client.put(
            scene.url(household), json=card(*(line(i) for i in due)), headers=admin
        )
        assert saved.status_code == 200, saved.text
    period_url = f"{API}/periods/{scene.period.id}"
    assert (await client.post(f"{period_url}/submit", headers=admin)).status_code == 200

    responses = await committed.gather_held(
        *(client.post(f"{period_url}/approve", headers=admin) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.json()["code"] == "period.wrong_status"
    async with committed.sessionmaker() as session:
        assert (await ledger.verify_village_chain(session, scene.village.id)).ok
