"""The town console's villages side by side, from what each village already records: its
households and how many take part, its shop's outstanding points, claims waiting for the
scoring group, and where its latest period stands."""

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import village_scope
from app.errors import NotFound
from app.models import (
    Claim,
    ClaimStatus,
    Household,
    Participation,
    PeriodStatus,
    Role,
    ScoringPeriod,
    Town,
    Village,
)
from app.security import Principal
from app.services.shop_reports import liability


@dataclass
class VillageRow:
    village_id: uuid.UUID
    name: str
    households: int
    active: int
    claims_pending: int
    outstanding_points: int
    period_label: str | None
    period_id: uuid.UUID | None
    period_status: PeriodStatus | None

    @property
    def participation_percent(self) -> int:
        return round(100 * self.active / self.households) if self.households else 0


@dataclass
class TownOverview:
    town: Town
    year: int
    villages: list[VillageRow]


async def town_overview(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID
) -> TownOverview:
    """Every village of the town the caller may read; a town outside their scope is not found."""
    town = await session.get(Town, town_id)
    scope = village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,))
    villages = (
        (
            await session.execute(
                select(Village)
                .where(col(Village.town_id) == town_id, scope)
                .order_by(col(Village.name), col(Village.id))
            )
        )
        .scalars()
        .all()
    )
    if town is None or not villages:
        raise NotFound("No such town.", code="town.not_found")
    ids = [v.id for v in villages]
    households: dict[uuid.UUID, tuple[int, int]] = {
        village_id: (total, active)
        for village_id, total, active in await session.execute(
            select(
                col(Household.village_id),
                func.count(),
                func.count().filter(col(Household.participation) == Participation.ACTIVE),
            )
            .where(col(Household.village_id).in_(ids))
            .group_by(col(Household.village_id))
        )
    }
    pending: dict[uuid.UUID, int] = dict(
        (
            await session.execute(
                select(col(Claim.village_id), func.count())
                .where(col(Claim.village_id).in_(ids), col(Claim.status) == ClaimStatus.PENDING)
                .group_by(col(Claim.village_id))
            )
        ).all()
    )
    latest = {
        period.village_id: period
        for period in (
            await session.execute(
                select(ScoringPeriod)
                .where(col(ScoringPeriod.village_id).in_(ids))
                .ext(distinct_on(col(ScoringPeriod.village_id)))
                .order_by(col(ScoringPeriod.village_id), col(ScoringPeriod.starts_on).desc())
            )
        ).scalars()
    }
    year = clock.today().year
    rows = []
    for village in villages:
        total, active = households.get(village.id, (0, 0))
        owed = await liability(session, principal, village.id, year)
        period = latest.get(village.id)
        rows.append(
            VillageRow(
                village_id=village.id,
                name=village.name,
                households=total,
                active=active,
                claims_pending=pending.get(village.id, 0),
                outstanding_points=owed.outstanding_points,
                period_label=f"{period.year}年第{period.number}期" if period else None,
                period_id=period.id if period else None,
                period_status=period.status if period else None,
            )
        )
    return TownOverview(town=town, year=year, villages=rows)
