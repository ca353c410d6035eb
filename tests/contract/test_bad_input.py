"""Values that validate but that PostgreSQL cannot hold get a 4xx problem, never a 500."""

import base64
import json
import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import Household, Role, RuleCategory
from tests import factories as f


@pytest.fixture
async def admin(db: AsyncSession, settings: Settings) -> tuple[f.Village, dict[str, str]]:
    village = await f.create_village(db)
    person = await f.create_person(db, village)
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=village)
    return village, await f.login_headers(db, settings, person)


async def test_a_nul_character_is_refused_and_nothing_written(
    client: httpx.AsyncClient, db: AsyncSession, admin: tuple[f.Village, dict[str, str]]
) -> None:
    village, headers = admin
    before = (await db.execute(select(func.count()).select_from(Household))).scalar_one()
    response = await client.post(
        f"/api/v1/villages/{village.id}/households", json={"number": "A\u0000B"}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid_value"
    assert (await db.execute(select(func.count()).select_from(Household))).scalar_one() == before


async def test_a_nul_character_in_a_login_or_a_cursor_is_a_4xx(
    client: httpx.AsyncClient, admin: tuple[f.Village, dict[str, str]]
) -> None:
    village, headers = admin
    login = await client.post(
        "/api/v1/auth/password/login", json={"username": "a\u0000b", "password": "x"}
    )
    assert 400 <= login.status_code < 500
    cursor = base64.urlsafe_b64encode(json.dumps(["\u0000", str(uuid.uuid4())]).encode()).decode()
    listing = await client.get(
        f"/api/v1/villages/{village.id}/households", params={"cursor": cursor}, headers=headers
    )
    assert 400 <= listing.status_code < 500
    assert listing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("field", ["position", "cap"])
async def test_numbers_beyond_range_are_422(
    client: httpx.AsyncClient, db: AsyncSession, admin: tuple[f.Village, dict[str, str]], field: str
) -> None:
    village, headers = admin
    rule_set, _, _ = await f.create_rule_set(db, village, year=2032, status=f.RuleSetStatus.DRAFT)
    before = (await db.execute(select(func.count()).select_from(RuleCategory))).scalar_one()
    response = await client.post(
        f"/api/v1/rule-sets/{rule_set.id}/categories",
        json={"name": "新类", field: 2**40},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid"
    assert (await db.execute(select(func.count()).select_from(RuleCategory))).scalar_one() == before
