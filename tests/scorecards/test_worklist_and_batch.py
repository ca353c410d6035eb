import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.models import IdempotencyRecord
from tests.auth.conftest import assert_problem
from tests.scorecards.conftest import API, Scene, card, line, period_status, save, stored


async def test_a_group_limited_scorer_sees_their_groups_with_each_cards_state(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    first, second = scene.group_a
    items = scene.items
    complete = card(line(items["clean"]), line(items["penalty"]), line(items["veto"]))
    assert (await save(client, scene, first, complete, "scorer")).status_code == 200
    response = await client.get(scene.worklist_url, headers=scene.headers["scorer"])
    assert response.status_code == 200, response.text
    body = response.json()
    # Due in February: monthly inspection and veto items; not the quarterly one, nor bonuses.
    assert [i["code"] for i in body["items"]] == ["1.1", "2.1", "3.1"]
    assert body["items"][0] == {
        "id": str(items["clean"].id),
        "code": "1.1",
        "title": items["clean"].title,
        "points": 10,
        "kind": "inspection",
        "category_name": "环境卫生",
    }
    assert body["scoring_mode"] == "additive"
    # Group A only, by number, without the suspended household.
    rows = body["households"]
    assert [r["household_id"] for r in rows] == [str(first.id), str(second.id)]
    assert [r["card_status"] for r in rows] == ["complete", "none"]
    assert rows[0]["card_id"] == complete["id"]
    assert rows[0]["card_updated_at"] is not None
    assert rows[1]["card_id"] is None
    assert all(r["head_name"] for r in rows)

    partial = card(line(items["clean"]))
    assert (await save(client, scene, second, partial, "scorer")).status_code == 200
    response = await client.get(scene.worklist_url, headers=scene.headers["scorer"])
    assert [r["card_status"] for r in response.json()["households"]] == ["complete", "partial"]


async def test_a_village_wide_leader_sees_the_village_but_not_their_own_household(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    response = await client.get(scene.worklist_url, headers=scene.headers["leader"])
    assert response.status_code == 200, response.text
    listed = {r["household_id"] for r in response.json()["households"]}
    assert listed == {str(h.id) for h in [*scene.group_a, *scene.group_b]}


async def test_villagers_and_supervisors_are_refused_and_other_villages_do_not_see_it(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    household = scene.group_a[1]
    calls = [
        ("GET", scene.worklist_url, None),
        ("GET", scene.url(household), None),
        ("PUT", scene.url(household), card(line(scene.items["clean"]))),
        (
            "POST",
            scene.batch_url,
            {"cards": [{**card(line(scene.items["clean"])), "household_id": str(household.id)}]},
        ),
    ]
    for method, url, body in calls:
        for who in ("villager", "supervisor"):
            response = await client.request(method, url, json=body, headers=scene.headers[who])
            assert_problem(response, 403, "auth.forbidden")
        response = await client.request(method, url, json=body, headers=scene.headers["outsider"])
        assert_problem(response, 404, "period.not_found")
    assert await stored(db, scene.period) == {}


async def test_an_unknown_period_is_404(client: httpx.AsyncClient, scene: Scene) -> None:
    response = await client.get(
        f"{API}/periods/{uuid.uuid4()}/worklist", headers=scene.headers["admin"]
    )
    assert_problem(response, 404, "period.not_found")


def batch_card(scene: Scene, household_index: int, *outcomes: str) -> dict[str, object]:
    household = [*scene.group_a, *scene.group_b][household_index]
    return {
        **card(*(line(item, o) for item, o in zip(scene.items.values(), outcomes, strict=False))),
        "household_id": str(household.id),
    }


async def test_a_batch_saves_every_card(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    cards = [batch_card(scene, 0, "compliant"), batch_card(scene, 1, "finding", "finding")]
    response = await client.post(
        scene.batch_url, json={"cards": cards}, headers=scene.headers["scorer"]
    )
    assert response.status_code == 200, response.text
    saved = response.json()["cards"]
    assert [c["id"] for c in saved] == [c["id"] for c in cards]
    assert [c["points"] for c in saved] == [10, -5]
    assert set(await stored(db, scene.period)) == {h.id for h in scene.group_a}


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ("other_group", 404, "household.not_found"),
        ("not_due", 422, "scorecard.item_not_due"),
        ("line_taken", 409, "scorecard.line_id_taken"),
    ],
)
async def test_one_bad_card_saves_none(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, bad: str, status: int, code: str
) -> None:
    good = batch_card(scene, 0, "compliant")
    other = batch_card(scene, 1, "compliant")
    if bad == "other_group":
        other["household_id"] = str(scene.group_b[0].id)
    elif bad == "not_due":
        other["lines"] = [line(scene.items["quarterly"])]
    else:
        earlier = card(line(scene.items["clean"]))
        assert (await save(client, scene, scene.group_b[0], earlier, "leader")).status_code == 200
        other["lines"] = [earlier["lines"][0]]
    before = await stored(db, scene.period)
    status_before = await period_status(db, scene.period)
    response = await client.post(
        scene.batch_url, json={"cards": [good, other]}, headers=scene.headers["scorer"]
    )
    assert_problem(response, status, code)
    assert await stored(db, scene.period) == before
    assert await period_status(db, scene.period) is status_before


@pytest.mark.parametrize(
    "cards",
    [
        pytest.param([], id="empty"),
        pytest.param("twice", id="one household twice"),
        pytest.param("line twice", id="one line id on two cards"),
    ],
)
async def test_malformed_batches_are_422(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, cards: object
) -> None:
    first = batch_card(scene, 0, "compliant")
    if cards == "twice":
        cards = [first, {**batch_card(scene, 0, "finding")}]
    elif cards == "line twice":
        second = batch_card(scene, 1, "compliant")
        second["lines"] = first["lines"]
        cards = [first, second]
    response = await client.post(
        scene.batch_url, json={"cards": cards}, headers=scene.headers["scorer"]
    )
    assert_problem(response, 422, "request.invalid")
    assert await stored(db, scene.period) == {}


async def test_a_retried_batch_writes_once_and_answers_the_same(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    headers = {**scene.headers["scorer"], "Idempotency-Key": str(uuid.uuid4())}
    body = {"cards": [batch_card(scene, 0, "compliant"), batch_card(scene, 1, "finding")]}
    first = await client.post(scene.batch_url, json=body, headers=headers)
    second = await client.post(scene.batch_url, json=body, headers=headers)
    assert first.status_code == second.status_code == 200, second.text
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert [c["revision"] for c in second.json()["cards"]] == [1, 1]
    # Without the key the same upload is a resave: revision 2.
    third = await client.post(scene.batch_url, json=body, headers=scene.headers["scorer"])
    assert [c["revision"] for c in third.json()["cards"]] == [2, 2]
    records = await db.scalar(
        select(func.count())
        .select_from(IdempotencyRecord)
        .where(col(IdempotencyRecord.key) == headers["Idempotency-Key"])
    )
    assert records == 1


async def test_a_retried_save_writes_once_and_answers_the_same(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    headers = {**scene.headers["scorer"], "Idempotency-Key": str(uuid.uuid4())}
    body = card(line(scene.items["clean"]))
    url = scene.url(scene.group_a[0])
    first = await client.put(url, json=body, headers=headers)
    second = await client.put(url, json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["revision"] == 1
    assert second.headers["idempotent-replayed"] == "true"


async def test_a_huge_offline_batch_is_a_4xx_not_a_500(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    """More line ids than PostgreSQL takes parameters in one statement (32,767)."""
    cards = [
        {
            "household_id": str(scene.group_a[0].id),
            "id": str(uuid.uuid4()),
            "lines": [
                {"id": str(uuid.uuid4()), "rule_item_id": str(uuid.uuid4()), "outcome": "compliant"}
                for _ in range(170)
            ],
        }
        for _ in range(200)
    ]
    response = await client.post(
        scene.batch_url, json={"cards": cards}, headers=scene.headers["scorer"]
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
