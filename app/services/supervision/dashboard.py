"""The town's dashboard: per village, side by side, for a month, quarter or year.

Built to be read on a phone: a handful of grouped queries for the whole town, whatever its
size. The score spread is read from `period_figures`, worked out at approval; everything else
is a grouped count over an indexed key. The page is a list of sections, each filling its own
fields of every village's figures, so a new concern (objections) is one more section.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.errors import Unprocessable
from app.models import (
    Claim,
    ClaimStatus,
    Household,
    HouseholdBalance,
    Inspection,
    InspectionHousehold,
    Objection,
    ObjectionStatus,
    OrderStatus,
    Participation,
    PeriodFigures,
    PeriodFiling,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
    ShopOrder,
    Village,
)
from app.schemas.rules import Policy
from app.schemas.supervision import (
    FilingFigures,
    InspectionFigures,
    Liability,
    PendingAges,
    PeriodFiguresRead,
    Redemptions,
    ScorerFigures,
    TownDashboard,
    VillageDashboard,
    Window,
)
from app.schemas.supervision import Participation as ParticipationRead
from app.security import Principal
from app.services.points_year import month_end, quarter_months
from app.services.supervision.scope import overseen_village, supervised_town
from app.timeutil import SHANGHAI

Fields = dict[uuid.UUID, dict[str, Any]]
Section = Callable[[AsyncSession, list[uuid.UUID], Window], Awaitable[Fields]]


def window(year: int | None, quarter: int | None, month: int | None) -> Window:
    if quarter is not None and month is not None:
        raise Unprocessable(
            "Ask for a quarter or a month, not both.",
            code="dashboard.window_ambiguous",
            title="请只选择季度或月份之一",
        )
    year = year or clock.today().year
    if month is not None:
        first, last = month, month
    elif quarter is not None:
        first, last = quarter_months(quarter)[0], quarter_months(quarter)[-1]
    else:
        first, last = 1, 12
    return Window(
        year=year,
        quarter=quarter,
        month=month,
        starts_on=date(year, first, 1),
        ends_on=month_end(year, last),
    )


def _instant(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), SHANGHAI)


def days_late(due: date | None, done_at: datetime | None, today: date) -> int | None:
    """Days past `due` the step was done, or is by today if not done; 0 when on time."""
    if due is None:
        return None
    done = done_at.astimezone(SHANGHAI).date() if done_at else today
    return max(0, (done - due).days)


def _days_between(start: datetime | None, end: datetime | None, today: date) -> int | None:
    if start is None:
        return None
    last = end.astimezone(SHANGHAI).date() if end else today
    return (last - start.astimezone(SHANGHAI).date()).days


async def _periods(session: AsyncSession, ids: list[uuid.UUID], w: Window) -> Fields:
    checked = (
        select(
            col(InspectionHousehold.period_id).label("period_id"),
            func.count().label("sampled"),
            func.count(col(InspectionHousehold.inspector_score)).label("inspected"),
            func.avg(
                func.abs(
                    col(InspectionHousehold.inspector_score)
                    - col(InspectionHousehold.village_score)
                )
            ).label("mean_abs"),
        )
        .join(Inspection, col(Inspection.period_id) == col(InspectionHousehold.period_id))
        .where(col(Inspection.village_id).in_(ids))
        .group_by(col(InspectionHousehold.period_id))
        .subquery()
    )
    rows = await session.execute(
        select(
            ScoringPeriod,
            PeriodFigures,
            PeriodFiling,
            checked.c.sampled,
            checked.c.inspected,
            checked.c.mean_abs,
        )
        .outerjoin(PeriodFigures, col(PeriodFigures.period_id) == col(ScoringPeriod.id))
        .outerjoin(PeriodFiling, col(PeriodFiling.period_id) == col(ScoringPeriod.id))
        .outerjoin(checked, checked.c.period_id == col(ScoringPeriod.id))
        .where(
            col(ScoringPeriod.village_id).in_(ids),
            col(ScoringPeriod.starts_on) >= w.starts_on,
            col(ScoringPeriod.starts_on) <= w.ends_on,
        )
        .order_by(col(ScoringPeriod.village_id), col(ScoringPeriod.starts_on))
    )
    today = clock.today()
    out: Fields = {
        v: {"periods": [], "periods_late": 0, "periods_filed": 0, "periods_queried": 0} for v in ids
    }
    for period, figures, filing, sampled, inspected, mean_abs in rows:
        read = _period(period, figures, filing, today)
        if sampled:
            read.inspection = InspectionFigures(
                sampled=sampled,
                inspected=inspected,
                mean_abs_difference=round(float(mean_abs), 2) if mean_abs is not None else None,
            )
        village = out[period.village_id]
        village["periods"].append(read)
        village["periods_late"] += bool(read.scoring_days_late or read.publication_days_late)
        village["periods_filed"] += filing is not None
        village["periods_queried"] += bool(filing and filing.status == "queried")
    return out


def _period(
    period: ScoringPeriod,
    figures: PeriodFigures | None,
    filing: PeriodFiling | None,
    today: date,
) -> PeriodFiguresRead:
    read = PeriodFiguresRead(
        period_id=period.id,
        kind=period.kind,
        number=period.number,
        starts_on=period.starts_on,
        status=period.status,
        scoring_due_on=period.scoring_due_on,
        scoring_days_late=days_late(period.scoring_due_on, period.submitted_at, today),
        publication_due_on=period.publication_due_on,
        publication_days_late=days_late(period.publication_due_on, period.published_at, today),
        published_at=period.published_at,
        filing=FilingFigures(
            status=filing.status if filing else None,
            filed_at=filing.filed_at if filing else None,
            days_after_publication=_days_between(
                period.published_at, filing.filed_at if filing else None, today
            ),
            answer_note=filing.answer_note if filing else "",
        ),
    )
    if figures is not None:
        read.households_scored = figures.households_scored
        read.households_vetoed = figures.households_vetoed
        read.full_score = figures.full_score
        read.mean = figures.mean
        read.std_dev = figures.std_dev
        read.share_full = figures.share_full
        read.distinct_scores = figures.distinct_scores
        read.group_size = figures.group_size
        read.group_min_size = figures.group_min_size
        read.group_size_waived = figures.waived
        read.standout_scorers = [
            ScorerFigures.model_validate(s) for s in figures.scorers if s["flags"]
        ]
    return read


async def _rates(session: AsyncSession, ids: list[uuid.UUID], w: Window) -> Fields:
    """The yuan a point is shown as, by the rules in force at the window's end (or today)."""
    on = min(w.ends_on, clock.today())
    rows = await session.execute(
        select(col(RuleSet.village_id), col(RuleSet.policy))
        .ext(distinct_on(col(RuleSet.village_id)))
        .where(
            col(RuleSet.village_id).in_(ids),
            col(RuleSet.status) == RuleSetStatus.APPROVED,
            col(RuleSet.year) == on.year,
            col(RuleSet.effective_from) <= on,
        )
        .order_by(col(RuleSet.village_id), col(RuleSet.effective_from).desc())
    )
    found = {v: Policy.model_validate(p).redemption.yuan_per_point for v, p in rows}
    return {v: {"yuan_per_point": found.get(v)} for v in ids}


