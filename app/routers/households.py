import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from app.db import SessionDep
from app.models import Participation
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.household_import import ImportFile, ImportReport
from app.schemas.households import (
    HouseholdCreate,
    HouseholdRead,
    HouseholdSummary,
    HouseholdUpdate,
    InviteRead,
    MemberCreate,
    MemberUpdate,
)
from app.security import CurrentPrincipal, HouseholdReader, VillageAdmin
from app.services import household_import as import_service
from app.services import households as service

router = APIRouter(tags=["households"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]


@router.post(
    "/villages/{village_id}/households",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_household",
)
async def create_household(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, body: HouseholdCreate
) -> HouseholdRead:
    household = await service.create_household(session, principal, village_id, body)
    return await service.household_read(session, principal, household)


@router.get("/villages/{village_id}/households", operation_id="list_households")
async def list_households(
    session: SessionDep,
    principal: HouseholdReader,
    village_id: uuid.UUID,
    paging: Paging,
    group_id: Annotated[uuid.UUID | None, Query()] = None,
    participation: Annotated[Participation | None, Query()] = None,
) -> Page[HouseholdSummary]:
    items, cursor = await service.list_households(
        session, principal, village_id, paging, group_id=group_id, participation=participation
    )
    return Page(items=items, next_cursor=cursor)


@router.get("/households/{household_id}", operation_id="get_household")
async def get_household(
    session: SessionDep, principal: CurrentPrincipal, household_id: uuid.UUID
) -> HouseholdRead:
    household = await service.get_household(session, principal, household_id)
    return await service.household_read(session, principal, household)


@router.patch("/households/{household_id}", operation_id="update_household")
async def update_household(
    session: SessionDep, principal: VillageAdmin, household_id: uuid.UUID, body: HouseholdUpdate
) -> HouseholdRead:
    household = await service.update_household(session, principal, household_id, body)
    return await service.household_read(session, principal, household)


@router.post(
    "/households/{household_id}/members",
    status_code=status.HTTP_201_CREATED,
    operation_id="add_household_member",
)
async def add_member(
    session: SessionDep, principal: VillageAdmin, household_id: uuid.UUID, body: MemberCreate
) -> HouseholdRead:
    await service.add_member(session, principal, household_id, body)
    household = await service.get_household(session, principal, household_id)
    return await service.household_read(session, principal, household)


@router.patch("/household-members/{member_id}", operation_id="update_household_member")
async def update_member(
    session: SessionDep, principal: VillageAdmin, member_id: uuid.UUID, body: MemberUpdate
) -> HouseholdRead:
    member = await service.update_member(session, principal, member_id, body)
    household = await service.get_household(session, principal, member.household_id)
    return await service.household_read(session, principal, household)


@router.delete(
    "/household-members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="remove_household_member",
)
async def remove_member(session: SessionDep, principal: VillageAdmin, member_id: uuid.UUID) -> None:
    await service.remove_member(session, principal, member_id)


@router.post(
    "/household-members/{member_id}/invite",
    status_code=status.HTTP_201_CREATED,
    operation_id="issue_invite_code",
)
async def issue_invite(
    request: Request, session: SessionDep, principal: VillageAdmin, member_id: uuid.UUID
) -> InviteRead:
    """A single-use code the member types into the mini-program to bind their WeChat."""
    hours = request.app.state.settings.invite_code_hours
    return await service.issue_invite(session, principal, member_id, timedelta(hours=hours))


@router.post("/villages/{village_id}/households/import", operation_id="import_households")
async def import_households(
    session: SessionDep,
    principal: VillageAdmin,
    village_id: uuid.UUID,
    file: ImportFile,
    dry_run: Annotated[
        bool, Query(description="Check the file and report without writing anything")
    ] = False,
) -> ImportReport:
    """Households with their members from a CSV or XLSX roster, one row per member.

    Every row is checked first; if any is wrong the answer is 422 `household_import.invalid_rows`
    listing each bad line, and nothing is written.
    """
    # One byte past the limit is enough to tell the file is too large without reading it all.
    data = await file.read(import_service.MAX_FILE_BYTES + 1)
    return await import_service.import_households(
        session, principal, village_id, data, filename=file.filename, dry_run=dry_run
    )
