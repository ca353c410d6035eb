"""The audit trail as the town and the district read it: scoped, filtered, in cursor pages."""

from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Role
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.supervision.conftest import API, build_scene


async def _all(client: httpx.AsyncClient, headers: dict[str, str], **params: object) -> list[dict]:
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(f"{API}/audit-entries", params=query, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


async def test_town_reads_its_own_trail(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    scene = await build_scene(client, db, settings, set_clock)
    fair, favour = scene.villages["fair"], scene.villages["favour"]
    entries = await _all(client, scene.supervisor)
    # Each village's month: opened, submitted, approved, published.
    assert [e["action"] for e in entries if e["village_id"] == str(fair.village.id)] == [
        "period.open",
        "period.submit",
        "period.approve",
        "period.publish",
    ]
    approvals = await _all(client, scene.supervisor, kind="period.approve")
    assert {e["village_id"] for e in approvals} == {str(fair.village.id), str(favour.village.id)}
    by_domain = await _all(client, scene.supervisor, kind="period", village_id=favour.village.id)
    assert len(by_domain) == 4
    assert by_domain[2]["before"]["status"] == "submitted"
    assert by_domain[2]["after"]["status"] == "approved"
    mine = await _all(client, scene.supervisor, actor_id=fair.admin_person.id)
    assert {e["actor_name"] for e in mine} == {"和美村管理员"}
    assert len(mine) == 4

    # Another town's supervisor sees none of it, even asking for the village by name.
    other = await f.create_person(db)
    await f.grant(db, other, Role.TOWN_SUPERVISOR, town=await f.create_town(db))
    other_headers = await f.login_headers(db, settings, other)
    assert await _all(client, other_headers, village_id=fair.village.id) == []
    assert await _all(client, other_headers, town_id=scene.town.id) == []
    assert_problem(
        await client.get(f"{API}/audit-entries", headers=fair.admin), 403, "auth.forbidden"
    )
    assert_problem(
        await client.get(f"{API}/audit-entries", params={"cursor": "x"}, headers=scene.supervisor),
        400,
        "pagination.bad_cursor",
    )
