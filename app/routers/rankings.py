import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from app import clock
from app.db import SessionDep
from app.errors import Problem
from app.models import RankSpan
from app.pagination import PageParams, page_params
from app.schemas.rankings import HonourRoll, RankingPage, RankScope, TownRanking
from app.security import CurrentPrincipal
from app.services import rankings as service

router = APIRouter(tags=["rankings"])
Year = Annotated[int | None, Query(ge=2000, le=2100, description="Default: this year")]
Span = Annotated[RankSpan, Query(description="month, quarter, or year (the default)")]
Number = Annotated[
    int | None, Query(ge=1, le=12, description="The month (1-12) or quarter (1-4); not for a year")
]
BAD_CURSOR: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The cursor is not valid"}
}


@router.get("/villages/{village_id}/rankings", operation_id="village_ranking", responses=BAD_CURSOR)
async def village_ranking(
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: uuid.UUID,
    paging: Annotated[PageParams, Depends(page_params)],
    span: Span = RankSpan.YEAR,
    year: Year = None,
    number: Number = None,
    scope: RankScope | None = None,
    group_id: uuid.UUID | None = None,
) -> RankingPage:
    """The village's ranking over a month, quarter or year (published periods summed), in
    pages, with the caller's own row. `scope` defaults to the policy's (翁源: village group,
    group after group); `group_id` lists one group."""
    return await service.village_ranking(
        session,
        principal,
        village_id,
        span=span,
        year=year or clock.today().year,
        number=number,
        scope=scope,
        group_id=group_id,
        params=paging,
    )


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


@router.get("/towns/{town_id}/rankings", operation_id="town_ranking")
async def town_ranking(
    session: SessionDep,
    principal: CurrentPrincipal,
    town_id: uuid.UUID,
    span: Span = RankSpan.YEAR,
    year: Year = None,
    number: Number = None,
) -> TownRanking:
    """The town's villages compared over a span: households ranked, average and median score,
    participation. Never another village's households."""
    return await service.town_ranking(
        session, principal, town_id, span=span, year=year or clock.today().year, number=number
    )
