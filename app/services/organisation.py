import uuid
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz import STAFF_READ_ROLES, village_scope
from app.errors import Conflict, NotFound
from app.models import Role, Town, Village, VillageGroup
from app.pagination import PageParams, paginate
from app.schemas.organisation import (
    TownCreate,
    TownUpdate,
    VillageCreate,
    VillageGroupCreate,
    VillageGroupUpdate,
    VillageUpdate,
)
from app.security import Principal
from app.services import audit


def _town_scope(principal: Principal) -> Any:
    if principal.is_district_admin:
        return true()
    return col(Town.id).in_(principal.supervised_town_ids())


async def _name_taken(session: AsyncSession, statement: Any) -> bool:
    return (await session.execute(statement.limit(1))).first() is not None


async def list_towns(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[list[Town], str | None]:
    rows, cursor = await paginate(
        session,
        select(Town).where(_town_scope(principal)),
        order=[col(Town.name), col(Town.id)],
        params=params,
        parse=[str, uuid.UUID],
    )
    return [r[0] for r in rows], cursor


async def get_town(session: AsyncSession, principal: Principal, town_id: uuid.UUID) -> Town:
    town = (
        await session.execute(select(Town).where(col(Town.id) == town_id, _town_scope(principal)))
    ).scalar_one_or_none()
    if town is None:
        raise NotFound("No such town.", code="town.not_found")
    return town


async def create_town(session: AsyncSession, principal: Principal, data: TownCreate) -> Town:
    if await _name_taken(session, select(col(Town.id)).where(col(Town.name) == data.name)):
        raise Conflict("A town with this name exists.", code="town.name_taken")
    town = Town(name=data.name, district=data.district)
    session.add(town)
    await session.flush()
    audit.record(
        session,
        principal,
        "town.create",
        "town",
        town.id,
        after=audit.snapshot(town),
        town_id=town.id,
    )
    return town


async def update_town(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID, data: TownUpdate
) -> Town:
    town = await get_town(session, principal, town_id)
    before = audit.snapshot(town)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "name" in changes and await _name_taken(
        session,
        select(col(Town.id)).where(col(Town.name) == changes["name"], col(Town.id) != town.id),
    ):
        raise Conflict("A town with this name exists.", code="town.name_taken")
    for key, value in changes.items():
        setattr(town, key, value)
    await session.flush()
    audit.record(
        session,
        principal,
        "town.update",
        "town",
        town.id,
        before=before,
        after=audit.snapshot(town),
        town_id=town.id,
    )
    return town


def _village_read_scope(principal: Principal) -> Any:
    return village_scope(principal, col(Village.id), roles=STAFF_READ_ROLES, residents=True)


async def list_villages(
    session: AsyncSession, principal: Principal, params: PageParams, town_id: uuid.UUID | None
) -> tuple[list[Village], str | None]:
    statement = select(Village).where(_village_read_scope(principal))
    if town_id is not None:
        statement = statement.where(col(Village.town_id) == town_id)
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(Village.name), col(Village.id)],
        params=params,
        parse=[str, uuid.UUID],
    )
    return [r[0] for r in rows], cursor


async def get_village(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> Village:
    village = (
        await session.execute(
            select(Village).where(col(Village.id) == village_id, _village_read_scope(principal))
        )
    ).scalar_one_or_none()
    if village is None:
        raise NotFound("No such village.", code="village.not_found")
    return village


async def get_village_for_admin(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> Village:
    """The village if the principal administers it (district admin or its village admin)."""
    scope = village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,), towns=False)
    village = (
        await session.execute(select(Village).where(col(Village.id) == village_id, scope))
    ).scalar_one_or_none()
    if village is None:
        raise NotFound("No such village.", code="village.not_found")
    return village


async def create_village(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID, data: VillageCreate
) -> Village:
    town = await get_town(session, principal, town_id)
    if await _name_taken(
        session,
        select(col(Village.id)).where(
            col(Village.town_id) == town.id, col(Village.name) == data.name
        ),
    ):
        raise Conflict("The town already has a village with this name.", code="village.name_taken")
    village = Village(town_id=town.id, name=data.name)
    session.add(village)
    await session.flush()
    audit.record(
        session,
        principal,
        "village.create",
        "village",
        village.id,
        after=audit.snapshot(village),
        town_id=town.id,
        village_id=village.id,
    )
    return village


async def update_village(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: VillageUpdate
) -> Village:
    village = await get_village(session, principal, village_id)
    before = audit.snapshot(village)
    if data.name is not None and data.name != village.name:
        if await _name_taken(
            session,
            select(col(Village.id)).where(
                col(Village.town_id) == village.town_id, col(Village.name) == data.name
            ),
        ):
            raise Conflict(
                "The town already has a village with this name.", code="village.name_taken"
            )
        village.name = data.name
    await session.flush()
    audit.record(
        session,
        principal,
        "village.update",
        "village",
        village.id,
        before=before,
        after=audit.snapshot(village),
        town_id=village.town_id,
        village_id=village.id,
    )
    return village


async def list_groups(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> list[VillageGroup]:
    village = await get_village(session, principal, village_id)
    result = await session.execute(
        select(VillageGroup)
        .where(col(VillageGroup.village_id) == village.id)
        .order_by(col(VillageGroup.name), col(VillageGroup.id))
    )
    return list(result.scalars())


async def create_group(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: VillageGroupCreate
) -> VillageGroup:
    village = await get_village_for_admin(session, principal, village_id)
    if await _name_taken(
        session,
        select(col(VillageGroup.id)).where(
            col(VillageGroup.village_id) == village.id, col(VillageGroup.name) == data.name
        ),
    ):
        raise Conflict(
            "The village already has a group with this name.", code="village_group.name_taken"
        )
    group = VillageGroup(village_id=village.id, name=data.name, kind=data.kind)
    session.add(group)
    await session.flush()
    audit.record(
        session,
        principal,
        "village_group.create",
        "village_group",
        group.id,
        after=audit.snapshot(group),
        town_id=village.town_id,
        village_id=village.id,
    )
    return group


async def update_group(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, data: VillageGroupUpdate
) -> VillageGroup:
    scope = village_scope(
        principal, col(VillageGroup.village_id), roles=(Role.VILLAGE_ADMIN,), towns=False
    )
    group = (
        await session.execute(select(VillageGroup).where(col(VillageGroup.id) == group_id, scope))
    ).scalar_one_or_none()
    if group is None:
        raise NotFound("No such village group.", code="village_group.not_found")
    before = audit.snapshot(group)
    if data.name is not None and data.name != group.name:
        if await _name_taken(
            session,
            select(col(VillageGroup.id)).where(
                col(VillageGroup.village_id) == group.village_id,
                col(VillageGroup.name) == data.name,
            ),
        ):
            raise Conflict(
                "The village already has a group with this name.", code="village_group.name_taken"
            )
        group.name = data.name
    if data.kind is not None:
        group.kind = data.kind
    await session.flush()
    audit.record(
        session,
        principal,
        "village_group.update",
        "village_group",
        group.id,
        before=before,
        after=audit.snapshot(group),
        village_id=group.village_id,
    )
    return group
