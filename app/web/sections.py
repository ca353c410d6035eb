"""Sections of the village admin's and the town's pages that come from other parts of the
service: the objections queue, the village's ranking and the town's comparison of villages.

A section is one template and one service call: the page awaits `load(session, principal, id)`
(the village's or the town's id) and includes `template` with the result as `data`.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.models import PeriodKind, PeriodStatus, RankSpan
from app.pagination import MAX_LIMIT, PageParams
from app.schemas.rankings import RankingPage, TownRanking
from app.security import Principal
from app.services import periods as periods_service
from app.services import rankings
from app.services.objections.reads import village_queue
from app.services.points_year import quarter_number

Loader = Callable[[AsyncSession, Principal, uuid.UUID], Awaitable[Any]]

# How many households the village admin's page shows of the latest ranking.
RANKING_TOP = 10


@dataclass(frozen=True)
class Section:
    template: str
    load: Loader


async def objection_queue(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> list[Any]:
    """The working group's open objections, oldest first, as the API's queue lists them."""
    listing = await village_queue(
        session, principal, village_id, PageParams(limit=MAX_LIMIT), status=None
    )
    return listing.objections


@dataclass(frozen=True)
class LatestRanking:
    label: str | None  # None: nothing published yet
    page: RankingPage | None


async def latest_ranking(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> LatestRanking:
    """The top of the ranking of the village's latest published period (its month or quarter)."""
    periods = await periods_service.list_periods(session, principal, village_id, None)
    published = [p for p in periods if p.status in (PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)]
    if not published:
        return LatestRanking(None, None)
    period = max(published, key=lambda p: p.starts_on)
    span = RankSpan.MONTH if period.kind is PeriodKind.MONTH else RankSpan.QUARTER
    body = await rankings.village_ranking(
        session,
        principal,
        village_id,
        span=span,
        year=period.year,
        number=period.number,
        scope=None,
        group_id=None,
        params=PageParams(limit=RANKING_TOP),
    )
    page = RankingPage.model_validate_json(body)
    return LatestRanking(f"{period.year}年第{period.number}期", page)


async def town_ranking(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID
) -> TownRanking:
    """The town's villages compared over this quarter's published periods."""
    today = clock.today()
    body = await rankings.town_ranking(
        session,
        principal,
        town_id,
        span=RankSpan.QUARTER,
        year=today.year,
        number=quarter_number(today.month),
    )
    return TownRanking.model_validate_json(body)


VILLAGE_ADMIN_SECTIONS: list[Section] = [
    Section("_objections.html", objection_queue),
    Section("_village_ranking.html", latest_ranking),
]
TOWN_SECTIONS: list[Section] = [Section("_town_ranking.html", town_ranking)]


async def loaded(
    sections: list[Section], session: AsyncSession, principal: Principal, scope_id: uuid.UUID
) -> list[tuple[str, Any]]:
    return [
        (section.template, await section.load(session, principal, scope_id)) for section in sections
    ]