async def _counts(session: AsyncSession, ids: list[uuid.UUID], w: Window) -> Fields:
    """Participation, pending claims by age, redemptions and liability: four per-village
    aggregates in one statement (lateral subqueries, each keyed by village), one round trip.

    Claims are those pending now, whatever the window: what waits is what the town must chase.
    Redemptions are collected orders in the window (refunded ones are no longer collected).
    Liability is what households could still spend now."""
    village = col(Village.id)
    active = col(Household.participation) == Participation.ACTIVE
    eligible = (col(Household.participation) != Participation.LEFT) & col(Household.has_resident)
    households = (
        select(
            func.count().filter(active).label("participating"),
            func.count().filter(eligible).label("eligible"),
        )
        .where(col(Household.village_id) == village)
        .lateral("households")
    )
    now = clock.now()
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    claims = (
        select(*_ages(col(Claim.created_at), week, month))
        .where(col(Claim.village_id) == village, col(Claim.status) == ClaimStatus.PENDING)
        .lateral("claims")
    )
    orders = (
        select(
            func.count().label("orders"),
            func.coalesce(func.sum(col(ShopOrder.points)), 0).label("points"),
        )
        .where(
            col(ShopOrder.village_id) == village,
            col(ShopOrder.status) == OrderStatus.COLLECTED,
            col(ShopOrder.collected_at) >= _instant(w.starts_on),
            col(ShopOrder.collected_at) < _instant(w.ends_on + timedelta(days=1)),
        )
        .lateral("orders")
    )
    balances = (
        select(func.coalesce(func.sum(col(HouseholdBalance.balance)), 0).label("owed"))
        .where(col(HouseholdBalance.village_id) == village)
        .lateral("balances")
    )
    rows = await session.execute(
        select(
            village,
            households.c.participating,
            households.c.eligible,
            claims.c.total,
            claims.c.recent,
            claims.c.waiting,
            claims.c.old,
            orders.c.orders,
            orders.c.points,
            balances.c.owed,
        )
        .select_from(Village)
        .join(households, true())
        .join(claims, true())
        .join(orders, true())
        .join(balances, true())
        .where(village.in_(ids))
    )
    return {
        row.id: {
            "participation": ParticipationRead(
                participating=row.participating, eligible=row.eligible
            ),
            "claims_pending": PendingAges(
                total=row.total,
                under_7_days=row.recent,
                days_7_to_30=row.waiting,
                over_30_days=row.old,
            ),
            "redemptions": Redemptions(orders=row.orders, points=int(row.points)),
            "liability": Liability(outstanding_points=int(row.owed)),
        }
        for row in rows
    }


