import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from app import clock
from app.db import SessionDep
from app.errors import Problem
from app.models import RankSpan, Role
from app.pagination import PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.rankings import HonourRoll, RankingPage, RankScope, TownRanking
from app.security import CurrentPrincipal, Principal, ReadingDep, require_roles
from app.services import ranking_forms as forms
from app.services import rankings as service
from app.services.points_year import quarter_number
from app.xlsx import XLSX_MEDIA_TYPE, attachment

router = APIRouter(tags=["rankings"], route_class=QuickRoute)
Year = Annotated[int | None, Query(ge=2000, le=2100, description="Default: this year")]
Span = Annotated[RankSpan, Query(description="month, quarter, or year (the default)")]
Number = Annotated[
    int | None, Query(ge=1, le=12, description="The month (1-12) or quarter (1-4); not for a year")
]
Exporter = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]
BAD_CURSOR: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The cursor is not valid"}
}


@router.get(
    "/villages/{village_id}/rankings",
    operation_id="village_ranking",
    response_model=RankingPage,
    responses=BAD_CURSOR,
)
async def village_ranking(
    reading: ReadingDep,
    village_id: uuid.UUID,
    paging: Annotated[PageParams, Depends(page_params)],
    span: Span = RankSpan.YEAR,
    year: Year = None,
    number: Number = None,
    scope: RankScope | None = None,
    group_id: uuid.UUID | None = None,
) -> Response:
    """The village's ranking over a month, quarter or year (published periods summed), in
    pages, with the caller's own row. `scope` defaults to the policy's (翁源: village group,
    group after group); `group_id` lists one group."""
    # Built by PostgreSQL in RankingPage's shape; passed through as it came.
    body = await service.village_ranking(
        reading.connection,
        reading.principal,
        village_id,
        span=span,
        year=year or clock.today().year,
        number=number,
        scope=scope,
        group_id=group_id,
        params=paging,
    )
    return Response(body, media_type="application/json")


@router.get("/villages/{village_id}/honour-roll", operation_id="village_honour_roll")
async def honour_roll(
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: uuid.UUID,
    span: Span = RankSpan.YEAR,
    year: Year = None,
    number: Number = None,
    top: Annotated[int, Query(ge=1, le=50)] = 10,
) -> HonourRoll:
    """光荣榜: the top households of each village group (or of the village), ties included."""
    return await service.honour_roll(
        session,
        principal,
        village_id,
        span=span,
        year=year or clock.today().year,
        number=number,
        top=top,
    )


@router.get("/towns/{town_id}/rankings", operation_id="town_ranking", response_model=TownRanking)
async def town_ranking(
    reading: ReadingDep,
    town_id: uuid.UUID,
    span: Span = RankSpan.YEAR,
    year: Year = None,
    number: Number = None,
) -> Response:
    """The town's villages compared over a span: households ranked, average and median score,
    participation. Never another village's households."""
    # Built by PostgreSQL in TownRanking's shape; passed through as it came.
    body = await service.town_ranking(
        reading.connection,
        reading.principal,
        town_id,
        span=span,
        year=year or clock.today().year,
        number=number,
    )
    return Response(body, media_type="application/json")


@router.get(
    "/villages/{village_id}/ranking-forms",
    operation_id="export_ranking_form",
    response_class=Response,
    responses={
        200: {
            "content": {XLSX_MEDIA_TYPE: {}},
            "description": "The form as an XLSX workbook",
        }
    },
)
async def export_form(
    session: SessionDep,
    principal: Exporter,
    village_id: uuid.UUID,
    form: forms.RankingForm = forms.RankingForm.HOUSEHOLD_LEDGER,
    year: Year = None,
    number: Number = None,
    group_id: uuid.UUID | None = None,
) -> Response:
    """The seeds' forms: `group_summary` (翁源 小组家庭积分情况汇总表: one group's month, needs
    `group_id`), `household_ledger` (旧县 个案台账: the village's month), `quarterly_summary`
    (张堰 季度汇总考评). Default: this month (or quarter) of this year."""
    today = clock.today()
    if number is None:
        quarterly = form is forms.RankingForm.QUARTERLY_SUMMARY
        number = quarter_number(today.month) if quarterly else today.month
    filename, content = await forms.workbook(
        session, principal, village_id, form, year or today.year, number, group_id
    )
    return Response(
        content, media_type=XLSX_MEDIA_TYPE, headers={"Content-Disposition": attachment(filename)}
    )
