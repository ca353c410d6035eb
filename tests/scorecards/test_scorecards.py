import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Cadence, Outcome, PeriodKind, PeriodStatus
from app.schemas.rules import ScoringMode
from app.services.scoring import is_due
from tests.auth.conftest import assert_problem
from tests.scorecards.conftest import (
    Scene,
    build_scene,
    card,
    line,
    period_status,
    save,
    stored,
)


@pytest.mark.parametrize(
    ("cadence", "kind", "due_in"),
    [
        (Cadence.MONTHLY, PeriodKind.MONTH, set(range(1, 13))),
        (Cadence.QUARTERLY, PeriodKind.MONTH, {3, 6, 9, 12}),
        (Cadence.HALF_YEARLY, PeriodKind.MONTH, {6, 12}),
        (Cadence.YEARLY, PeriodKind.MONTH, {12}),
        (Cadence.MONTHLY, PeriodKind.QUARTER, {1, 2, 3, 4}),
        (Cadence.QUARTERLY, PeriodKind.QUARTER, {1, 2, 3, 4}),
        (Cadence.HALF_YEARLY, PeriodKind.QUARTER, {2, 4}),
        (Cadence.YEARLY, PeriodKind.QUARTER, {4}),
    ],
)
def test_is_due(cadence: Cadence, kind: PeriodKind, due_in: set[int]) -> None:
    numbers = range(1, 13) if kind is PeriodKind.MONTH else range(1, 5)
    assert {n for n in numbers if is_due(cadence, kind, n)} == due_in


