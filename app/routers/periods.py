import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.db import SessionDep
from app.errors import Problem
from app.pagination import PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.periods import PeriodOpen, PeriodRead, PeriodResults
from app.security import CurrentPrincipal, ReadingDep, VillageAdmin
from app.services import periods as service

router = APIRouter(tags=["periods"], route_class=QuickRoute)


@router.get("/villages/{village_id}/periods", operation_id="list_periods")
async def list_periods(
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> list[PeriodRead]:
    """The village's periods with their deadlines and whether they are late."""
    return await service.list_periods(session, principal, village_id, year)


@router.post(
    "/villages/{village_id}/periods",
    status_code=status.HTTP_201_CREATED,
    operation_id="open_period",
)
async def open_period(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, body: PeriodOpen
) -> PeriodRead:
    """Open the month (or quarter) starting on `starts_on`, scored by the rules then in force."""
    period = await service.open_period(session, principal, village_id, body.starts_on)
    return service.period_read(period)


@router.get("/periods/{period_id}", operation_id="get_period")
async def get_period(
    session: SessionDep, principal: CurrentPrincipal, period_id: uuid.UUID
) -> PeriodRead:
    return service.period_read(await service.get_period(session, principal, period_id))


@router.post("/periods/{period_id}/submit", operation_id="submit_period")
async def submit(session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID) -> PeriodRead:
    """Scoring is done: every participating household has a complete card."""
    return service.period_read(await service.submit(session, principal, period_id))


@router.post("/periods/{period_id}/approve", operation_id="approve_period")
async def approve(session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID) -> PeriodRead:
    """两委审定: compute every household's score and post it to the ledger, all or none."""
    return service.period_read(await service.approve(session, principal, period_id))


@router.post("/periods/{period_id}/publish", operation_id="publish_period")
async def publish(session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID) -> PeriodRead:
    """公示: the results become visible to every villager of the village."""
    return service.period_read(await service.publish(session, principal, period_id))


@router.post("/periods/{period_id}/close", operation_id="close_period")
async def close(session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID) -> PeriodRead:
    """Close a published period once its objection window has ended and none of its objections
    is open or escalated (409 period.objections_pending names them)."""
    return service.period_read(await service.close(session, principal, period_id))


@router.get(
    "/periods/{period_id}/results",
    operation_id="get_period_results",
    response_model=PeriodResults,
    responses={400: {"model": Problem, "description": "The cursor is not valid"}},
)
async def results(
    reading: ReadingDep,
    period_id: uuid.UUID,
    paging: Annotated[PageParams, Depends(page_params)],
    group_id: uuid.UUID | None = None,
) -> Response:
    """The publication list, ranked within the village group where the policy ranks by group
    (翁源), in pages; `group_id` lists one group. Villagers see names as the notice board shows
    them."""
    # Built by PostgreSQL in PeriodResults' shape; passed through as it came.
    body = await service.results(
        reading.connection, reading.principal, period_id, group_id=group_id, params=paging
    )
    return Response(body, media_type="application/json")
