"""A household's rank: in its village and its village group, for the year and the latest
published period, read from the ranks stored at publication (app/services/rankings.py). Ties
share a rank; only participating households are ranked, and vetoed ones are left out (a
year-scope veto leaves the household out of the year's ranking). Periods approved but not yet
published are in no rank: the year's ranks sum published periods only."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.models import (
    Household,
    HouseholdPeriodScore,
    HouseholdYearScore,
    PeriodStatus,
    RankingSummary,
    RankSpan,
    ScoringPeriod,
)
from app.schemas.ledger import PeriodStanding, StandingRead
from app.security import Principal
from app.services.households import get_household
from app.services.ledger import sees_unpublished, unpublished_points
from app.services.rankings import SPAN_OF, stored_rank


async def standing(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, year: int | None
) -> StandingRead:
    household = await get_household(session, principal, household_id)
    year = year or clock.today().year
    # Villagers see results once published: the ranks are stored at publication, and their
    # score leaves out what is approved but not yet published.
    hides = not await sees_unpublished(session, principal, household)
    mine = await stored_rank(session, household.id, year, RankSpan.YEAR, 0)
    ranked = mine is not None and not mine.vetoed
    if mine is not None:
        total = mine.village_ranked
    else:
        total = (
            await session.execute(
                select(col(RankingSummary.ranked)).where(
                    col(RankingSummary.village_id) == household.village_id,
                    col(RankingSummary.year) == year,
                    col(RankingSummary.span) == RankSpan.YEAR,
                    col(RankingSummary.number) == 0,
                )
            )
        ).scalar_one_or_none() or 0
    own_score = (
        await session.execute(
            select(col(HouseholdYearScore.score)).where(
                col(HouseholdYearScore.household_id) == household.id,
                col(HouseholdYearScore.year) == year,
            )
        )
    ).scalar_one_or_none()
    hidden = 0
    if hides:
        _, hidden = await unpublished_points(session, household, year)
    return StandingRead(
        household_id=household.id,
        year=year,
        year_score=(own_score or 0) - hidden,
        rank_in_village=mine.village_rank if ranked else None,
        rank_in_group=mine.group_rank if ranked else None,
        ranked_households=total,
        latest_period=await _latest_period(session, household, year),
    )


async def _latest_period(
    session: AsyncSession, household: Household, year: int
) -> PeriodStanding | None:
    period = (
        await session.execute(
            select(col(ScoringPeriod.id), col(ScoringPeriod.kind), col(ScoringPeriod.number))
            .where(
                col(ScoringPeriod.village_id) == household.village_id,
                col(ScoringPeriod.year) == year,
                col(ScoringPeriod.status).in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]),
            )
            .order_by(col(ScoringPeriod.starts_on).desc())
            .limit(1)
        )
    ).first()
    if period is None:
        return None
    own = (
        await session.execute(
            select(col(HouseholdPeriodScore.score), col(HouseholdPeriodScore.vetoed)).where(
                col(HouseholdPeriodScore.household_id) == household.id,
                col(HouseholdPeriodScore.period_id) == period.id,
            )
        )
    ).first()
    if own is None:
        return None
    ranks = await stored_rank(session, household.id, year, SPAN_OF[period.kind], period.number)
    ranked = ranks is not None and not ranks.vetoed
    return PeriodStanding(
        period_id=period.id,
        number=period.number,
        score=own.score,
        vetoed=own.vetoed,
        rank_in_village=ranks.village_rank if ranked else None,
        rank_in_group=ranks.group_rank if ranked else None,
    )
