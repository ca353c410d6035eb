"""Scoring periods: open → scoring → submitted → approved (两委审定) → published (公示) → closed."""

import json
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, false, func, insert, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import STAFF_READ_ROLES, village_scope_sql
from app.db import DriverSource, driver_connection, driver_of
from app.errors import Conflict, NotFound, Unprocessable
from app.models import (
    Household,
    HouseholdPeriodScore,
    ItemKind,
    LedgerEntry,
    Objection,
    ObjectionStatus,
    Outcome,
    Participation,
    PeriodKind,
    PeriodStatus,
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    YearEndClose,
)
from app.pagination import PageParams, position_after, position_cursor
from app.schemas.periods import PeriodRead
from app.schemas.rankings import RankScope
from app.schemas.rules import Policy, VetoScope
from app.security import Principal
from app.services import audit, ledger, notifications, rankings
from app.services.notifications import NotificationKind
from app.services.organisation import get_village, get_village_for_admin
from app.services.points_year import calendar_of, quarter_number, quarter_of, vetoed_in_year
from app.services.rankings import notice_board_name as notice_board_name  # moved; re-exported
from app.services.rules import rule_set_in_force
from app.services.scoring import CardLine, PeriodContext, household_result, is_due
from app.services.supervision import groups as scoring_groups
from app.timeutil import SHANGHAI

STAFF = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)


def _read(period: ScoringPeriod | Mapping[str, Any], today: date | None = None) -> PeriodRead:
    """The period as read, from its object or a row of its columns."""
    today = today or clock.today()
    read = PeriodRead.model_validate(period if isinstance(period, ScoringPeriod) else dict(period))
    # Late stays late once the step is done: the town sees a month published after its
    # deadline as late for good, judged by the day (Asia/Shanghai) the step was taken.
    read.scoring_late = _late(read.scoring_due_on, read.submitted_at, today)
    read.publication_late = _late(read.publication_due_on, read.published_at, today)
    return read


def _late(due_on: date | None, done_at: datetime | None, today: date) -> bool:
    if due_on is None:
        return False
    done_on = done_at.astimezone(SHANGHAI).date() if done_at is not None else today
    return done_on > due_on


def period_read(period: ScoringPeriod) -> PeriodRead:
    return _read(period)


def _scope(principal: Principal, *, admin: bool) -> ColumnElement[bool]:
    if principal.is_district_admin:
        return true()
    clauses: list[ColumnElement[bool]] = []
    villages = principal.village_ids(Role.VILLAGE_ADMIN) if admin else principal.village_ids(*STAFF)
    if villages:
        clauses.append(col(ScoringPeriod.village_id).in_(villages))
    if not admin:
        towns = principal.supervised_town_ids()
        if towns:
            clauses.append(col(ScoringPeriod.town_id).in_(towns))
        if principal.household_village_id:
            # Villagers see their village's results once published.
            clauses.append(
                (col(ScoringPeriod.village_id) == principal.household_village_id)
                & col(ScoringPeriod.status).in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED])
            )
    return or_(*clauses) if clauses else false()


async def get_period(
    session: AsyncSession,
    principal: Principal,
    period_id: uuid.UUID,
    *,
    admin: bool = False,
    lock: bool = False,
) -> ScoringPeriod:
    statement = select(ScoringPeriod).where(
        col(ScoringPeriod.id) == period_id, _scope(principal, admin=admin)
    )
    if lock:
        # Overwrite what this session read before the lock: approve reads the period, waits
        # for the chain lock, then checks the status again, which must be the committed one.
        statement = statement.with_for_update().execution_options(populate_existing=True)
    period = (await session.execute(statement)).scalar_one_or_none()
    if period is None:
        raise NotFound("No such scoring period.", code="period.not_found")
    return period


async def list_periods(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int | None
) -> list[PeriodRead]:
    village = await get_village(session, principal, village_id)
    statement = select(ScoringPeriod).where(
        col(ScoringPeriod.village_id) == village.id, _scope(principal, admin=False)
    )
    if year is not None:
        statement = statement.where(col(ScoringPeriod.year) == year)
    rows = (await session.execute(statement.order_by(col(ScoringPeriod.starts_on)))).scalars()
    today = clock.today()
    return [_read(p, today) for p in rows]


