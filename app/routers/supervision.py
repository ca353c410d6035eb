import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.db import SessionDep
from app.models import Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.supervision import (
    AuditEntryRead,
    FilingAnswer,
    FilingCreate,
    FilingRead,
    InspectedHousehold,
    InspectionCard,
    InspectionDraw,
    InspectionRead,
    ScoringGroupMember,
    TownDashboard,
    VillageDashboard,
    WaiverCreate,
    WaiverRead,
)
from app.security import OrgReader, Principal, VillageAdmin, require_roles
from app.services.supervision import audit_trail, dashboard, filings, groups, inspections, reports
from app.services.supervision.scope import overseen_period
from app.xlsx import XLSX_MEDIA_TYPE, attachment

router = APIRouter(tags=["supervision"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
TownSupervisor = OrgReader
Overseer = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]
Year = Annotated[int | None, Query(ge=2000, le=2100, description="Default: this year")]
Quarter = Annotated[int | None, Query(ge=1, le=4)]
Month = Annotated[int | None, Query(ge=1, le=12)]


def _xlsx(description: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {XLSX_MEDIA_TYPE: {}}, "description": description}}


def _workbook(name_and_bytes: tuple[str, bytes]) -> Response:
    name, data = name_and_bytes
    return Response(
        data, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": attachment(name)}
    )


@router.get("/towns/{town_id}/dashboard", operation_id="get_town_dashboard")
async def town_dashboard(
    session: SessionDep,
    principal: TownSupervisor,
    town_id: uuid.UUID,
    year: Year = None,
    quarter: Quarter = None,
    month: Month = None,
) -> TownDashboard:
    """Every village of the town side by side for a year, quarter or month: participation,
    on-time scoring and publication, score spread and scorers who stand out, filing and random
    checks, pending claims by age, redemptions and the outstanding liability."""
    return await dashboard.town_dashboard(session, principal, town_id, year, quarter, month)


@router.get("/villages/{village_id}/dashboard", operation_id="get_village_dashboard")
async def village_dashboard(
    session: SessionDep,
    principal: Overseer,
    village_id: uuid.UUID,
    year: Year = None,
    quarter: Quarter = None,
    month: Month = None,
) -> VillageDashboard:
    """One village's figures, as the town's dashboard shows them."""
    return await dashboard.village_dashboard(session, principal, village_id, year, quarter, month)


@router.get("/periods/{period_id}/scoring-group", operation_id="get_period_scoring_group")
async def scoring_group(
    session: SessionDep, principal: Overseer, period_id: uuid.UUID
) -> list[ScoringGroupMember]:
    """Who scored the period and how many cards each saved: as recorded at approval, or the
    village's scorers and leaders now before it."""
    period = await overseen_period(session, principal, period_id)
    return await groups.scoring_group(session, period)


@router.post(
    "/periods/{period_id}/scoring-group-waiver",
    status_code=status.HTTP_201_CREATED,
    operation_id="waive_scoring_group_size",
)
async def waive_group_size(
    session: SessionDep, principal: TownSupervisor, period_id: uuid.UUID, body: WaiverCreate
) -> WaiverRead:
    """The town lets this period be approved by a scoring group smaller than the policy's
    `scoring_group_min_size`, with its reason; audited."""
    return await groups.grant_waiver(session, principal, period_id, body.reason)


@router.post("/periods/{period_id}/filing", operation_id="file_period")
async def file_period(
    session: SessionDep, principal: VillageAdmin, period_id: uuid.UUID, body: FilingCreate
) -> FilingRead:
    """报街镇备案: file the published results with the town (again, after a query)."""
    return await filings.file_period(session, principal, period_id, body.note)


@router.get("/periods/{period_id}/filing", operation_id="get_period_filing")
async def get_filing(session: SessionDep, principal: Overseer, period_id: uuid.UUID) -> FilingRead:
    return await filings.get_filing(session, principal, period_id)


@router.post("/periods/{period_id}/filing/acknowledge", operation_id="acknowledge_period_filing")
async def acknowledge_filing(
    session: SessionDep, principal: TownSupervisor, period_id: uuid.UUID, body: FilingAnswer
) -> FilingRead:
    """The town accepts the filed results."""
    return await filings.answer(session, principal, period_id, acknowledge=True, note=body.note)


