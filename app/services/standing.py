"""A household's rank: in its village and its village group, for the year and the latest
published period. Ties share a rank; only participating households are ranked, and vetoed
ones are left out (a year-scope veto leaves the household out of the year's ranking)."""

import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.models import (
    Household,
    HouseholdPeriodScore,
    HouseholdYearScore,
    Participation,
    PeriodStatus,
    ScoringPeriod,
)
from app.schemas.ledger import PeriodStanding, StandingRead
from app.security import Principal
from app.services.households import get_household
from app.services.ledger import sees_unpublished, unpublished_points, unpublished_scores
from app.services.points_year import vetoed_in_year_clause


def _ranked(score: Any) -> tuple[ColumnElement[int], ColumnElement[int]]:
    return (
        func.rank().over(order_by=score.desc()),
        func.rank().over(partition_by=col(Household.village_group_id), order_by=score.desc()),
    )


async def standing(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, year: int | None
) -> StandingRead:
    household = await get_household(session, principal, household_id)
    year = year or clock.today().year
    participating = and_(
        col(Household.village_id) == household.village_id,
        col(Household.participation) == Participation.ACTIVE,
    )

    # Villagers see results once published: their ranks leave out what their scores leave out
    # (periods approved, not yet published, and the vetoes found in them).
    hides = not await sees_unpublished(session, principal, household)
    vetoed_year = vetoed_in_year_clause(col(Household.id), year, published_only=hides)
    score: ColumnElement[int] = func.coalesce(col(HouseholdYearScore.score), 0)
    statement = select(col(Household.id)).outerjoin(
        HouseholdYearScore,
        and_(
            col(HouseholdYearScore.household_id) == col(Household.id),
            col(HouseholdYearScore.year) == year,
        ),
    )
    if hides:
        unpublished = unpublished_scores(household.village_id, year)
        score = score - func.coalesce(unpublished.c.points, 0)
        statement = statement.outerjoin(
            unpublished, unpublished.c.household_id == col(Household.id)
        )
    village_rank, group_rank = _ranked(score)
    year_rows = (
        statement.add_columns(
            score.label("score"),
            village_rank.label("village_rank"),
            group_rank.label("group_rank"),
            func.count().over().label("total"),
        )
        .where(participating, ~vetoed_year)
        .subquery()
    )
    mine = (await session.execute(select(year_rows).where(year_rows.c.id == household.id))).first()
    own_score = (
        await session.execute(
            select(col(HouseholdYearScore.score)).where(
                col(HouseholdYearScore.household_id) == household.id,
                col(HouseholdYearScore.year) == year,
            )
        )
    ).scalar_one_or_none()
    total = (
        mine.total
        if mine
        else (await session.execute(select(func.count()).select_from(year_rows))).scalar_one()
    )
    hidden = 0
    if hides:
        _, hidden = await unpublished_points(session, household, year)
    return StandingRead(
        household_id=household.id,
        year=year,
        year_score=(own_score or 0) - hidden,
        rank_in_village=mine.village_rank if mine else None,
        rank_in_group=mine.group_rank if mine else None,
        ranked_households=total,
        latest_period=await _latest_period(session, household, year),
    )


async def _latest_period(
    session: AsyncSession, household: Household, year: int
) -> PeriodStanding | None:
    period = (
        await session.execute(
            select(ScoringPeriod)
            .where(
                col(ScoringPeriod.village_id) == household.village_id,
                col(ScoringPeriod.year) == year,
                col(ScoringPeriod.status).in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]),
            )
            .order_by(col(ScoringPeriod.starts_on).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if period is None:
        return None
    score = col(HouseholdPeriodScore.score)
    village_rank, group_rank = _ranked(score)
    rows = (
        select(
            col(Household.id).label("id"),
            score.label("score"),
            col(HouseholdPeriodScore.vetoed).label("vetoed"),
            village_rank.label("village_rank"),
            group_rank.label("group_rank"),
        )
        .join(HouseholdPeriodScore, col(HouseholdPeriodScore.household_id) == col(Household.id))
        .where(col(HouseholdPeriodScore.period_id) == period.id, ~col(HouseholdPeriodScore.vetoed))
        .subquery()
    )
    mine = (await session.execute(select(rows).where(rows.c.id == household.id))).first()
    own = await session.get(HouseholdPeriodScore, (household.id, period.id))
    if own is None:
        return None
    return PeriodStanding(
        period_id=period.id,
        number=period.number,
        score=own.score,
        vetoed=own.vetoed,
        rank_in_village=mine.village_rank if mine else None,
        rank_in_group=mine.group_rank if mine else None,
    )
