import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from app.db import SessionDep
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.activities import (
    ActivityCreate,
    ActivityRead,
    AttendanceConfirm,
    AttendanceRead,
    CheckInCode,
    CheckInCreate,
    CheckInRead,
)
from app.security import CurrentPrincipal, VillageAdmin
from app.services import activities as service

router = APIRouter(tags=["activities"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]


@router.post(
    "/villages/{village_id}/activities",
    status_code=status.HTTP_201_CREATED,
    operation_id="announce_activity",
)
async def announce_activity(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, data: ActivityCreate
) -> ActivityRead:
    """Announce a volunteer activity; attendance earns the claimable bonus item's points."""
    activity = await service.create(session, principal, village_id, data)
    return ActivityRead.model_validate(activity)


@router.get("/villages/{village_id}/activities", operation_id="list_activities")
async def list_activities(
    session: SessionDep, principal: CurrentPrincipal, village_id: uuid.UUID, paging: Paging
) -> Page[ActivityRead]:
    """The village's activities by starting time, with the places taken."""
    activities, cursor = await service.list_activities(session, principal, village_id, paging)
    return Page(items=[ActivityRead.model_validate(a) for a in activities], next_cursor=cursor)


@router.get("/activities/{activity_id}", operation_id="get_activity")
async def get_activity(
    session: SessionDep, principal: CurrentPrincipal, activity_id: uuid.UUID
) -> ActivityRead:
    return ActivityRead.model_validate(await service.get_activity(session, principal, activity_id))


@router.get("/activities/{activity_id}/code", operation_id="get_activity_check_in_code")
async def get_check_in_code(
    request: Request, session: SessionDep, principal: VillageAdmin, activity_id: uuid.UUID
) -> CheckInCode:
    """This minute's check-in code, to show as a QR code on site. A scan is accepted with this
    minute's or the previous minute's code, and only while the activity takes place."""
    return await service.current_code(session, principal, request.app.state.settings, activity_id)


@router.post(
    "/activities/{activity_id}/check-ins",
    status_code=status.HTTP_201_CREATED,
    operation_id="check_in_to_activity",
)
async def check_in(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    activity_id: uuid.UUID,
    data: CheckInCreate,
) -> CheckInRead:
    """A villager checks in by scanning the activity's code; once per person, while places
    last."""
    row = await service.check_in(
        session, principal, request.app.state.settings, activity_id, data.code
    )
    return CheckInRead.model_validate(row)


@router.get("/activities/{activity_id}/check-ins", operation_id="list_activity_check_ins")
async def list_check_ins(
    session: SessionDep, principal: VillageAdmin, activity_id: uuid.UUID
) -> list[CheckInRead]:
    rows = await service.list_check_ins(session, principal, activity_id)
    return [CheckInRead.model_validate(r) for r in rows]


@router.post("/activities/{activity_id}/attendance", operation_id="confirm_activity_attendance")
async def confirm_attendance(
    session: SessionDep, principal: VillageAdmin, activity_id: uuid.UUID, data: AttendanceConfirm
) -> AttendanceRead:
    """Confirm who attended: each attending household's bonus is posted, as for an approved
    claim (once per household, within the item's per-period cap)."""
    activity, households, points = await service.confirm_attendance(
        session, principal, activity_id, data
    )
    return AttendanceRead(
        activity=ActivityRead.model_validate(activity),
        households_awarded=households,
        points_posted=points,
    )
