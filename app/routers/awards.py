import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from app.db import SessionDep
from app.models import Role
from app.quick_routes import QuickRoute
from app.schemas.rankings import AwardListRead
from app.security import CurrentPrincipal, Principal, VillageAdmin, require_roles
from app.services import awards as service
from app.xlsx import XLSX_MEDIA_TYPE, attachment

router = APIRouter(tags=["rankings"], route_class=QuickRoute)
Year = Annotated[int, Path(ge=2000, le=2100)]
Exporter = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]


@router.get("/villages/{village_id}/awards", operation_id="list_award_lists")
async def list_awards(
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> list[AwardListRead]:
    """The village's year-end award lists (年终评比); villagers see published ones."""
    return await service.list_awards(session, principal, village_id, year)


@router.post("/villages/{village_id}/awards/{year}/draft", operation_id="compute_award_draft")
async def compute_draft(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, year: Year
) -> AwardListRead:
    """Compute (or recompute) the year's list as a draft from the published year totals."""
    return await service.compute_draft(session, principal, village_id, year)


@router.post("/villages/{village_id}/awards/{year}/approve", operation_id="approve_award_list")
async def approve(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, year: Year
) -> AwardListRead:
    """两委审定 of the draft list (audited); it no longer changes."""
    return await service.approve(session, principal, village_id, year)


@router.post("/villages/{village_id}/awards/{year}/publish", operation_id="publish_award_list")
async def publish(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, year: Year
) -> AwardListRead:
    """Publish the approved list to the village's villagers, who are told by subscribe message."""
    return await service.publish(session, principal, village_id, year)


@router.get(
    "/villages/{village_id}/awards/{year}/xlsx",
    operation_id="export_award_list",
    response_class=Response,
    responses={
        200: {
            "content": {XLSX_MEDIA_TYPE: {}},
            "description": "The year's award list as an XLSX workbook",
        }
    },
)
async def export(
    session: SessionDep, principal: Exporter, village_id: uuid.UUID, year: Year
) -> Response:
    filename, content = await service.workbook(session, principal, village_id, year)
    return Response(
        content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": attachment(filename)}
    )
