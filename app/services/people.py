import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import VILLAGE_GRANTABLE, ensure_may_manage_account, villages_in_towns
from app.db import DriverSource, driver_of
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    LoginSession,
    Person,
    Role,
    RoleGrant,
    Shop,
    Town,
    Village,
    VillageGroup,
)
from app.pagination import PageParams, paginate
from app.schemas.people import (
    Credentials,
    PersonCreate,
    PersonRead,
    PersonUpdate,
    RoleGrantCreate,
)
from app.security import Principal, hash_password
from app.services import audit
from app.services.households import phone_for
from app.services.organisation import get_village_for_admin
from app.sqljson import json_time


def person_read(principal: Principal, person: Person) -> PersonRead:
    return PersonRead(
        id=person.id,
        name=person.name,
        phone=phone_for(principal, person),
        village_id=person.village_id,
        username=person.username,
        created_at=person.created_at,
    )


def _person_scope(principal: Principal, *, write: bool) -> ColumnElement[bool]:
    if principal.is_district_admin:
        return true()
    clauses: list[ColumnElement[bool]] = []
    admin_villages = principal.village_ids(Role.VILLAGE_ADMIN)
    if admin_villages:
        clauses.append(col(Person.village_id).in_(admin_villages))
    towns = principal.supervised_town_ids()
    if towns and not write:
        clauses.append(col(Person.village_id).in_(villages_in_towns(towns)))
    return or_(*clauses) if clauses else false()


async def get_person(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, *, write: bool = False
) -> Person:
    person = (
        await session.execute(
            select(Person).where(col(Person.id) == person_id, _person_scope(principal, write=write))
        )
    ).scalar_one_or_none()
    if person is None:
        raise NotFound("No such person.", code="person.not_found")
    return person


async def list_persons(
    session: AsyncSession, principal: Principal, params: PageParams, village_id: uuid.UUID | None
) -> tuple[list[Person], str | None]:
    statement = select(Person).where(_person_scope(principal, write=False))
    if village_id is not None:
        statement = statement.where(col(Person.village_id) == village_id)
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(Person.name), col(Person.id)],
        params=params,
        parse=[str, uuid.UUID],
    )
    return [r[0] for r in rows], cursor


async def _username_taken(
    session: AsyncSession, username: str, exclude: uuid.UUID | None = None
) -> bool:
    statement = select(col(Person.id)).where(col(Person.username) == username)
    if exclude is not None:
        statement = statement.where(col(Person.id) != exclude)
    return (await session.execute(statement)).first() is not None


async def create_person(session: AsyncSession, principal: Principal, data: PersonCreate) -> Person:
    if not principal.is_district_admin:
        admin_villages = principal.village_ids(Role.VILLAGE_ADMIN)
        if data.village_id is None and len(admin_villages) == 1:
            data = data.model_copy(update={"village_id": next(iter(admin_villages))})
        if data.village_id not in admin_villages:
            raise NotFound("No such village.", code="village.not_found")
    elif data.village_id is not None and await session.get(Village, data.village_id) is None:
        raise NotFound("No such village.", code="village.not_found")
    if (data.username is None) != (data.password is None):
        raise Unprocessable(
            "Give both username and password, or neither.", code="person.credentials_incomplete"
        )
    if data.username and await _username_taken(session, data.username):
        raise Conflict("The username is taken.", code="person.username_taken")
    person = Person(
        name=data.name,
        phone=data.phone,
        village_id=data.village_id,
        username=data.username,
        password_hash=hash_password(data.password) if data.password else None,
    )
    session.add(person)
    await session.flush()
    audit.record(
        session,
        principal,
        "person.create",
        "person",
        person.id,
        after=audit.snapshot(person),
        village_id=person.village_id,
    )
    return person


async def update_person(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, data: PersonUpdate
) -> Person:
    person = await get_person(session, principal, person_id, write=True)
    await ensure_may_manage_account(session, principal, person.id)
    before = audit.snapshot(person)
    if data.name is not None:
        person.name = data.name
    if "phone" in data.model_fields_set:
        person.phone = data.phone
    person.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        principal,
        "person.update",
        "person",
        person.id,
        before=before,
        after=audit.snapshot(person),
        village_id=person.village_id,
    )
    return person


async def set_credentials(
    session: AsyncSession, principal: Principal, person_id: uuid.UUID, data: Credentials
) -> None:
    person = await get_person(session, principal, person_id, write=True)
    await ensure_may_manage_account(session, principal, person.id)
    if await _username_taken(session, data.username, exclude=person.id):
        raise Conflict("The username is taken.", code="person.username_taken")
    person.username = data.username
    person.password_hash = hash_password(data.password)
    # Whoever knew the old password is logged out.
    await session.execute(
        update(LoginSession)
        .where(col(LoginSession.person_id) == person.id, col(LoginSession.revoked_at).is_(None))
        .values(revoked_at=func.now(), revoked_reason="credentials_changed")
    )
    person.updated_at = clock.now()
    await session.flush()
    audit.record(
        session,
        principal,
        "person.set_credentials",
        "person",
        person.id,
        after={"username": data.username},
        village_id=person.village_id,
    )


