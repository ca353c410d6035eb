"""A household's 积分加减明细 and balance: in seq order, paged, filtered, and only one's own."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import LedgerKind, Role
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import API, THIS_YEAR, Scene, post_entry

LAST_YEAR = THIS_YEAR - 1


async def seed(db: AsyncSession, scene: Scene) -> list[int]:
    """Seven entries of the villager's household among the neighbour's; returns their seqs."""
    mine: list[int] = []
    for points, kind, year in [
        (10, LedgerKind.INSPECTION, LAST_YEAR),
        (5, LedgerKind.BONUS, LAST_YEAR),
        (8, LedgerKind.INSPECTION, THIS_YEAR),
        (-3, LedgerKind.ADJUSTMENT, THIS_YEAR),
        (6, LedgerKind.BONUS, THIS_YEAR),
        (2, LedgerKind.ADJUSTMENT, THIS_YEAR),
        (9, LedgerKind.INSPECTION, THIS_YEAR),
    ]:
        await post_entry(db, scene.neighbour, 1)
        mine.append((await post_entry(db, scene.household, points, kind=kind, year=year))["seq"])
    return mine


async def read_all(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], **query: object
) -> tuple[list[dict[str, object]], int]:
    """Every item, following cursors; and how many pages it took."""
    items: list[dict[str, object]] = []
    params: dict[str, object] = dict(query)
    pages = 0
    while True:
        response = await client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        items += body["items"]
        if body["next_cursor"] is None:
            return items, pages
        params["cursor"] = body["next_cursor"]


async def test_a_villager_pages_through_their_household_ledger_in_order(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    seqs = await seed(db, scene)
    url = f"{API}/households/{scene.household.id}/ledger"

    items, pages = await read_all(client, url, scene.villager_headers, limit=3)

    assert pages == 3
    assert [i["seq"] for i in items] == seqs
    assert {i["household_id"] for i in items} == {str(scene.household.id)}
    assert [i["points"] for i in items] == [10, 5, 8, -3, 6, 2, 9]
    first = await client.get(url, params={"limit": 3}, headers=scene.villager_headers)
    assert [i["seq"] for i in first.json()["items"]] == seqs[:3]


async def test_the_ledger_filters_by_year_and_kind(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    seqs = await seed(db, scene)
    url = f"{API}/households/{scene.household.id}/ledger"

    last_year, _ = await read_all(client, url, scene.admin_headers, year=LAST_YEAR)
    adjustments, _ = await read_all(client, url, scene.admin_headers, kind="adjustment", limit=1)
    both, _ = await read_all(client, url, scene.admin_headers, kind="inspection", year=THIS_YEAR)

    assert [i["seq"] for i in last_year] == seqs[:2]
    assert {i["year"] for i in last_year} == {LAST_YEAR}
    assert [(i["kind"], i["points"]) for i in adjustments] == [
        ("adjustment", -3),
        ("adjustment", 2),
    ]
    assert [i["points"] for i in both] == [8, 9]


async def test_bad_list_parameters_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    url = f"{API}/households/{scene.household.id}/ledger"
    for params, status, code in [
        ({"cursor": "not-a-cursor"}, 400, "pagination.bad_cursor"),
        ({"kind": "cash"}, 422, "request.invalid"),
        ({"year": 1999}, 422, "request.invalid"),
        ({"limit": 0}, 422, "request.invalid"),
        ({"limit": 201}, 422, "request.invalid"),
    ]:
        response = await client.get(url, params=params, headers=scene.villager_headers)
        assert_problem(response, status, code)


async def test_a_villager_reads_their_balance_and_year_score(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await seed(db, scene)
    await post_entry(db, scene.household, -7, kind=LedgerKind.REDEMPTION, counts_score=False)
    url = f"{API}/households/{scene.household.id}/balance"

    this_year = await client.get(url, headers=scene.villager_headers)
    last_year = await client.get(url, params={"year": LAST_YEAR}, headers=scene.villager_headers)

    assert this_year.status_code == 200, this_year.text
    assert this_year.json() == {
        "household_id": str(scene.household.id),
        "year": THIS_YEAR,
        "balance": 37 - 7,
        "year_score": 8 - 3 + 6 + 2 + 9,
    }
    assert last_year.json()["year_score"] == 15
    assert last_year.json()["balance"] == 30  # the balance is not per year


async def test_a_household_without_entries_has_nothing(
    client: httpx.AsyncClient, scene: Scene
) -> None:
    balance = await client.get(
        f"{API}/households/{scene.household.id}/balance", headers=scene.villager_headers
    )
    entries = await client.get(
        f"{API}/households/{scene.household.id}/ledger", headers=scene.villager_headers
    )

    assert (balance.json()["balance"], balance.json()["year_score"]) == (0, 0)
    assert entries.json() == {"items": [], "next_cursor": None}


async def test_nobody_reads_a_ledger_outside_their_scope(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, scene: Scene
) -> None:
    await seed(db, scene)
    other_village = await f.create_village(db)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)
    other_headers = await f.login_headers(db, settings, other_admin)

    for path in ("ledger", "balance"):
        neighbour = await client.get(
            f"{API}/households/{scene.neighbour.id}/{path}", headers=scene.villager_headers
        )
        outsider = await client.get(
            f"{API}/households/{scene.household.id}/{path}", headers=other_headers
        )
        anonymous = await client.get(f"{API}/households/{scene.household.id}/{path}")
        admin = await client.get(
            f"{API}/households/{scene.neighbour.id}/{path}", headers=scene.admin_headers
        )
        assert_problem(neighbour, 404, "household.not_found")
        assert_problem(outsider, 404, "household.not_found")
        assert_problem(anonymous, 401, "auth.token_missing")
        assert admin.status_code == 200, admin.text