async def open_period(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, starts_on: date
) -> ScoringPeriod:
    village = await get_village_for_admin(session, principal, village_id)
    rule_set = await rule_set_in_force(session, village.id, starts_on)
    if rule_set is None:
        raise Conflict(
            "No approved rules are in force on that day.",
            code="period.no_rules",
            title="该日期没有已备案的积分细则",
        )
    points_calendar = calendar_of(rule_set.policy)
    if not points_calendar.is_period_start(starts_on):
        raise Unprocessable(
            "A period starts on the first day of a month (or quarter) as the rules say.",
            code="period.not_period_start",
            title="考核周期须从月（季）初开始",
        )
    if await session.get(YearEndClose, (village.id, starts_on.year)) is not None:
        raise Conflict(
            "That year has been closed; its points have been settled.",
            code="period.year_closed",
            title="该年度已结账，不能再开考核周期",
        )
    taken = await session.execute(
        select(col(ScoringPeriod.id)).where(
            col(ScoringPeriod.village_id) == village.id, col(ScoringPeriod.starts_on) == starts_on
        )
    )
    if taken.first() is not None:
        raise Conflict(
            "This period is already open.", code="period.exists", title="该考核周期已存在"
        )
    span = points_calendar.period_of(starts_on)
    period = ScoringPeriod(
        village_id=village.id,
        town_id=village.town_id,
        rule_set_id=rule_set.id,
        year=points_calendar.year_of(starts_on),
        kind=span.kind,
        number=span.number,
        starts_on=starts_on,
        ends_on=span.ends_on,
        status=PeriodStatus.OPEN,
        scoring_due_on=points_calendar.scoring_due(span.ends_on),
        # Published with its quarter where the rules publish by quarter (华新).
        publication_due_on=points_calendar.publication_due(span.ends_on),
        opened_by=principal.person_id,
    )
    session.add(period)
    await session.flush()
    _audit(session, principal, "period.open", period)
    return period


def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    period: ScoringPeriod,
    before: dict[str, object] | None = None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        "scoring_period",
        period.id,
        before=before,
        after=audit.snapshot(period),
        town_id=period.town_id,
        village_id=period.village_id,
    )


def _not_in(period: ScoringPeriod | PeriodRead, *statuses: PeriodStatus) -> Conflict:
    return Conflict(
        f"The period is {period.status.value}; this needs "
        + " or ".join(s.value for s in statuses),
        code="period.wrong_status",
        title="考核周期当前状态不允许该操作",
        status_now=period.status.value,
    )


async def _due_items(session: AsyncSession, period: ScoringPeriod) -> dict[uuid.UUID, RuleItem]:
    items = (
        await session.execute(
            select(RuleItem).where(
                col(RuleItem.rule_set_id) == period.rule_set_id,
                col(RuleItem.kind).in_([ItemKind.INSPECTION, ItemKind.VETO]),
            )
        )
    ).scalars()
    return {i.id: i for i in items if is_due(i.cadence, period.kind, period.number)}