def _grant_scope(principal: Principal) -> ColumnElement[bool]:
    """Grants the principal may see: the district's all; a village admin's, those of the village."""
    if principal.is_district_admin:
        return true()
    clauses: list[ColumnElement[bool]] = [col(RoleGrant.person_id) == principal.person_id]
    admin_villages = principal.village_ids(Role.VILLAGE_ADMIN)
    if admin_villages:
        clauses.append(col(RoleGrant.village_id).in_(admin_villages))
    towns = principal.supervised_town_ids()
    if towns:
        clauses.append(col(RoleGrant.town_id).in_(towns))
    return or_(*clauses)


def _may_manage(principal: Principal, role: Role, village_id: uuid.UUID | None) -> bool:
    if principal.is_district_admin:
        return True
    return role in VILLAGE_GRANTABLE and principal.is_village_admin_of(village_id)


async def create_grant(
    session: AsyncSession, principal: Principal, data: RoleGrantCreate
) -> RoleGrant:
    town_id: uuid.UUID | None = None
    village_id: uuid.UUID | None = None
    if data.role is Role.DISTRICT_ADMIN:
        if data.town_id or data.village_id:
            raise Unprocessable(
                "A district admin grant has no town or village.", code="role_grant.bad_scope"
            )
    elif data.role is Role.TOWN_SUPERVISOR:
        if data.town_id is None or data.village_id is not None:
            raise Unprocessable(
                "A town supervisor grant names a town only.", code="role_grant.bad_scope"
            )
        town_id = data.town_id
    else:
        if data.village_id is None:
            raise Unprocessable("A village role names its village.", code="role_grant.bad_scope")
        village_id = data.village_id
    if data.village_group_ids and data.role not in (Role.SCORER, Role.SCORING_LEADER):
        raise Unprocessable(
            "Only scorers are limited to village groups.", code="role_grant.bad_scope"
        )
    if data.shop_id is not None and data.role is not Role.SHOP_ATTENDANT:
        raise Unprocessable("Only shop attendants name a shop.", code="role_grant.bad_scope")
    if village_id is not None:
        # A village outside the caller's administration is not found, whatever the role asked.
        village = await get_village_for_admin(session, principal, village_id)
        if not _may_manage(principal, data.role, village_id):
            raise Forbidden("You may not grant this role here.", code="role_grant.not_allowed")
        town_id = village.town_id
        if data.village_group_ids:
            found = set(
                (
                    await session.execute(
                        select(col(VillageGroup.id)).where(
                            col(VillageGroup.id).in_(data.village_group_ids),
                            col(VillageGroup.village_id) == village_id,
                        )
                    )
                ).scalars()
            )
            if found != set(data.village_group_ids):
                raise Unprocessable(
                    "Every village group must belong to the grant's village.",
                    code="role_grant.group_not_in_village",
                )
        if data.shop_id is not None:
            await _check_shop(session, principal, data.shop_id, village_id)
    else:
        if not _may_manage(principal, data.role, None):
            raise Forbidden("You may not grant this role.", code="role_grant.not_allowed")
        if town_id is not None and await session.get(Town, town_id) is None:
            raise NotFound("No such town.", code="town.not_found")
    person = await get_person(session, principal, data.person_id, write=True)
    duplicate = await session.execute(
        select(col(RoleGrant.id)).where(
            col(RoleGrant.person_id) == person.id,
            col(RoleGrant.role) == data.role,
            col(RoleGrant.town_id).is_not_distinct_from(town_id),
            col(RoleGrant.village_id).is_not_distinct_from(village_id),
            col(RoleGrant.revoked_at).is_(None),
        )
    )
    if duplicate.first() is not None:
        raise Conflict("The person already holds this role here.", code="role_grant.duplicate")
    grant = RoleGrant(
        person_id=person.id,
        role=data.role,
        town_id=town_id,
        village_id=village_id,
        village_group_ids=sorted(set(data.village_group_ids), key=str),
        shop_id=data.shop_id,
        granted_by=principal.person_id,
    )
    session.add(grant)
    await session.flush()
    audit.record(
        session,
        principal,
        "role_grant.create",
        "role_grant",
        grant.id,
        after=audit.snapshot(grant),
        town_id=town_id,
        village_id=village_id,
    )
    return grant


