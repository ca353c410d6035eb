"""A hot read's caller is read once and then checked inside each read's own statement
(app/security.py KnownCallers, CheckedConnection): every change to what a caller is read from
must still apply to the very next read, whichever read it is and whether it finds anything."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import HouseholdMember, LoginSession, Role, RoleGrant, Village
from app.security import ACCESS, AccessClaims, claim_uuid, decode_token
from tests import factories as f


@pytest.fixture
async def village(db: AsyncSession) -> Village:
    return await f.create_village(db)


@pytest.fixture
async def admin(db: AsyncSession, settings: Settings, village: Village) -> dict[str, str]:
    person = await f.create_person(db, village)
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=village)
    return await f.login_headers(db, settings, person)


def remembered(app: FastAPI, settings: Settings, headers: dict[str, str]) -> object:
    claims = decode_token(settings, headers["Authorization"].removeprefix("Bearer "), kind=ACCESS)
    known = app.state.callers.get(
        AccessClaims(claim_uuid(claims, "sub"), claim_uuid(claims, "sid"), claims["exp"])
    )
    return None if known is None else known[1]


async def versions(db: AsyncSession, person_id: uuid.UUID) -> list[int]:
    found = await db.execute(
        select(LoginSession.caller_version)
        .where(LoginSession.person_id == person_id)
        .order_by(LoginSession.created_at, LoginSession.id)
    )
    return list(found.scalars())


async def test_a_logout_refuses_the_next_read_of_a_remembered_caller(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
    db: AsyncSession,
    settings: Settings,
    village: Village,
) -> None:
    app, client = app_and_client
    person = await f.create_person(db, village)
    household = await f.create_household(db, village)
    await f.add_member(db, household, person, is_head=True)
    headers = await f.login_headers(db, settings, person)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    assert remembered(app, settings, headers) == 0
    balance = f"/api/v1/households/{household.id}/balance"
    assert (await client.get(balance, headers=headers)).status_code == 200

    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    after = await client.get(balance, headers=headers)
    assert after.status_code == 401
    assert after.json()["code"] == "auth.session_revoked"
    assert remembered(app, settings, headers) is None


async def test_a_revoked_grant_applies_to_the_next_read_that_then_finds_nothing(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
    db: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    village: Village,
) -> None:
    app, client = app_and_client
    scorer = await f.create_person(db, village)
    grant = await f.grant(db, scorer, Role.SCORER, village=village)
    headers = await f.login_headers(db, settings, scorer)
    household = await f.create_household(db, village)
    balance = f"/api/v1/households/{household.id}/balance"
    assert (await client.get(balance, headers=headers)).status_code == 200
    assert (await client.get(balance, headers=headers)).status_code == 200
    assert remembered(app, settings, headers) == 0

    revoked = await client.delete(f"/api/v1/role-grants/{grant.id}", headers=admin)
    assert revoked.status_code == 200
    after = await client.get(balance, headers=headers)
    assert after.status_code == 404
    assert after.json()["code"] == "household.not_found"
    # Read afresh, at the version the revocation raised it to.
    assert remembered(app, settings, headers) == 1


async def test_a_new_grant_applies_to_the_next_read_that_finds_something(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
    db: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    village: Village,
) -> None:
    app, client = app_and_client
    person = await f.create_person(db, village)
    headers = await f.login_headers(db, settings, person)
    assert (await client.get("/api/v1/me", headers=headers)).json()["grants"] == []
    granted = await client.post(
        "/api/v1/role-grants",
        json={"person_id": str(person.id), "role": "scorer", "village_id": str(village.id)},
        headers=admin,
    )
    assert granted.status_code == 201
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200
    assert [(g["role"], g["village_id"]) for g in me.json()["grants"]] == [
        ("scorer", str(village.id))
    ]
    assert remembered(app, settings, headers) == 1


async def test_a_household_move_applies_to_the_next_read(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
    db: AsyncSession,
    settings: Settings,
    village: Village,
) -> None:
    app, client = app_and_client
    person = await f.create_person(db, village)
    first, second = await f.create_household(db, village), await f.create_household(db, village)
    await f.add_member(db, first, person, is_head=True)
    headers = await f.login_headers(db, settings, person)
    assert (await client.get(f"/api/v1/households/{first.id}/balance", headers=headers)).is_success
    await db.execute(
        update(HouseholdMember)
        .where(HouseholdMember.person_id == person.id)
        .values(household_id=second.id)
    )
    await db.flush()
    old = await client.get(f"/api/v1/households/{first.id}/balance", headers=headers)
    assert old.status_code == 404
    new = await client.get(f"/api/v1/households/{second.id}/balance", headers=headers)
    assert new.status_code == 200
    assert new.json()["household_id"] == str(second.id)


async def test_a_read_that_finds_nothing_for_an_unchanged_caller_keeps_its_answer(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
    db: AsyncSession,
    settings: Settings,
    village: Village,
) -> None:
    app, client = app_and_client
    person = await f.create_person(db, village)
    headers = await f.login_headers(db, settings, person)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    elsewhere = await f.create_household(db, await f.create_village(db))
    for _ in range(2):
        refused = await client.get(f"/api/v1/households/{elsewhere.id}/balance", headers=headers)
        assert refused.status_code == 404
        assert refused.json()["code"] == "household.not_found"
    assert remembered(app, settings, headers) == 0


async def test_the_database_raises_the_version_of_each_changed_callers_live_logins(
    db: AsyncSession, settings: Settings, village: Village
) -> None:
    person, other = await f.create_person(db, village), await f.create_person(db, village)
    for someone in (person, person, other):
        await f.login_headers(db, settings, someone)
    ended = (
        (await db.execute(select(LoginSession.id).where(LoginSession.person_id == person.id)))
        .scalars()
        .first()
    )
    await db.execute(
        update(LoginSession).where(LoginSession.id == ended).values(revoked_at=text("now()"))
    )
    grant = await f.grant(db, person, Role.SCORER, village=village)
    assert sorted(await versions(db, person.id)) == [0, 1]
    await db.execute(
        update(RoleGrant).where(RoleGrant.id == grant.id).values(revoked_at=text("now()"))
    )
    household = await f.create_household(db, village)
    await f.add_member(db, household, person)
    await db.execute(
        update(Village).where(Village.id == village.id).values(town_id=village.town_id)
    )
    await db.execute(text("DELETE FROM household_member WHERE person_id = :p"), {"p": person.id})
    # Live: one per change (a grant, its revocation, joining a household, the village's town,
    # leaving); the ended login stays as it ended; the other person's are untouched.
    assert sorted(await versions(db, person.id)) == [0, 5]
    assert await versions(db, other.id) == [0]
