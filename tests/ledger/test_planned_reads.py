"""The phone's reads answered by their plans (app/quick_routes.py) answer what FastAPI's own
handler answers: the same statuses, problems and errors, in the same order of checks."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.quick_routes import plan
from tests.ledger.conftest import API, THIS_YEAR, Scene, post_entry

PLANNED = {
    "get_me",
    "get_active_rules",
    "list_ledger_entries",
    "get_household_balance",
    "get_household_standing",
    "list_shop_items",
    "get_period_results",
    "village_ranking",
    "town_ranking",
}


def _unused() -> None:
    """Overridden, so that FastAPI's own handler answers (QuickRoute steps aside)."""


def test_the_phones_reads_are_planned_and_nothing_that_holds_a_session(app: FastAPI) -> None:
    index = app.router.routes[0]  # app.routing.RouteIndex: the API's routes, by group
    planned = {
        route.operation_id
        for group in index.groups.values()  # type: ignore[attr-defined]
        for route in group.original_router.routes
        if plan(route.dependant) is not None
    }
    assert planned == PLANNED


@pytest.mark.parametrize(
    ("path", "query", "who"),
    [
        ("ledger", {}, "villager"),
        ("ledger", {"limit": "2", "year": str(THIS_YEAR), "kind": "adjustment"}, "villager"),
        ("ledger", {"year": "abc", "limit": "0", "kind": "bogus"}, "villager"),
        ("ledger", {"period_id": "not-a-uuid", "cursor": "%%%"}, "villager"),
        ("ledger", {"cursor": "e30"}, "villager"),
        ("ledger", {"year": "1999"}, None),
        ("ledger", {"year": "1999"}, "garbage"),
        ("balance", {"year": "2101"}, "villager"),
        ("balance", {"year": str(THIS_YEAR)}, "admin"),
        ("standing", {"year": ""}, "villager"),
        ("standing", {}, "neighbour"),
        ("not-a-uuid/balance", {"year": "x"}, "villager"),
    ],
)
async def test_a_planned_read_answers_as_fastapi_would(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    scene: Scene,
    path: str,
    query: dict[str, str],
    who: str | None,
) -> None:
    await post_entry(db, scene.household, 5)
    headers = {
        "villager": scene.villager_headers,
        "admin": scene.admin_headers,
        "garbage": {"Authorization": "Bearer not.a.token"},
        None: {},
    }
    household = scene.neighbour.id if who == "neighbour" else scene.household.id
    if path.startswith("not-a-uuid"):
        url = f"{API}/households/{path}"
    else:
        url = f"{API}/households/{household}/{path}"
    sent = headers["villager" if who == "neighbour" else who]

    planned = await client.get(url, params=query, headers=sent)
    app.dependency_overrides[_unused] = _unused
    try:
        fastapis = await client.get(url, params=query, headers=sent)
    finally:
        app.dependency_overrides.clear()

    assert planned.status_code == fastapis.status_code, planned.text
    assert planned.json() == fastapis.json()
    assert planned.headers["content-type"] == fastapis.headers["content-type"]


async def test_every_error_of_a_read_is_reported_at_once(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    response = await client.get(
        f"{API}/households/{uuid.uuid4()}/ledger",
        params={"year": "abc", "limit": "0", "kind": "bogus"},
        headers=scene.villager_headers,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "request.invalid"
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("query", "limit"),
        ("query", "year"),
        ("query", "kind"),
    }
