import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.db import SessionDep
from app.models import Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.people import (
    Credentials,
    MeRead,
    PersonCreate,
    PersonRead,
    PersonUpdate,
    RoleGrantCreate,
    RoleGrantRead,
)
from app.security import Principal, ReadingDep, VillageAdmin, require_roles
from app.services import people as service

router = APIRouter(tags=["people"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
PersonReader = Annotated[Principal, require_roles(Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN)]
GrantReader = Annotated[Principal, require_roles(Role.TOWN_SUPERVISOR, Role.VILLAGE_ADMIN)]


@router.get("/me", operation_id="get_me", response_model=MeRead)
async def get_me(reading: ReadingDep) -> Response:
    """The caller, their household and their role grants with scopes."""
    # Built by PostgreSQL in MeRead's shape; passed through as it came.
    body = await service.me(reading.connection, reading.principal)
    return Response(body, media_type="application/json")


@router.get("/persons", operation_id="list_persons")
async def list_persons(
    session: SessionDep,
    principal: PersonReader,
    paging: Paging,
    village_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[PersonRead]:
    persons, cursor = await service.list_persons(session, principal, paging, village_id)
    return Page(items=[service.person_read(principal, p) for p in persons], next_cursor=cursor)


@router.post("/persons", status_code=status.HTTP_201_CREATED, operation_id="create_person")
async def create_person(
    session: SessionDep, principal: VillageAdmin, body: PersonCreate
) -> PersonRead:
    """A person outside any household yet, such as staff who log in with a password."""
    return service.person_read(principal, await service.create_person(session, principal, body))


@router.get("/persons/{person_id}", operation_id="get_person")
async def get_person(
    session: SessionDep, principal: PersonReader, person_id: uuid.UUID
) -> PersonRead:
    return service.person_read(principal, await service.get_person(session, principal, person_id))


@router.patch("/persons/{person_id}", operation_id="update_person")
async def update_person(
    session: SessionDep, principal: VillageAdmin, person_id: uuid.UUID, body: PersonUpdate
) -> PersonRead:
    return service.person_read(
        principal, await service.update_person(session, principal, person_id, body)
    )


@router.put(
    "/persons/{person_id}/credentials",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="set_person_credentials",
)
async def set_credentials(
    session: SessionDep, principal: VillageAdmin, person_id: uuid.UUID, body: Credentials
) -> None:
    """Username and password for the staff web login."""
    await service.set_credentials(session, principal, person_id, body)


@router.get("/role-grants", operation_id="list_role_grants")
async def list_grants(
    session: SessionDep,
    principal: GrantReader,
    paging: Paging,
    person_id: Annotated[uuid.UUID | None, Query()] = None,
    village_id: Annotated[uuid.UUID | None, Query()] = None,
    include_revoked: bool = False,
) -> Page[RoleGrantRead]:
    grants, cursor = await service.list_grants(
        session,
        principal,
        paging,
        person_id=person_id,
        village_id=village_id,
        include_revoked=include_revoked,
    )
    return Page(items=[RoleGrantRead.model_validate(g) for g in grants], next_cursor=cursor)


@router.post("/role-grants", status_code=status.HTTP_201_CREATED, operation_id="create_role_grant")
async def create_grant(
    session: SessionDep, principal: VillageAdmin, body: RoleGrantCreate
) -> RoleGrantRead:
    return RoleGrantRead.model_validate(await service.create_grant(session, principal, body))


@router.delete("/role-grants/{grant_id}", operation_id="revoke_role_grant")
async def revoke_grant(
    session: SessionDep, principal: VillageAdmin, grant_id: uuid.UUID
) -> RoleGrantRead:
    return RoleGrantRead.model_validate(await service.revoke_grant(session, principal, grant_id))
