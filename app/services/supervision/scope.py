"""The objects a town supervisor reaches, found through app/authz.py so anything outside their
town is simply not found."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz import town_scope, village_scope
from app.errors import NotFound
from app.models import Role, ScoringPeriod, Town, Village
from app.security import Principal


async def supervised_period(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID, *, lock: bool = False
) -> ScoringPeriod:
    statement = select(ScoringPeriod).where(
        col(ScoringPeriod.id) == period_id, town_scope(principal, col(ScoringPeriod.town_id))
    )
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    period = (await session.execute(statement)).scalar_one_or_none()
    if period is None:
        raise NotFound("No such scoring period.", code="period.not_found")
    return period


async def supervised_town(session: AsyncSession, principal: Principal, town_id: uuid.UUID) -> Town:
    town = (
        await session.execute(
            select(Town).where(col(Town.id) == town_id, town_scope(principal, col(Town.id)))
        )
    ).scalar_one_or_none()
    if town is None:
        raise NotFound("No such town.", code="town.not_found")
    return town


async def overseen_village(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> Village:
    """A village its admins, its town's supervisors and the district oversee."""
    scope = village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,))
    village = (
        await session.execute(select(Village).where(col(Village.id) == village_id, scope))
    ).scalar_one_or_none()
    if village is None:
        raise NotFound("No such village.", code="village.not_found")
    return village


async def overseen_period(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    """A period its village's admins, its town's supervisors and the district oversee."""
    scope = village_scope(principal, col(ScoringPeriod.village_id), roles=(Role.VILLAGE_ADMIN,))
    period = (
        await session.execute(
            select(ScoringPeriod).where(col(ScoringPeriod.id) == period_id, scope)
        )
    ).scalar_one_or_none()
    if period is None:
        raise NotFound("No such scoring period.", code="period.not_found")
    return period
