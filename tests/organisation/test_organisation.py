import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import AuditEntry, Role, Town, Village, VillageGroup
from tests import factories as f


async def count(db: AsyncSession, model: type) -> int:
    return (await db.execute(select(func.count()).select_from(model))).scalar_one()


@pytest.fixture
async def district(db: AsyncSession, settings: Settings) -> dict[str, str]:
    admin = await f.create_person(db)
    await f.grant(db, admin, Role.DISTRICT_ADMIN)
    return await f.login_headers(db, settings, admin)


async def test_district_admin_creates_a_town_and_it_is_audited(
    client: httpx.AsyncClient, db: AsyncSession, district: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/towns", json={"name": "张堰镇", "district": "金山区"}, headers=district
    )
    assert response.status_code == 201
    body = response.json()
    town = await db.get(Town, body["id"])
    assert town is not None
    assert town.name == "张堰镇"
    assert town.district == "金山区"
    audit = (
        await db.execute(select(AuditEntry).where(AuditEntry.object_id == town.id))
    ).scalar_one()
    assert audit.action == "town.create"
    assert audit.after is not None
    assert audit.after["name"] == "张堰镇"


async def test_duplicate_town_name_is_409_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, district: dict[str, str]
) -> None:
    await f.create_town(db, name="华新镇")
    towns, audits = await count(db, Town), await count(db, AuditEntry)
    response = await client.post("/api/v1/towns", json={"name": "华新镇"}, headers=district)
    assert response.status_code == 409
    assert response.json()["code"] == "town.name_taken"
    assert (await count(db, Town), await count(db, AuditEntry)) == (towns, audits)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 101},
        {"name": "镇", "extra": 1},
        {"name": 5},
    ],
)
async def test_malformed_town_is_422_problem(
    client: httpx.AsyncClient,
    db: AsyncSession,
    district: dict[str, str],
    payload: dict[str, object],
) -> None:
    towns = await count(db, Town)
    response = await client.post("/api/v1/towns", json=payload, headers=district)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "request.invalid"
    assert body["errors"]
    assert await count(db, Town) == towns


async def test_body_that_is_not_json_is_422_problem(
    client: httpx.AsyncClient, district: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/towns",
        content=b"{not json",
        headers={**district, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid"


async def test_villages_page_with_cursors_in_a_stable_order(
    client: httpx.AsyncClient, db: AsyncSession, district: dict[str, str]
) -> None:
    town = await f.create_town(db)
    names = [f"村{i:02d}" for i in range(7)]
    for name in reversed(names):
        await f.create_village(db, town, name=name)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"town_id": str(town.id), "limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/v1/villages", params=params, headers=district)
        assert response.status_code == 200
        page = response.json()
        seen += [v["name"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == names


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "!!!"}, "pagination.bad_cursor"),
        ({"limit": 201}, "request.invalid"),
        ({"limit": 0}, "request.invalid"),
    ],
)
async def test_bad_paging_is_a_4xx_problem(
    client: httpx.AsyncClient, district: dict[str, str], params: dict[str, object], code: str
) -> None:
    response = await client.get("/api/v1/villages", params=params, headers=district)
    assert 400 <= response.status_code < 500
    assert response.json()["code"] == code


async def test_town_supervisor_sees_only_their_towns_villages(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    mine, other = await f.create_town(db), await f.create_town(db)
    my_village = await f.create_village(db, mine)
    await f.create_village(db, other)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=mine)
    headers = await f.login_headers(db, settings, supervisor)
    response = await client.get("/api/v1/villages", headers=headers)
    assert [v["id"] for v in response.json()["items"]] == [str(my_village.id)]
    towns = await client.get("/api/v1/towns", headers=headers)
    assert [t["id"] for t in towns.json()["items"]] == [str(mine.id)]


async def test_village_admin_manages_groups_of_their_village_only(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village, elsewhere = await f.create_village(db), await f.create_village(db)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    headers = await f.login_headers(db, settings, admin)

    created = await client.post(
        f"/api/v1/villages/{village.id}/groups", json={"name": "第一村民小组"}, headers=headers
    )
    assert created.status_code == 201
    duplicate = await client.post(
        f"/api/v1/villages/{village.id}/groups", json={"name": "第一村民小组"}, headers=headers
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "village_group.name_taken"
    outside = await client.post(
        f"/api/v1/villages/{elsewhere.id}/groups", json={"name": "第一村民小组"}, headers=headers
    )
    assert outside.status_code == 404
    assert outside.json()["code"] == "village.not_found"
    groups = (await db.execute(select(VillageGroup.village_id))).scalars().all()
    assert groups.count(village.id) == 1
    assert elsewhere.id not in groups

    renamed = await client.patch(
        f"/api/v1/village-groups/{created.json()['id']}", json={"kind": "area"}, headers=headers
    )
    assert renamed.status_code == 200
    assert renamed.json()["kind"] == "area"


async def test_village_name_is_unique_within_its_town(
    client: httpx.AsyncClient, db: AsyncSession, district: dict[str, str]
) -> None:
    town = await f.create_town(db)
    await f.create_village(db, town, name="秦阳村")
    villages = await count(db, Village)
    response = await client.post(
        f"/api/v1/towns/{town.id}/villages", json={"name": "秦阳村"}, headers=district
    )
    assert response.status_code == 409
    assert response.json()["code"] == "village.name_taken"
    assert await count(db, Village) == villages
    other_town = await f.create_town(db)
    response = await client.post(
        f"/api/v1/towns/{other_town.id}/villages", json={"name": "秦阳村"}, headers=district
    )
    assert response.status_code == 201
