import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import InviteCode, Person, Role, RoleGrant, Village
from tests import factories as f


@pytest.fixture
async def village(db: AsyncSession) -> Village:
    return await f.create_village(db)


@pytest.fixture
async def admin(db: AsyncSession, settings: Settings, village: Village) -> dict[str, str]:
    person = await f.create_person(db, village)
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=village)
    return await f.login_headers(db, settings, person)


async def active_grants(db: AsyncSession, person_id: object) -> list[RoleGrant]:
    rows = await db.execute(
        select(RoleGrant).where(RoleGrant.person_id == person_id, RoleGrant.revoked_at.is_(None))  # type: ignore[union-attr]
    )
    return list(rows.scalars())


async def test_staff_created_with_credentials_can_log_in(
    client: httpx.AsyncClient, db: AsyncSession, admin: dict[str, str], village: Village
) -> None:
    created = await client.post(
        "/api/v1/persons",
        json={
            "name": "王评分",
            "phone": "13900001111",
            "username": "wang.scorer",
            "password": "s3cret-pass",
        },
        headers=admin,
    )
    assert created.status_code == 201
    assert created.json()["village_id"] == str(village.id)
    person = await db.get(Person, created.json()["id"])
    assert person is not None
    assert person.password_hash
    assert "s3cret-pass" not in person.password_hash
    login = await client.post(
        "/api/v1/auth/password/login", json={"username": "wang.scorer", "password": "s3cret-pass"}
    )
    assert login.status_code == 200
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    )
    assert me.json()["person"]["name"] == "王评分"
    assert me.json()["person"]["phone"] == "13900001111"
    assert "password_hash" not in created.text


async def test_username_must_be_unique(
    client: httpx.AsyncClient, db: AsyncSession, admin: dict[str, str], village: Village
) -> None:
    await f.create_person(db, village, username="taken", password="whatever-1")
    persons = (await db.execute(select(func.count()).select_from(Person))).scalar_one()
    response = await client.post(
        "/api/v1/persons",
        json={"name": "重名", "username": "taken", "password": "long-enough"},
        headers=admin,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "person.username_taken"
    assert (await db.execute(select(func.count()).select_from(Person))).scalar_one() == persons


async def test_village_admin_grants_scorer_limited_to_a_group(
    client: httpx.AsyncClient, db: AsyncSession, admin: dict[str, str], village: Village
) -> None:
    group = await f.create_group(db, village)
    person = await f.create_person(db, village)
    response = await client.post(
        "/api/v1/role-grants",
        json={
            "person_id": str(person.id),
            "role": "scorer",
            "village_id": str(village.id),
            "village_group_ids": [str(group.id)],
        },
        headers=admin,
    )
    assert response.status_code == 201
    [grant] = await active_grants(db, person.id)
    assert (grant.role, grant.village_id, grant.town_id, grant.village_group_ids) == (
        Role.SCORER,
        village.id,
        village.town_id,
        [group.id],
    )
    again = await client.post(
        "/api/v1/role-grants",
        json={"person_id": str(person.id), "role": "scorer", "village_id": str(village.id)},
        headers=admin,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "role_grant.duplicate"
    assert len(await active_grants(db, person.id)) == 1


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"role": "village_admin"}, 403, "role_grant.not_allowed"),
        ({"role": "district_admin"}, 422, "role_grant.bad_scope"),
        ({"role": "district_admin", "village_id": None}, 403, "role_grant.not_allowed"),
        ({"role": "shop_attendant", "village_group_ids": "GROUP"}, 422, "role_grant.bad_scope"),
        (
            {"role": "scorer", "village_group_ids": "FOREIGN"},
            422,
            "role_grant.group_not_in_village",
        ),
        ({"role": "scorer", "village_id": None}, 422, "role_grant.bad_scope"),
        ({"role": "mayor"}, 422, "request.invalid"),
    ],
)
async def test_refused_grants_write_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    admin: dict[str, str],
    village: Village,
    payload: dict[str, object],
    status: int,
    code: str,
) -> None:
    person = await f.create_person(db, village)
    own_group = await f.create_group(db, village)
    foreign_group = await f.create_group(db, await f.create_village(db))
    body: dict[str, object] = {
        "person_id": str(person.id),
        "village_id": str(village.id),
        **payload,
    }
    if body.get("village_group_ids") == "GROUP":
        body["village_group_ids"] = [str(own_group.id)]
    if body.get("village_group_ids") == "FOREIGN":
        body["village_group_ids"] = [str(foreign_group.id)]
    response = await client.post("/api/v1/role-grants", json=body, headers=admin)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert await active_grants(db, person.id) == []


