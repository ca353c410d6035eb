import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    AuditEntry,
    Household,
    HouseholdMember,
    InviteCode,
    Person,
    Role,
    Village,
    VillageGroup,
)
from tests import factories as f


class Setup:
    def __init__(self) -> None:
        self.headers: dict[str, dict[str, str]] = {}


@pytest.fixture
async def village(db: AsyncSession) -> Village:
    return await f.create_village(db)


@pytest.fixture
async def groups(db: AsyncSession, village: Village) -> tuple[VillageGroup, VillageGroup]:
    return await f.create_group(db, village, name="一组"), await f.create_group(
        db, village, name="二组"
    )


async def headers_for(
    db: AsyncSession, settings: Settings, village: Village, role: Role, **kw: object
) -> dict[str, str]:
    person = await f.create_person(db, village)
    await f.grant(db, person, role, village=village, **kw)  # type: ignore[arg-type]
    return await f.login_headers(db, settings, person)


async def count(db: AsyncSession, model: type) -> int:
    return (await db.execute(select(func.count()).select_from(model))).scalar_one()


async def test_admin_registers_a_household_with_members(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    village: Village,
    groups: tuple[VillageGroup, VillageGroup],
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    created = await client.post(
        f"/api/v1/villages/{village.id}/households",
        json={
            "number": "0101",
            "village_group_id": str(groups[0].id),
            "address": "秦阳村1号",
            "participation": "active",
        },
        headers=admin,
    )
    assert created.status_code == 201
    household_id = created.json()["id"]
    head = await client.post(
        f"/api/v1/households/{household_id}/members",
        json={"name": "张建国", "phone": "13800000001", "is_head": True, "relation": "户主"},
        headers=admin,
    )
    assert head.status_code == 201
    spouse = await client.post(
        f"/api/v1/households/{household_id}/members",
        json={"name": "李秀英", "relation": "配偶"},
        headers=admin,
    )
    body = spouse.json()
    assert [m["name"] for m in body["members"]] == ["张建国", "李秀英"]
    assert body["members"][0]["phone"] == "13800000001"  # admins of the village see it whole

    members = (
        (
            await db.execute(
                select(HouseholdMember).where(HouseholdMember.household_id == household_id)
            )
        )
        .scalars()
        .all()
    )
    assert len(members) == 2
    assert sum(m.is_head for m in members) == 1
    persons = (
        (await db.execute(select(Person).where(Person.id.in_([m.person_id for m in members]))))
        .scalars()
        .all()
    )  # type: ignore[attr-defined]
    assert {p.village_id for p in persons} == {village.id}


async def test_making_another_member_head_moves_the_head_flag(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    household = await f.create_household(db, village)
    first = await f.add_member(db, household, is_head=True)
    second = await f.add_member(db, household)
    response = await client.patch(
        f"/api/v1/household-members/{second.id}", json={"is_head": True}, headers=admin
    )
    assert response.status_code == 200
    await db.refresh(first)
    await db.refresh(second)
    assert (first.is_head, second.is_head) == (False, True)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"number": "DUP"}, 409, "household.number_taken"),
        ({"number": ""}, 422, "request.invalid"),
        ({"number": "N1", "participation": "maybe"}, 422, "request.invalid"),
        ({"number": "N1", "joined_on": "2024-13-01"}, 422, "request.invalid"),
    ],
)
async def test_bad_households_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    village: Village,
    payload: dict[str, object],
    status: int,
    code: str,
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    await f.create_household(db, village, number="DUP")
    before = await count(db, Household), await count(db, AuditEntry)
    response = await client.post(
        f"/api/v1/villages/{village.id}/households", json=payload, headers=admin
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    assert (await count(db, Household), await count(db, AuditEntry)) == before


async def test_a_group_of_another_village_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    foreign_group = await f.create_group(db, await f.create_village(db))
    households = await count(db, Household)
    response = await client.post(
        f"/api/v1/villages/{village.id}/households",
        json={"number": "X1", "village_group_id": str(foreign_group.id)},
        headers=admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "household.group_not_in_village"
    assert await count(db, Household) == households


async def test_scorer_limited_to_a_group_lists_only_that_group(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    village: Village,
    groups: tuple[VillageGroup, VillageGroup],
) -> None:
    mine = await f.create_household(db, village, groups[0])
    await f.add_member(db, mine, is_head=True)
    theirs = await f.create_household(db, village, groups[1])
    scorer = await headers_for(db, settings, village, Role.SCORER, groups=[groups[0]])
    response = await client.get(f"/api/v1/villages/{village.id}/households", headers=scorer)
    assert response.status_code == 200
    items = response.json()["items"]
    assert [h["id"] for h in items] == [str(mine.id)]
    assert items[0]["member_count"] == 1
    assert items[0]["head_name"]
    hidden = await client.get(f"/api/v1/households/{theirs.id}", headers=scorer)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "household.not_found"


async def test_villager_reads_their_own_household_only_and_phones_are_masked_for_non_admins(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    home = await f.create_household(db, village)
    me = await f.add_member(db, home, is_head=True)
    spouse = await f.add_member(db, home)
    neighbour = await f.create_household(db, village)
    person = await db.get(Person, me.person_id)
    spouse_person = await db.get(Person, spouse.person_id)
    assert person is not None
    assert spouse_person is not None
    assert spouse_person.phone
    headers = await f.login_headers(db, settings, person)

    own = await client.get(f"/api/v1/households/{home.id}", headers=headers)
    assert own.status_code == 200
    phones = {m["person_id"]: m["phone"] for m in own.json()["members"]}
    assert phones[str(person.id)] == person.phone
    assert (
        phones[str(spouse_person.id)] == spouse_person.phone[:3] + "****" + spouse_person.phone[-4:]
    )

    other = await client.get(f"/api/v1/households/{neighbour.id}", headers=headers)
    assert other.status_code == 404

    scorer = await headers_for(db, settings, village, Role.SCORER)
    seen_by_scorer = await client.get(f"/api/v1/households/{home.id}", headers=scorer)
    assert all("****" in m["phone"] for m in seen_by_scorer.json()["members"])


async def test_household_update_is_audited_with_before_and_after(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    household = await f.create_household(db, village, participation="pending")
    response = await client.patch(
        f"/api/v1/households/{household.id}",
        json={"participation": "active", "renter": True},
        headers=admin,
    )
    assert response.status_code == 200
    entry = (
        await db.execute(
            select(AuditEntry).where(
                AuditEntry.object_id == household.id, AuditEntry.action == "household.update"
            )
        )
    ).scalar_one()
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["participation"], entry.after["participation"]) == ("pending", "active")
    assert entry.after["renter"] is True


async def test_null_for_a_required_field_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    household = await f.create_household(db, village)
    response = await client.patch(
        f"/api/v1/households/{household.id}", json={"number": None}, headers=admin
    )
    assert response.status_code == 422
    assert response.json()["code"] == "household.field_required"
    await db.refresh(household)
    assert household.number


async def test_a_person_belongs_to_one_household(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    first, second = await f.create_household(db, village), await f.create_household(db, village)
    member = await f.add_member(db, first)
    response = await client.post(
        f"/api/v1/households/{second.id}/members",
        json={"person_id": str(member.person_id)},
        headers=admin,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "member.already_in_household"
    rows = (
        (
            await db.execute(
                select(HouseholdMember).where(HouseholdMember.person_id == member.person_id)
            )
        )
        .scalars()
        .all()
    )
    assert [r.household_id for r in rows] == [first.id]


async def test_removing_a_member_keeps_the_person_and_voids_their_invite(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    household = await f.create_household(db, village)
    member = await f.add_member(db, household)
    invite = await client.post(f"/api/v1/household-members/{member.id}/invite", headers=admin)
    assert invite.status_code == 201
    response = await client.delete(f"/api/v1/household-members/{member.id}", headers=admin)
    assert response.status_code == 204
    # Queried, not db.get: the test session's identity map still holds the old object.
    assert (
        await db.execute(select(HouseholdMember.id).where(HouseholdMember.id == member.id))
    ).first() is None
    assert (
        await db.execute(select(Person.id).where(Person.id == member.person_id))
    ).first() is not None
    live = await db.execute(
        select(InviteCode.id).where(
            InviteCode.person_id == member.person_id, InviteCode.expires_at > func.now()
        )
    )
    assert live.first() is None


async def test_a_new_invite_code_replaces_the_previous_one(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, village: Village
) -> None:
    admin = await headers_for(db, settings, village, Role.VILLAGE_ADMIN)
    household = await f.create_household(db, village)
    member = await f.add_member(db, household)
    first = await client.post(f"/api/v1/household-members/{member.id}/invite", headers=admin)
    second = await client.post(f"/api/v1/household-members/{member.id}/invite", headers=admin)
    assert first.status_code == second.status_code == 201
    assert first.json()["code"] != second.json()["code"]
    assert len(second.json()["code"]) == 8
    live = (
        await db.execute(
            select(func.count())
            .select_from(InviteCode)
            .where(InviteCode.person_id == member.person_id, InviteCode.expires_at > func.now())
        )
    ).scalar_one()
    assert live == 1
