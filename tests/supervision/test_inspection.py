"""抽查: a seeded random sample of a period's scored households, re-scored by the town on the
period's own card; the dashboard shows how far the village's scores were."""

import random
import uuid
from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import AuditEntry, Inspection, InspectionHousehold
from app.services.supervision.inspections import draw_sample
from tests.auth.conftest import assert_problem
from tests.supervision.conftest import API, YEAR, at, build_scene


def test_the_same_seed_draws_the_same_households() -> None:
    population = [uuid.uuid4() for _ in range(50)]
    shuffled = random.Random(1).sample(population, len(population))
    first = draw_sample(population, 5, seed=20310401)
    assert draw_sample(shuffled, 5, seed=20310401) == first
    assert len(set(first)) == 5
    assert set(first) <= set(population)
    assert draw_sample(population, 5, seed=20310402) != first
    # Asking for more than there are takes them all.
    assert draw_sample(population[:3], 5, seed=1) == sorted(population[:3], key=str)


async def test_draw_score_and_distance(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    favour = scene.villages["favour"]
    path = f"{API}/periods/{favour.period_id}/inspection"
    set_clock(at(date(YEAR, 4, 8)))
    undrawn = await client.get(path, headers=scene.supervisor)
    assert (undrawn.status_code, undrawn.json()["drawn_at"]) == (200, None)
    assert_problem(
        await client.post(path, json={"size": 2, "seed": 7}, headers=favour.admin),
        403,
        "auth.forbidden",
    )
    drawn = await client.post(path, json={"size": 2, "seed": 7}, headers=scene.supervisor)
    assert drawn.status_code == 201, drawn.text
    body = drawn.json()
    assert (body["seed"], body["size"], body["inspected"]) == (7, 2, 0)
    sampled = [uuid.UUID(h["household_id"]) for h in body["households"]]
    # Reproducible: the recorded seed draws the same households from the scored ones.
    scored = [h.id for h in favour.households]
    assert sorted(sampled, key=str) == draw_sample(scored, 2, seed=7)
    village_scores = {h.id: s for h, s in zip(favour.households, [10, 10, 10, 5], strict=True)}
    assert {uuid.UUID(h["household_id"]): h["village_score"] for h in body["households"]} == {
        h: village_scores[h] for h in sampled
    }
    assert_problem(
        await client.post(path, json={"size": 2}, headers=scene.supervisor),
        409,
        "inspection.exists",
    )

    # The inspector finds the first sampled household earns 4, not what the village gave.
    first = sampled[0]
    line = {"rule_item_id": str(favour.item.id), "outcome": "compliant", "points": 4}
    scored_one = await client.put(
        f"{path}/households/{first}", json={"lines": [line]}, headers=scene.supervisor
    )
    assert scored_one.status_code == 200, scored_one.text
    assert scored_one.json()["inspector_score"] == 4
    assert scored_one.json()["difference"] == 4 - village_scores[first]

    outsider = next(h.id for h in favour.households if h.id not in sampled)
    assert_problem(
        await client.put(
            f"{path}/households/{outsider}", json={"lines": [line]}, headers=scene.supervisor
        ),
        409,
        "inspection.not_sampled",
    )
    wrong_item = {**line, "rule_item_id": str(uuid.uuid4())}
    assert_problem(
        await client.put(
            f"{path}/households/{first}", json={"lines": [wrong_item]}, headers=scene.supervisor
        ),
        422,
        "scorecard.item_not_on_card",
    )
    too_many = {**line, "points": 11}
    assert_problem(
        await client.put(
            f"{path}/households/{first}", json={"lines": [too_many]}, headers=scene.supervisor
        ),
        422,
        "scorecard.points_out_of_range",
    )
    row = (
        await db.execute(
            select(InspectionHousehold)
            .where(col(InspectionHousehold.household_id) == first)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert row.inspector_score == 4  # the refused saves changed nothing

    board = await client.get(
        f"{API}/villages/{favour.village.id}/dashboard",
        params={"year": YEAR, "quarter": 1},
        headers=scene.supervisor,
    )
    assert board.json()["periods"][0]["inspection"] == {
        "sampled": 2,
        "inspected": 1,
        "mean_abs_difference": float(abs(4 - village_scores[first])),
    }
    read = await client.get(path, headers=scene.supervisor)
    assert read.json()["mean_abs_difference"] == float(abs(4 - village_scores[first]))
    inspection = await db.get(Inspection, uuid.UUID(favour.period_id))
    assert inspection is not None
    assert inspection.seed == 7
    draws = await db.execute(
        select(col(AuditEntry.after)).where(col(AuditEntry.action) == "inspection.draw")
    )
    assert [a["seed"] for a in draws.scalars()] == [7]


async def test_unapproved_periods_are_not_drawn(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    v = scene.villages["fair"]
    set_clock(at(date(YEAR, 4, 1)))
    opened = await client.post(
        f"{API}/villages/{v.village.id}/periods", json={"starts_on": "2031-04-01"}, headers=v.admin
    )
    assert opened.status_code == 201, opened.text
    refused = await client.post(
        f"{API}/periods/{opened.json()['id']}/inspection",
        json={"size": 1},
        headers=scene.supervisor,
    )
    assert_problem(refused, 409, "period.wrong_status")
    assert await db.get(Inspection, uuid.UUID(opened.json()["id"])) is None