async def test_revoking_a_role_takes_effect_on_the_next_request(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    village: Village,
) -> None:
    scorer = await f.create_person(db, village)
    grant = await f.grant(db, scorer, Role.SCORER, village=village)
    headers = await f.login_headers(db, settings, scorer)
    listing = f"/api/v1/villages/{village.id}/households"
    assert (await client.get(listing, headers=headers)).status_code == 200

    revoked = await client.delete(f"/api/v1/role-grants/{grant.id}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"]
    after = await client.get(listing, headers=headers)
    assert after.status_code == 403
    assert after.json()["code"] == "auth.forbidden"
    twice = await client.delete(f"/api/v1/role-grants/{grant.id}", headers=admin)
    assert twice.status_code == 409
    assert twice.json()["code"] == "role_grant.already_revoked"


async def test_district_admin_appoints_a_town_supervisor(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    district = await f.create_person(db)
    await f.grant(db, district, Role.DISTRICT_ADMIN)
    headers = await f.login_headers(db, settings, district)
    town = await f.create_town(db)
    person = await f.create_person(db)
    response = await client.post(
        "/api/v1/role-grants",
        json={"person_id": str(person.id), "role": "town_supervisor", "town_id": str(town.id)},
        headers=headers,
    )
    assert response.status_code == 201
    me = await client.get("/api/v1/me", headers=await f.login_headers(db, settings, person))
    assert [(g["role"], g["town_id"]) for g in me.json()["grants"]] == [
        ("town_supervisor", str(town.id))
    ]


async def test_town_supervisor_sees_masked_phones(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    villager = await f.create_person(db, village, phone="13712345678")
    supervisor = await f.create_person(db)
    town = await db.get(f.Town, village.town_id)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    response = await client.get(
        f"/api/v1/persons/{villager.id}", headers=await f.login_headers(db, settings, supervisor)
    )
    assert response.status_code == 200
    assert response.json()["phone"] == "137****5678"


@pytest.mark.parametrize("role", [Role.DISTRICT_ADMIN, Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN])
async def test_village_admin_cannot_take_over_a_more_privileged_account(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    village: Village,
    role: Role,
) -> None:
    """A district admin living in the village is not the village admin's to log in as."""
    household = await f.create_household(db, village)
    member = await f.add_member(db, household)
    person = await db.get(Person, member.person_id)
    assert person is not None
    town = await db.get(f.Town, village.town_id)
    scope = {"town": town} if role is Role.TOWN_SUPERVISOR else {}
    if role is Role.VILLAGE_ADMIN:
        scope = {"village": village}
    await f.grant(db, person, role, **scope)  # type: ignore[arg-type]
    phone = person.phone

    credentials = await client.put(
        f"/api/v1/persons/{person.id}/credentials",
        json={"username": "hijack", "password": "hijack-pass-1"},
        headers=admin,
    )
    invite = await client.post(f"/api/v1/household-members/{member.id}/invite", headers=admin)
    new_phone = await client.patch(
        f"/api/v1/household-members/{member.id}", json={"phone": "13000000000"}, headers=admin
    )
    renamed = await client.patch(
        f"/api/v1/persons/{person.id}", json={"phone": "13000000000"}, headers=admin
    )
    for response in (credentials, invite, new_phone, renamed):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "person.privileged"
    await db.refresh(person)
    assert (person.username, person.password_hash, person.phone) == (None, None, phone)
    invites = await db.execute(
        select(func.count()).select_from(InviteCode).where(InviteCode.person_id == person.id)
    )
    assert invites.scalar_one() == 0


async def test_new_credentials_end_the_old_logins(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    admin: dict[str, str],
    village: Village,
) -> None:
    scorer = await f.create_person(db, village, password="old-password-1")
    await f.grant(db, scorer, Role.SCORER, village=village)
    old = await f.login_headers(db, settings, scorer)
    assert (await client.get("/api/v1/me", headers=old)).status_code == 200
    response = await client.put(
        f"/api/v1/persons/{scorer.id}/credentials",
        json={"username": "scorer.new", "password": "new-password-1"},
        headers=admin,
    )
    assert response.status_code == 204
    after = await client.get("/api/v1/me", headers=old)
    assert after.status_code == 401
    assert after.json()["code"] == "auth.session_revoked"
