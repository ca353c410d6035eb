import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from app.db import SessionDep
from app.models import NotificationStatus
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.notifications import NotificationRead
from app.security import VillageAdmin
from app.services import notifications as service

router = APIRouter(tags=["notifications"], route_class=QuickRoute)


@router.get("/villages/{village_id}/notifications", operation_id="list_village_notifications")
async def list_notifications(
    session: SessionDep,
    principal: VillageAdmin,
    village_id: uuid.UUID,
    paging: Annotated[PageParams, Depends(page_params)],
    status: NotificationStatus | None = None,
) -> Page[NotificationRead]:
    """The village's WeChat messages, oldest first; `status=failed` or `refused` shows whom
    they did not reach."""
    rows, cursor = await service.list_for_village(session, principal, village_id, paging, status)
    return Page(items=[NotificationRead.model_validate(r) for r in rows], next_cursor=cursor)