@router.post("/periods/{period_id}/filing/query", operation_id="query_period_filing")
async def query_filing(
    session: SessionDep, principal: TownSupervisor, period_id: uuid.UUID, body: FilingAnswer
) -> FilingRead:
    """The town sends the filing back with a note; the village files again once answered."""
    return await filings.answer(session, principal, period_id, acknowledge=False, note=body.note)


@router.post(
    "/periods/{period_id}/inspection",
    status_code=status.HTTP_201_CREATED,
    operation_id="draw_period_inspection",
)
async def draw_inspection(
    session: SessionDep, principal: TownSupervisor, period_id: uuid.UUID, body: InspectionDraw
) -> InspectionRead:
    """抽查: draw `size` scored households at random; the same seed draws the same ones."""
    return await inspections.draw(session, principal, period_id, body.size, body.seed)


@router.get("/periods/{period_id}/inspection", operation_id="get_period_inspection")
async def get_inspection(
    session: SessionDep, principal: TownSupervisor, period_id: uuid.UUID
) -> InspectionRead:
    """The sample, each household's village and inspector scores, and their mean difference."""
    return await inspections.get_inspection(session, principal, period_id)


@router.put(
    "/periods/{period_id}/inspection/households/{household_id}",
    operation_id="score_inspected_household",
)
async def score_inspected(
    session: SessionDep,
    principal: TownSupervisor,
    period_id: uuid.UUID,
    household_id: uuid.UUID,
    body: InspectionCard,
) -> InspectedHousehold:
    """The town inspector's card for a sampled household, on the period's own items."""
    return await inspections.score_household(session, principal, period_id, household_id, body)


@router.get("/audit-entries", operation_id="list_audit_entries")
async def list_audit_entries(
    session: SessionDep,
    principal: TownSupervisor,
    paging: Paging,
    town_id: uuid.UUID | None = None,
    village_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditEntryRead]:
    """The audit trail of the caller's towns, oldest first: who, what, when, before and after.
    `kind` is an action (`period.approve`) or its domain (`period`)."""
    items, cursor = await audit_trail.list_entries(
        session,
        principal,
        paging,
        town_id=town_id,
        village_id=village_id,
        actor_id=actor_id,
        kind=kind,
    )
    return Page(items=items, next_cursor=cursor)


@router.get(
    "/villages/{village_id}/reports/quarterly-progress",
    operation_id="export_quarterly_progress_report",
    response_class=Response,
    responses=_xlsx("旧县 附件7: the village's 推进情况第X季度报表"),
)
async def quarterly_progress(
    session: SessionDep,
    principal: Overseer,
    village_id: uuid.UUID,
    year: Year = None,
    quarter: Quarter = None,
) -> Response:
    """Default: the current quarter."""
    y, q = reports.quarter_or_now(year, quarter)
    return _workbook(await reports.quarterly_progress(session, principal, village_id, y, q))


@router.get(
    "/villages/{village_id}/reports/fund-request",
    operation_id="export_fund_request",
    response_class=Response,
    responses=_xlsx("旧县 附件6: the village's 资金拨付申请表 for the quarter"),
)
async def fund_request(
    session: SessionDep,
    principal: Overseer,
    village_id: uuid.UUID,
    year: Year = None,
    quarter: Quarter = None,
) -> Response:
    """The quarter's redemptions household by household, per ledger and passbook, with totals."""
    y, q = reports.quarter_or_now(year, quarter)
    return _workbook(await reports.fund_request(session, principal, village_id, y, q))


@router.get(
    "/towns/{town_id}/reports/quarterly-summary",
    operation_id="export_town_quarterly_summary",
    response_class=Response,
    responses=_xlsx("The town's summary of its villages for the quarter"),
)
async def town_summary(
    session: SessionDep,
    principal: TownSupervisor,
    town_id: uuid.UUID,
    year: Year = None,
    quarter: Quarter = None,
) -> Response:
    y, q = reports.quarter_or_now(year, quarter)
    return _workbook(await reports.town_summary(session, principal, town_id, y, q))