async def submit(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    """Scoring is done: every participating household has a complete card."""
    period = await get_period(session, principal, period_id, admin=True, lock=True)
    if period.status not in (PeriodStatus.OPEN, PeriodStatus.SCORING):
        raise _not_in(period, PeriodStatus.OPEN, PeriodStatus.SCORING)
    due = set(await _due_items(session, period))
    filled = (
        await session.execute(
            select(col(Household.id), func.count(col(ScorecardLine.id)))
            .select_from(Household)
            .outerjoin(
                Scorecard,
                (col(Scorecard.household_id) == col(Household.id))
                & (col(Scorecard.period_id) == period.id),
            )
            .outerjoin(
                ScorecardLine,
                (col(ScorecardLine.scorecard_id) == col(Scorecard.id))
                & col(ScorecardLine.rule_item_id).in_(due),
            )
            .where(
                col(Household.village_id) == period.village_id,
                col(Household.participation) == Participation.ACTIVE,
            )
            .group_by(col(Household.id))
        )
    ).all()
    incomplete = [household_id for household_id, lines in filled if lines < len(due)]
    if incomplete:
        raise Conflict(
            f"{len(incomplete)} participating households have no complete card.",
            code="period.cards_incomplete",
            title="尚有农户未完成评分",
            households=[str(h) for h in incomplete[:50]],
            count=len(incomplete),
        )
    before = audit.snapshot(period)
    period.status = PeriodStatus.SUBMITTED
    period.submitted_at = clock.now()
    await session.flush()
    _audit(session, principal, "period.submit", period, before)
    return period


async def vetoed_for_the_year(session: AsyncSession, period: ScoringPeriod) -> set[uuid.UUID]:
    """Households of the village vetoed in an earlier period of the same year."""
    return await vetoed_in_year(
        session, period.village_id, None, period.year, before=period.starts_on
    )


class _CardRow(NamedTuple):
    id: uuid.UUID
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int
    note: str


_CARD_LINES = """
    SELECT c.household_id, l.id, l.rule_item_id, l.outcome, l.points, l.note
    FROM scorecard c
    JOIN scorecard_line l ON l.scorecard_id = c.id
    JOIN household h ON h.id = c.household_id
    WHERE c.period_id = $1 AND h.participation = $2 AND l.rule_item_id = ANY($3::uuid[])
"""


async def _cards(
    session: AsyncSession, period_id: uuid.UUID, item_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[CardLine]]:
    """Each participating household's lines for the items due, read through the driver: an
    approval reads twenty thousand lines, and SQLAlchemy's per-row work took longer than the
    query (0.3 s of a 2 s approval)."""
    driver = await driver_connection(session)
    outcomes = {o.value: o for o in Outcome}
    cards: dict[uuid.UUID, list[CardLine]] = defaultdict(list)
    for household_id, line_id, item_id, outcome, points, note in await driver.fetch(
        _CARD_LINES, period_id, Participation.ACTIVE.value, item_ids
    ):
        cards[household_id].append(_CardRow(line_id, item_id, outcomes[outcome], points, note))
    return cards


async def approve(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    """两委审定: compute every household's score and post it, all households or none.

    A household's period score is its card's result plus the bonuses already posted into the
    period (claims.post_bonus). The chain lock is taken before anything is read and held until
    the period is approved, so no bonus slips in between being summed and the period closing
    to bonuses. It is taken before the period's row lock, in the order post_bonus takes them
    (its entry's foreign key into the period locks the period's row), so the two never wait
    on each other in a cycle.
    """
    found = await get_period(session, principal, period_id, admin=True)
    await ledger.lock_chain(session, found.village_id)
    period = await get_period(session, principal, period_id, admin=True, lock=True)
    if period.status is not PeriodStatus.SUBMITTED:
        raise _not_in(period, PeriodStatus.SUBMITTED)
    rule_set = await session.get(RuleSet, period.rule_set_id)
    assert rule_set is not None
    categories = (
        await session.execute(
            select(RuleCategory).where(col(RuleCategory.rule_set_id) == rule_set.id)
        )
    ).scalars()
    context = PeriodContext(
        period_id=period.id,
        year=period.year,
        actor_id=principal.person_id,
        policy=Policy.model_validate(rule_set.policy),
        categories={c.id: c for c in categories},
        items=await _due_items(session, period),
    )
    cards = await _cards(session, period.id, list(context.items))
    year_vetoed = (
        await vetoed_for_the_year(session, period)
        if context.policy.veto_scope is VetoScope.YEAR
        else set()
    )
    results = [
        household_result(context, household_id, lines, vetoed_this_year=household_id in year_vetoed)
        for household_id, lines in cards.items()
    ]
    await scoring_groups.on_approval(session, period, context.policy, results)
    bonuses = dict(
        (
            await session.execute(
                select(col(LedgerEntry.household_id), func.sum(col(LedgerEntry.points)))
                .where(col(LedgerEntry.period_id) == period.id, col(LedgerEntry.counts_score))
                .group_by(col(LedgerEntry.household_id))
            )
        ).all()
    )
    await ledger.post(session, period.village_id, [e for r in results for e in r.entries])
    # A vetoed household's card stops counting, but bonuses posted before the veto was known
    # stay as they were: each was decided on its own evidence, and reversing them here would
    # take points the household may already have spent. The row keeps score = the sum of its
    # entries (invariant 4) and is marked vetoed, so the publication list and the standings
    # leave it out of the ranking all the same.
    scores = {
        r.household_id: {"score": r.score + int(bonuses.get(r.household_id, 0)), "vetoed": r.vetoed}
        for r in results
    }
    for household_id, points in bonuses.items():
        if household_id not in scores:
            # Bonus but no card (the household stopped taking part after its claim).
            scores[household_id] = {"score": int(points), "vetoed": household_id in year_vetoed}
    if scores:
        await session.execute(
            insert(HouseholdPeriodScore),
            [
                {
                    "household_id": household_id,
                    "period_id": period.id,
                    "village_id": period.village_id,
                    **score,
                }
                for household_id, score in scores.items()
            ],
        )
    before = audit.snapshot(period)
    period.status = PeriodStatus.APPROVED
    period.approved_at = clock.now()
    period.approved_by = principal.person_id
    await session.flush()
    _audit(session, principal, "period.approve", period, before)
    await rankings.refresh_period_ranks(session, period.id)
    return period


async def publish(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    """公示: results become visible to the village; objections may come until the window ends.

    Where the policy publishes by quarter what it scores by month (华新), publishing any month
    of the quarter publishes the quarter's three approved months together, and not before all
    three are approved; villagers get one message for the quarter.
    """
    found = await get_period(session, principal, period_id, admin=True)
    rule_set = await session.get(RuleSet, found.rule_set_id)
    assert rule_set is not None
    policy = Policy.model_validate(rule_set.policy)
    if calendar_of(policy).publishes_by_quarter:
        periods = await _quarter_to_publish(session, principal, found)
    else:
        periods = [await get_period(session, principal, period_id, admin=True, lock=True)]
        if periods[0].status is not PeriodStatus.APPROVED:
            raise _not_in(periods[0], PeriodStatus.APPROVED)
    window = policy.deadlines.objection_window_days
    for period in periods:
        before = audit.snapshot(period)
        period.status = PeriodStatus.PUBLISHED
        period.published_at = clock.now()
        period.objection_closes_on = clock.today() + timedelta(days=window)
        await session.flush()
        _audit(session, principal, "period.publish", period, before)
        await rankings.refresh_period_ranks(session, period.id)
    last = periods[-1]
    data = publication_message(last)
    if len(periods) > 1:
        data["thing1"] = f"{last.year}年第{quarter_number(last.number)}季度积分结果"
    await notifications.notify_scored_households(
        session,
        village_id=last.village_id,
        period_id=last.id,
        kind=NotificationKind.PERIOD_PUBLISHED,
        data=data,
    )
    return next(p for p in periods if p.id == period_id)


async def _quarter_to_publish(
    session: AsyncSession, principal: Principal, month: ScoringPeriod
) -> list[ScoringPeriod]:
    """The quarter's three months, locked in calendar order (so two admins publishing two
    months of one quarter queue rather than deadlock), all approved."""
    quarter = quarter_of(month.starts_on)
    statement = (
        select(ScoringPeriod)
        .where(
            col(ScoringPeriod.village_id) == month.village_id,
            col(ScoringPeriod.kind) == PeriodKind.MONTH,
            col(ScoringPeriod.starts_on) >= quarter.starts_on,
            col(ScoringPeriod.starts_on) <= quarter.ends_on,
            _scope(principal, admin=True),
        )
        .order_by(col(ScoringPeriod.starts_on))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    months = list((await session.execute(statement)).scalars())
    requested = next(p for p in months if p.id == month.id)
    if requested.status is not PeriodStatus.APPROVED:
        raise _not_in(requested, PeriodStatus.APPROVED)
    ready = {p.number for p in months if p.status is PeriodStatus.APPROVED}
    first = quarter.starts_on.month
    waiting = [n for n in range(first, first + 3) if n not in ready]
    if waiting:
        raise Conflict(
            "The rules publish by quarter: every month of the quarter must be approved first.",
            code="period.quarter_incomplete",
            title="本季度尚有月份未审定，按季度公告",
            months=waiting,
        )
    return months


def publication_message(period: ScoringPeriod) -> dict[str, str]:
    """The period_published template: what was published, and until when objections come."""
    if period.kind is PeriodKind.MONTH:
        label = f"{period.year}年{period.number}月积分结果"
    else:
        label = f"{period.year}年第{period.number}季度积分结果"
    closes = period.objection_closes_on
    assert closes is not None
    return {
        "thing1": label,
        "date2": f"{closes.year}年{closes.month}月{closes.day}日",
        "thing3": "请进小程序查看本户得分",
    }


async def close(session: AsyncSession, principal: Principal, period_id: uuid.UUID) -> ScoringPeriod:
    period = await get_period(session, principal, period_id, admin=True, lock=True)
    if period.status is not PeriodStatus.PUBLISHED:
        raise _not_in(period, PeriodStatus.PUBLISHED)
    if period.objection_closes_on is not None and clock.today() <= period.objection_closes_on:
        raise Conflict(
            "Objections may still be filed.",
            code="period.objection_window_open",
            title="异议期尚未结束",
            objection_closes_on=period.objection_closes_on.isoformat(),
        )
    # Filings shared-lock the period, so none slips in behind this check (the row is locked).
    pending = (
        await session.execute(
            select(col(Objection.id), col(Objection.status))
            .where(
                col(Objection.period_id) == period.id,
                col(Objection.status).in_([ObjectionStatus.OPEN, ObjectionStatus.ESCALATED]),
            )
            .order_by(col(Objection.created_at), col(Objection.id))
        )
    ).all()
    if pending:
        raise Conflict(
            f"{len(pending)} objections on the period are not ruled yet.",
            code="period.objections_pending",
            title="尚有异议未处理完毕，不能关闭考核周期",
            open=[str(i) for i, s in pending if s is ObjectionStatus.OPEN],
            escalated=[str(i) for i, s in pending if s is ObjectionStatus.ESCALATED],
        )
    before = audit.snapshot(period)
    period.status = PeriodStatus.CLOSED
    period.closed_at = clock.now()
    await session.flush()
    _audit(session, principal, "period.close", period, before)
    return period


# The publication list's page in one statement, sent straight to the driver: the period within
# the caller's scope ($2-$5, as _scope(admin=False) has it), whether the caller is the village's
# staff ($6: the villages of STAFF_READ_ROLES; staff see full names and unpublished previews),
# the stored list if the caller may see it (rankings.board), and one page of it along the index
# of its order (rankings.ranked_rows: one of the three laterals runs, chosen by the asked group
# $7 and the village's policy), its rows built as PeriodResultRow's JSON by PostgreSQL. $8 the
# position after which the page starts, $9 the page's size. A household's span and its period's
# kind share their words ('month', 'quarter').
_PAGE_COLUMNS = """
    r.household_id, r.household_number, r.village_group_id, r.score, r.vetoed,
    r.village_rank, r.group_rank
"""
_RESULTS = f"""
    WITH p AS (
        SELECT p.*, {village_scope_sql("p.village_id", everyone="$2", villages="$6", towns="$4")}
               AS staff
        FROM scoring_period p
        WHERE p.id = $1 AND ($2::boolean OR p.village_id = ANY($3::uuid[])
              OR p.town_id = ANY($4::uuid[])
              OR (p.village_id = $5::uuid AND p.status IN ('published', 'closed')))
    ), b AS (
        SELECT s.village_id, s.year, s.span, s.number,
               $7::uuid IS NOT NULL OR s.ranks_by_group AS by_group,
               p.staff OR s.lists_vetoed AS lists_vetoed
        FROM p JOIN ranking_summary s
          ON s.village_id = p.village_id AND s.year = p.year AND s.span = p.kind
         AND s.number = p.number
        WHERE p.status IN ('approved', 'published', 'closed') AND (s.published OR p.staff)
    ), page AS (
        {rankings.ranked_page_sql(_PAGE_COLUMNS, group="$7", after="$8", size="$9")}
    ), numbered AS (
        SELECT page.*, row_number() OVER (ORDER BY position) AS n FROM page
    )
    SELECT p.id, p.village_id, p.rule_set_id, p.year, p.kind, p.number, p.starts_on,
           p.ends_on, p.status, p.scoring_due_on, p.publication_due_on, p.objection_closes_on,
           p.created_at, p.submitted_at, p.approved_at, p.published_at, p.closed_at,
           $7::uuid IS NULL OR EXISTS (
               SELECT FROM village_group g WHERE g.id = $7::uuid AND g.village_id = p.village_id
           ) AS group_found,
           b.village_id IS NOT NULL AS found,
           coalesce(b.by_group, $7::uuid IS NOT NULL) AS by_group,
           (SELECT max(position) FROM numbered WHERE n <= $9::integer) AS last_position,
           (SELECT count(*) FROM numbered) > $9::integer AS more,
           (SELECT string_agg(row_to_json(r)::text, ',' ORDER BY x.n)
            FROM numbered x
            LEFT JOIN household_member m ON m.household_id = x.household_id AND m.is_head
            LEFT JOIN person head ON head.id = m.person_id
            CROSS JOIN LATERAL (SELECT
                x.household_id,
                x.household_number AS number,
                CASE WHEN p.staff THEN head.name
                    ELSE left(head.name, 1) || repeat('*', char_length(head.name) - 1) END
                    AS head_name,
                x.village_group_id,
                x.score,
                x.vetoed,
                CASE WHEN b.by_group THEN x.group_rank ELSE x.village_rank END AS rank,
                EXISTS (
                    SELECT FROM objection o
                    WHERE o.household_id = x.household_id AND o.period_id = p.id
                      AND o.status = 'upheld') AS amended,
                x.village_rank AS rank_in_village,
                x.group_rank AS rank_in_group
            ) r
            WHERE x.n <= $9::integer
           ) AS rows
    FROM p LEFT JOIN b ON true
"""


async def results(
    source: DriverSource,
    principal: Principal,
    period_id: uuid.UUID,
    *,
    group_id: uuid.UUID | None = None,
    params: PageParams | None = None,
) -> str:
    """The publication list, a page at a time, as PeriodResults' JSON, read from the ranks
    stored at approval and publication: ranked within the village group where the policy ranks
    by group (翁源), else in the village; vetoed households marked, or left out for villagers
    as the policy says."""
    params = params or PageParams()
    after, bad_cursor = position_after(params)
    driver = await driver_of(source)
    row = await driver.fetchrow(
        _RESULTS,
        period_id,
        principal.is_district_admin,
        list(principal.village_ids(*STAFF)),
        list(principal.supervised_town_ids()),
        principal.household_village_id,
        list(principal.village_ids(*STAFF_READ_ROLES)),
        group_id,
        after,
        params.limit,
    )
    if row is None:
        raise NotFound("No such scoring period.", code="period.not_found")
    period = _read(row)
    if period.status not in (PeriodStatus.APPROVED, PeriodStatus.PUBLISHED, PeriodStatus.CLOSED):
        raise _not_in(period, PeriodStatus.APPROVED, PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)
    if not row["group_found"]:
        raise NotFound("No such village group.", code="village_group.not_found")
    if row["found"] and bad_cursor is not None:
        raise bad_cursor
    scope = RankScope.VILLAGE_GROUP if row["by_group"] else RankScope.VILLAGE
    cursor = position_cursor(row["last_position"]) if row["more"] else None
    return (
        f'{{"period":{period.model_dump_json()},"rank_within":"{scope.value}",'
        f'"rows":[{row["rows"] or ""}],"next_cursor":{json.dumps(cursor)}}}'
    )
