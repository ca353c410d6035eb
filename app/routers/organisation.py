import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.db import SessionDep
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.organisation import (
    TownCreate,
    TownRead,
    TownUpdate,
    VillageCreate,
    VillageGroupCreate,
    VillageGroupRead,
    VillageGroupUpdate,
    VillageRead,
    VillageUpdate,
)
from app.security import CurrentPrincipal, DistrictAdmin, OrgReader, VillageAdmin
from app.services import organisation as service

router = APIRouter(tags=["organisation"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]


@router.get("/towns", operation_id="list_towns")
async def list_towns(session: SessionDep, principal: OrgReader, paging: Paging) -> Page[TownRead]:
    towns, cursor = await service.list_towns(session, principal, paging)
    return Page(items=[TownRead.model_validate(t) for t in towns], next_cursor=cursor)


@router.post("/towns", status_code=status.HTTP_201_CREATED, operation_id="create_town")
async def create_town(session: SessionDep, principal: DistrictAdmin, body: TownCreate) -> TownRead:
    return TownRead.model_validate(await service.create_town(session, principal, body))


@router.get("/towns/{town_id}", operation_id="get_town")
async def get_town(session: SessionDep, principal: OrgReader, town_id: uuid.UUID) -> TownRead:
    return TownRead.model_validate(await service.get_town(session, principal, town_id))


@router.patch("/towns/{town_id}", operation_id="update_town")
async def update_town(
    session: SessionDep, principal: DistrictAdmin, town_id: uuid.UUID, body: TownUpdate
) -> TownRead:
    return TownRead.model_validate(await service.update_town(session, principal, town_id, body))


@router.post(
    "/towns/{town_id}/villages", status_code=status.HTTP_201_CREATED, operation_id="create_village"
)
async def create_village(
    session: SessionDep, principal: DistrictAdmin, town_id: uuid.UUID, body: VillageCreate
) -> VillageRead:
    return VillageRead.model_validate(
        await service.create_village(session, principal, town_id, body)
    )


@router.get("/villages", operation_id="list_villages")
async def list_villages(
    session: SessionDep,
    principal: CurrentPrincipal,
    paging: Paging,
    town_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[VillageRead]:
    villages, cursor = await service.list_villages(session, principal, paging, town_id)
    return Page(items=[VillageRead.model_validate(v) for v in villages], next_cursor=cursor)


@router.get("/villages/{village_id}", operation_id="get_village")
async def get_village(
    session: SessionDep, principal: CurrentPrincipal, village_id: uuid.UUID
) -> VillageRead:
    return VillageRead.model_validate(await service.get_village(session, principal, village_id))


@router.patch("/villages/{village_id}", operation_id="update_village")
async def update_village(
    session: SessionDep, principal: DistrictAdmin, village_id: uuid.UUID, body: VillageUpdate
) -> VillageRead:
    return VillageRead.model_validate(
        await service.update_village(session, principal, village_id, body)
    )


@router.get("/villages/{village_id}/groups", operation_id="list_village_groups")
async def list_groups(
    session: SessionDep, principal: CurrentPrincipal, village_id: uuid.UUID
) -> list[VillageGroupRead]:
    groups = await service.list_groups(session, principal, village_id)
    return [VillageGroupRead.model_validate(g) for g in groups]


@router.post(
    "/villages/{village_id}/groups",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_village_group",
)
async def create_group(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, body: VillageGroupCreate
) -> VillageGroupRead:
    return VillageGroupRead.model_validate(
        await service.create_group(session, principal, village_id, body)
    )


@router.patch("/village-groups/{group_id}", operation_id="update_village_group")
async def update_group(
    session: SessionDep, principal: VillageAdmin, group_id: uuid.UUID, body: VillageGroupUpdate
) -> VillageGroupRead:
    return VillageGroupRead.model_validate(
        await service.update_group(session, principal, group_id, body)
    )
