from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Household, Person
from app.services.activities import check_in_code
from tests import factories as f
from tests.claims.conftest import API, Scene, build_scene


def activity_body(scene: Scene, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "title": "清理河道",
        "place": "村东河边",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "rule_item_id": str(scene.items.volunteer.id),
        "places": 3,
        **overrides,
    }


async def announce(client: httpx.AsyncClient, scene: Scene, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        f"{API}/villages/{scene.village.id}/activities",
        headers=scene.admin,
        json=activity_body(scene, **overrides),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def code_now(settings: Settings, activity: dict[str, Any], **shift: float) -> str:
    at = datetime.now(UTC) + timedelta(**shift)
    return check_in_code(settings, activity["id"], at).code


async def villager_of(
    db: AsyncSession, settings: Settings, scene: Scene
) -> tuple[Household, dict[str, str]]:
    """A villager of a household of their own in the scene's village."""
    household = await f.create_household(db, scene.village, scene.group)
    member = await f.add_member(db, household)
    person = await db.get(Person, member.person_id)
    assert person is not None
    return household, await f.login_headers(db, settings, person)


async def check_in(
    client: httpx.AsyncClient, headers: dict[str, str], activity: dict[str, Any], code: str
) -> httpx.Response:
    return await client.post(
        f"{API}/activities/{activity['id']}/check-ins", headers=headers, json={"code": code}
    )


@pytest.fixture
async def scene(db: AsyncSession, settings: Settings) -> Scene:
    return await build_scene(db, settings)