async def _check_shop(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, village_id: uuid.UUID
) -> None:
    shop = await session.get(Shop, shop_id)
    if shop is None or village_id not in shop.served_village_ids:
        raise Unprocessable(
            "The shop must serve the grant's village.", code="role_grant.shop_not_in_village"
        )
    # A town shop's counter handles several villages' households: staffing it is the town's
    # decision, not one served village's.
    if shop.village_id is None and not (
        principal.is_district_admin or shop.town_id in principal.supervised_town_ids()
    ):
        raise Forbidden(
            "Only the town or the district staffs a town shop.",
            code="role_grant.town_shop_not_allowed",
            title="镇级积分超市的兑换员由镇或区县指定",
        )


async def list_grants(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    person_id: uuid.UUID | None,
    village_id: uuid.UUID | None,
    include_revoked: bool,
) -> tuple[list[RoleGrant], str | None]:
    statement = select(RoleGrant).where(_grant_scope(principal))
    if person_id is not None:
        statement = statement.where(col(RoleGrant.person_id) == person_id)
    if village_id is not None:
        statement = statement.where(col(RoleGrant.village_id) == village_id)
    if not include_revoked:
        statement = statement.where(col(RoleGrant.revoked_at).is_(None))
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(RoleGrant.created_at), col(RoleGrant.id)],
        params=params,
        parse=[datetime.fromisoformat, uuid.UUID],
    )
    return [r[0] for r in rows], cursor


async def revoke_grant(
    session: AsyncSession, principal: Principal, grant_id: uuid.UUID
) -> RoleGrant:
    grant = (
        await session.execute(
            select(RoleGrant)
            .where(col(RoleGrant.id) == grant_id, _grant_scope(principal))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if grant is None:
        raise NotFound("No such role grant.", code="role_grant.not_found")
    if not _may_manage(principal, grant.role, grant.village_id):
        raise Forbidden("You may not revoke this role.", code="role_grant.not_allowed")
    if grant.revoked_at is not None:
        raise Conflict("The grant is already revoked.", code="role_grant.already_revoked")
    before = audit.snapshot(grant)
    grant.revoked_at = clock.now()
    grant.revoked_by = principal.person_id
    await session.flush()
    audit.record(
        session,
        principal,
        "role_grant.revoke",
        "role_grant",
        grant.id,
        before=before,
        after=audit.snapshot(grant),
        town_id=grant.town_id,
        village_id=grant.village_id,
    )
    return grant


# The caller, their household with its members and their live grants in one statement, sent
# straight to the driver and answered as MeRead's JSON. Members' phones as phone_for shows them
# ($3: the villages the caller administers see them whole) and mask_phone masks them.
_ME = f"""
    SELECT row_to_json(s)::text FROM (SELECT
        (SELECT row_to_json(o) FROM (SELECT
            p.id, p.name, p.phone, p.village_id, p.username,
            {json_time("p.created_at")} AS created_at
        ) o) AS person,
        (SELECT row_to_json(o) FROM household h CROSS JOIN LATERAL (SELECT
            h.id, h.village_id, h.village_group_id, h.number, h.address, h.local_hukou,
            h.homestead_house, h.has_resident, h.renter, h.participation, h.joined_on,
            {json_time("h.created_at")} AS created_at,
            ('[' || coalesce((
                SELECT string_agg(
                    row_to_json(mo)::text, ',' ORDER BY m.is_head DESC, pe.name, pe.id)
                FROM household_member m JOIN person pe ON pe.id = m.person_id
                CROSS JOIN LATERAL (SELECT
                    m.id, pe.id AS person_id, pe.name,
                    CASE
                        WHEN pe.id = p.id OR pe.village_id = ANY($3::uuid[])
                          OR pe.phone IS NULL OR pe.phone = '' THEN pe.phone
                        WHEN char_length(pe.phone) >= 7
                        THEN left(pe.phone, 3) || '****' || right(pe.phone, 4)
                        ELSE '****' END AS phone,
                    m.is_head, m.relation
                ) mo
                WHERE m.household_id = h.id
            ), '') || ']')::json AS members
        ) o WHERE h.id = $2::uuid) AS household,
        ('[' || coalesce((
            SELECT string_agg(row_to_json(go)::text, ',' ORDER BY g.created_at, g.id)
            FROM role_grant g CROSS JOIN LATERAL (SELECT
                g.id, g.person_id, g.role, g.town_id, g.village_id, g.village_group_ids,
                {json_time("g.created_at")} AS created_at,
                {json_time("g.revoked_at")} AS revoked_at,
                g.shop_id
            ) go
            WHERE g.person_id = p.id AND g.revoked_at IS NULL
        ), '') || ']')::json AS grants
    FROM person p WHERE p.id = $1
    ) s
"""


async def me(source: DriverSource, principal: Principal) -> str:
    """MeRead as JSON text: PostgreSQL builds it, nothing to validate again here."""
    driver = await driver_of(source)
    found: str | None = await driver.fetchval(
        _ME,
        principal.person_id,
        principal.household_id,
        list(principal.village_ids(Role.VILLAGE_ADMIN)),
    )
    if found is None:
        raise NotFound("No such person.", code="person.not_found")
    return found