def _ages(moment: Any, week: datetime, month: datetime) -> tuple[Any, ...]:
    return (
        func.count().label("total"),
        func.count().filter(moment > week).label("recent"),
        func.count().filter(and_(moment <= week, moment > month)).label("waiting"),
        func.count().filter(moment <= month).label("old"),
    )


async def _objections(session: AsyncSession, ids: list[uuid.UUID], w: Window) -> Fields:
    """Objections waiting now, whatever the window, as claims are: open ones by the days since
    they were filed (the village working group's), escalated ones by the days since they were
    escalated (the town's own). One statement, keyed by (village, status)."""
    now = clock.now()
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    waiting_since = case(
        (col(Objection.status) == ObjectionStatus.ESCALATED, col(Objection.escalated_at)),
        else_=col(Objection.created_at),
    )
    rows = await session.execute(
        select(col(Objection.village_id), col(Objection.status), *_ages(waiting_since, week, month))
        .where(
            col(Objection.village_id).in_(ids),
            col(Objection.status).in_([ObjectionStatus.OPEN, ObjectionStatus.ESCALATED]),
        )
        .group_by(col(Objection.village_id), col(Objection.status))
    )
    out: Fields = {
        v: {"objections_open": PendingAges(), "objections_escalated": PendingAges()} for v in ids
    }
    for row in rows:
        field = (
            "objections_escalated" if row.status is ObjectionStatus.ESCALATED else "objections_open"
        )
        out[row.village_id][field] = PendingAges(
            total=row.total, under_7_days=row.recent, days_7_to_30=row.waiting, over_30_days=row.old
        )
    return out


SECTIONS: tuple[Section, ...] = (_periods, _rates, _counts, _objections)


async def _villages(
    session: AsyncSession, villages: list[tuple[uuid.UUID, str]], w: Window
) -> list[VillageDashboard]:
    ids = [v for v, _ in villages]
    fields: dict[uuid.UUID, dict[str, Any]] = {v: {} for v in ids}
    for section in SECTIONS:
        for village_id, values in (await section(session, ids, w)).items():
            fields[village_id].update(values)
    out = []
    for village_id, name in villages:
        values = fields[village_id]
        rate: Decimal | None = values["yuan_per_point"]
        if rate is not None:
            values["redemptions"].yuan = rate * values["redemptions"].points
            values["liability"].outstanding_yuan = rate * values["liability"].outstanding_points
        out.append(VillageDashboard(village_id=village_id, name=name, **values))
    return out


async def town_dashboard(
    session: AsyncSession,
    principal: Principal,
    town_id: uuid.UUID,
    year: int | None,
    quarter: int | None,
    month: int | None,
) -> TownDashboard:
    town = await supervised_town(session, principal, town_id)
    w = window(year, quarter, month)
    villages = [
        (village_id, name)
        for village_id, name in await session.execute(
            select(col(Village.id), col(Village.name))
            .where(col(Village.town_id) == town.id)
            .order_by(col(Village.name), col(Village.id))
        )
    ]
    return TownDashboard(
        town_id=town.id, name=town.name, window=w, villages=await _villages(session, villages, w)
    )


async def village_dashboard(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    year: int | None,
    quarter: int | None,
    month: int | None,
) -> VillageDashboard:
    village = await overseen_village(session, principal, village_id)
    [figures] = await _villages(session, [(village.id, village.name)], window(year, quarter, month))
    return figures