async def test_a_card_is_created_and_resaved_with_its_lines_replaced(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    household = scene.group_a[0]
    first = card(line(scene.items["clean"]), line(scene.items["penalty"]), note="初评")
    response = await save(client, scene, household, first, "scorer")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == first["id"]
    assert (body["revision"], body["points"], body["vetoed"], body["note"]) == (
        1,
        10,
        False,
        "初评",
    )
    assert [ln["id"] for ln in body["lines"]] == [ln["id"] for ln in first["lines"]]
    assert await period_status(db, scene.period) is PeriodStatus.SCORING

    # Another phone resends the card with its own card id: the card keeps its first one.
    again = card(line(scene.items["clean"], "finding", note="门前堆物"))
    response = await save(client, scene, household, again, "leader")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == first["id"]
    assert (body["revision"], body["points"], body["note"]) == (2, 0, "")
    assert body["updated_at"] is not None
    assert [(ln["id"], ln["outcome"], ln["note"]) for ln in body["lines"]] == [
        (again["lines"][0]["id"], "finding", "门前堆物")
    ]
    item = scene.items["clean"].id
    assert await stored(db, scene.period) == {
        household.id: [(uuid.UUID(again["lines"][0]["id"]), item, Outcome.FINDING, 0)]
    }
    fetched = await client.get(scene.url(household), headers=scene.headers["admin"])
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert body["scorer_id"] == str(scene.people["leader"])


async def test_a_card_saved_again_unchanged_keeps_its_line_ids(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    household = scene.group_a[0]
    body = card(line(scene.items["clean"]), line(scene.items["veto"]))
    assert (await save(client, scene, household, body, "scorer")).status_code == 200
    response = await save(client, scene, household, body, "scorer")
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 2
    assert len((await stored(db, scene.period))[household.id]) == 2


async def test_getting_a_card_not_yet_saved_is_404(client: httpx.AsyncClient, scene: Scene) -> None:
    response = await client.get(scene.url(scene.group_a[0]), headers=scene.headers["scorer"])
    assert_problem(response, 404, "scorecard.not_found")


ADDITIVE_CASES = [
    ("clean", "compliant", None, 10),
    ("clean", "compliant", 7, 7),
    ("clean", "compliant", 0, 0),
    ("clean", "finding", None, 0),
    ("penalty", "finding", None, -5),
    ("penalty", "finding", -5, -5),
    ("penalty", "compliant", None, 0),
    ("veto", "finding", None, 0),
    ("veto", "compliant", None, 0),
]


@pytest.mark.parametrize(("item", "outcome", "given", "points"), ADDITIVE_CASES)
async def test_additive_points(
    client: httpx.AsyncClient,
    scene: Scene,
    item: str,
    outcome: str,
    given: int | None,
    points: int,
) -> None:
    extra = {} if given is None else {"points": given}
    response = await save(
        client, scene, scene.group_a[0], card(line(scene.items[item], outcome, **extra)), "scorer"
    )
    assert response.status_code == 200, response.text
    assert response.json()["lines"][0]["points"] == points
    assert response.json()["vetoed"] is (item == "veto" and outcome == "finding")


async def test_a_card_adds_its_lines_up(client: httpx.AsyncClient, scene: Scene) -> None:
    body = card(
        line(scene.items["clean"], points=8),
        line(scene.items["penalty"], "finding"),
        line(scene.items["veto"], "finding"),
    )
    response = await save(client, scene, scene.group_a[0], body, "scorer")
    assert response.status_code == 200, response.text
    assert (response.json()["points"], response.json()["vetoed"]) == (3, True)


@pytest.mark.parametrize(
    ("outcome", "given", "points"),
    [("finding", None, -10), ("finding", 4, -4), ("finding", 0, 0), ("compliant", None, 0)],
)
async def test_deductive_points(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    outcome: str,
    given: int | None,
    points: int,
) -> None:
    scene = await build_scene(db, settings, mode=ScoringMode.DEDUCTIVE)
    extra = {} if given is None else {"points": given}
    response = await save(
        client,
        scene,
        scene.group_a[0],
        card(line(scene.items["clean"], outcome, **extra)),
        "scorer",
    )
    assert response.status_code == 200, response.text
    assert response.json()["lines"][0]["points"] == points
    [(_, _, _, stored_points)] = (await stored(db, scene.period))[scene.group_a[0].id]
    assert stored_points == points


@pytest.mark.parametrize(
    ("mode", "item", "outcome", "given"),
    [
        (ScoringMode.ADDITIVE, "clean", "compliant", 11),
        (ScoringMode.ADDITIVE, "clean", "compliant", -1),
        (ScoringMode.ADDITIVE, "clean", "finding", 3),
        (ScoringMode.ADDITIVE, "penalty", "finding", -3),
        (ScoringMode.ADDITIVE, "penalty", "compliant", 2),
        (ScoringMode.ADDITIVE, "veto", "finding", 1),
        (ScoringMode.DEDUCTIVE, "clean", "finding", 11),
        (ScoringMode.DEDUCTIVE, "clean", "finding", -1),
        (ScoringMode.DEDUCTIVE, "clean", "compliant", 4),
    ],
)
async def test_points_out_of_range_write_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    mode: ScoringMode,
    item: str,
    outcome: str,
    given: int,
) -> None:
    scene = await build_scene(db, settings, mode=mode)
    body = card(line(scene.items["clean"]), line(scene.items[item], outcome, points=given))
    if item == "clean":
        body["lines"] = body["lines"][1:]
    response = await save(client, scene, scene.group_a[0], body, "scorer")
    assert_problem(response, 422, "scorecard.points_out_of_range")
    assert await stored(db, scene.period) == {}
    assert await period_status(db, scene.period) is PeriodStatus.OPEN


async def _refusal_case(
    case: str, client: httpx.AsyncClient, db: AsyncSession, scene: Scene, other: Scene
) -> tuple[Any, dict[str, Any], str]:
    """(household, body, caller) for each refusal; `other` is a second village's scene."""
    target = scene.group_a[1]
    clean = scene.items["clean"]
    match case:
        case "period_closed":
            scene.period.status = PeriodStatus.APPROVED
            await db.flush()
            return target, card(line(clean)), "scorer"
        case "own_household":
            return scene.leader_household, card(line(clean)), "leader"
        case "not_participating":
            return scene.suspended, card(line(clean)), "scorer"
        case "other_group":
            return scene.group_b[0], card(line(clean)), "scorer"
        case "other_village":
            return other.group_a[0], card(line(clean)), "admin"
        case "unknown_household":
            return uuid.uuid4(), card(line(clean)), "admin"
        case "bonus_item":
            return target, card(line(clean), line(scene.items["bonus"])), "scorer"
        case "item_of_other_rules":
            return target, card(line(clean), line(other.items["penalty"])), "scorer"
        case "duplicate_item":
            return target, card(line(clean), line(clean, "finding")), "scorer"
        case "not_due":
            return target, card(line(clean), line(scene.items["quarterly"])), "scorer"
        case "line_id_taken":
            taken = card(line(clean))
            response = await save(client, scene, scene.group_a[0], taken, "scorer")
            assert response.status_code == 200, response.text
            return target, card(line(scene.items["penalty"]), taken["lines"][0]), "scorer"
        case "card_id_taken":
            taken = card(line(clean))
            response = await save(client, scene, scene.group_a[0], taken, "scorer")
            assert response.status_code == 200, response.text
            return target, {**card(line(clean)), "id": taken["id"]}, "scorer"
    raise AssertionError(case)


REFUSALS = {
    "period_closed": (409, "period.not_open"),
    "own_household": (403, "scorecard.own_household"),
    "not_participating": (409, "scorecard.household_not_participating"),
    "other_group": (404, "household.not_found"),
    "other_village": (404, "household.not_found"),
    "unknown_household": (404, "household.not_found"),
    "bonus_item": (422, "scorecard.item_not_on_card"),
    "item_of_other_rules": (422, "scorecard.item_not_on_card"),
    "duplicate_item": (422, "scorecard.duplicate_item"),
    "not_due": (422, "scorecard.item_not_due"),
    "line_id_taken": (409, "scorecard.line_id_taken"),
    "card_id_taken": (409, "scorecard.id_taken"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_each_refusal_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene, case: str
) -> None:
    other = await build_scene(db, settings)
    household, body, caller = await _refusal_case(case, client, db, scene, other)
    before = await stored(db, scene.period)
    status_before = await period_status(db, scene.period)
    response = await save(client, scene, household, body, caller)
    assert_problem(response, *REFUSALS[case])
    assert await stored(db, scene.period) == before
    assert await stored(db, other.period) == {}
    assert await period_status(db, scene.period) is status_before
