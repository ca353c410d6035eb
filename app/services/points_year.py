"""The points year: one calendar per policy, asked by periods, claims, the shop, the ledger's
year close and the standings.

It answers, for one policy: which period a day is in and where that period ends, the period's
scoring and publication deadlines, the periods a year is made of, the redemption window and
the round a day's redemption counts in, and which year an entry belongs to. It is pure
arithmetic on dates: "now" comes from app/clock.py, and what the database holds (which periods
exist, which are published) is read by `year_close_blockers`, the one place that says what
stops a year from closing.
"""

import calendar as _months
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.models import (
    Household,
    HouseholdPeriodScore,
    PeriodKind,
    PeriodStatus,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
)
from app.schemas.rules import Deadline, PeriodLength, Policy, VetoScope

QUARTER_STARTS = (1, 4, 7, 10)
PUBLISHED = (PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)


@dataclass(frozen=True)
class PeriodSpan:
    kind: PeriodKind
    number: int  # month 1-12, or quarter 1-4
    starts_on: date
    ends_on: date

    @property
    def label(self) -> str:
        if self.kind is PeriodKind.MONTH:
            return f"{self.starts_on.year}年{self.number}月"
        return f"{self.starts_on.year}年第{self.number}季度"


def month_end(year: int, month: int) -> date:
    return date(year, month, _months.monthrange(year, month)[1])


@dataclass(frozen=True)
class PointsCalendar:
    policy: Policy

    @property
    def kind(self) -> PeriodKind:
        return PeriodKind(self.policy.period.value)

    # Periods

    def period_start(self, day: date) -> date:
        """The first day of the period `day` lies in."""
        if self.policy.period is PeriodLength.MONTH:
            return day.replace(day=1)
        return date(day.year, QUARTER_STARTS[(day.month - 1) // 3], 1)

    def is_period_start(self, day: date) -> bool:
        return self.period_start(day) == day

    def period_of(self, day: date) -> PeriodSpan:
        starts_on = self.period_start(day)
        months = 1 if self.kind is PeriodKind.MONTH else 3
        last_month = starts_on.month + months - 1
        number = starts_on.month if months == 1 else (starts_on.month - 1) // 3 + 1
        return PeriodSpan(self.kind, number, starts_on, month_end(starts_on.year, last_month))

    def periods_of(self, year: int) -> list[PeriodSpan]:
        months = range(1, 13) if self.policy.period is PeriodLength.MONTH else QUARTER_STARTS
        return [self.period_of(date(year, month, 1)) for month in months]

    def year_of(self, day: date) -> int:
        """The points year an entry made on `day` belongs to (periods never straddle 1 January,
        so it is the calendar year; an entry of a period takes its period's year)."""
        return self.period_start(day).year

    # Deadlines

    @staticmethod
    def deadline(ends_on: date, deadline: Deadline | None) -> date | None:
        """A day counted from the period's last month; past the month's end means its last
        day."""
        if deadline is None:
            return None
        month_index = ends_on.month - 1 + deadline.months_after_period_end
        year, month = ends_on.year + month_index // 12, month_index % 12 + 1
        return date(year, month, min(deadline.day, month_end(year, month).day))

    def scoring_due(self, ends_on: date) -> date | None:
        return self.deadline(ends_on, self.policy.deadlines.scoring_due)

    @property
    def publishes_by_quarter(self) -> bool:
        """Months scored one by one and published a quarter at a time (华新: 每月评定,
        每季度公告)."""
        return (
            self.kind is PeriodKind.MONTH and self.policy.publication_period is PeriodLength.QUARTER
        )

    def publication_due(self, ends_on: date) -> date | None:
        """Counted from the end of what is published together: the period, or its quarter
        where months are published by quarter."""
        if self.publishes_by_quarter:
            ends_on = quarter_of(ends_on).ends_on
        return self.deadline(ends_on, self.policy.deadlines.publication_due)

    # Redemption

    def in_redemption_window(self, day: date) -> bool:
        """Listed months (旧县: Jan/Apr/Jul/Oct); without them, any month, since 张堰's
        "quarterly" names no months and its limits then count per block of `every_months`. A
        set day means that day only (past a short month's end: its last day)."""
        window = self.policy.redemption.window
        if window.months and day.month not in window.months:
            return False
        if window.day_of_month is not None:
            return day.day == min(window.day_of_month, month_end(day.year, day.month).day)
        return True

    def round_key(self, day: date) -> str:
        """The redemption round per-household limits count in: the month where rounds are
        monthly or in named months, else the block of `every_months` months (2026-P4:
        Oct-Dec, quarterly)."""
        every = self.policy.redemption.window.every_months
        if self.policy.redemption.window.months or every == 1:
            return f"{day.year}-{day.month:02d}"
        return f"{day.year}-P{(day.month - 1) // every + 1}"


def quarter_number(month: int) -> int:
    """The quarter (1-4) a month (1-12) lies in."""
    return (month - 1) // 3 + 1


def quarter_months(number: int) -> range:
    """The months (1-12) of quarter `number` (1-4)."""
    return range(3 * number - 2, 3 * number + 1)


def quarter_of(day: date) -> PeriodSpan:
    """The calendar quarter `day` lies in (January, April, July, October)."""
    number = quarter_number(day.month)
    months = quarter_months(number)
    return PeriodSpan(
        PeriodKind.QUARTER,
        number,
        date(day.year, months[0], 1),
        month_end(day.year, months[-1]),
    )


def calendar_of(policy: Policy | dict[str, object]) -> PointsCalendar:
    return PointsCalendar(policy if isinstance(policy, Policy) else Policy.model_validate(policy))


# Vetoed for the year


def vetoed_in_year_clause(
    household_id: Any,
    year: int | Any,
    *,
    published_only: bool = False,
    before: date | None = None,
    village_id: Any = None,
) -> ColumnElement[bool]:
    """The one definition of "vetoed for the year" (一票否决 where the policy makes a veto hold
    the whole year, 张堰): a vetoed period score in a period of that year whose rules say so.
    `published_only` for what villagers may see (results not yet published are not theirs to
    read, ranks included); `before` for periods that started before a day (approval asks of
    the earlier periods of the year). `village_id`, the household's village, keys the periods
    read: without it a prepared statement's generic plan may hash the year's periods of every
    village."""
    conditions = [
        col(HouseholdPeriodScore.household_id) == household_id,
        col(HouseholdPeriodScore.vetoed),
        col(ScoringPeriod.id) == col(HouseholdPeriodScore.period_id),
        col(ScoringPeriod.year) == year,
        col(RuleSet.id) == col(ScoringPeriod.rule_set_id),
        col(RuleSet.policy)["veto_scope"].astext == VetoScope.YEAR.value,
    ]
    if village_id is not None:
        conditions.append(col(ScoringPeriod.village_id) == village_id)
    if published_only:
        conditions.append(col(ScoringPeriod.status).in_(PUBLISHED))
    if before is not None:
        conditions.append(col(ScoringPeriod.starts_on) < before)
    return exists().where(*conditions)


async def vetoed_in_year(
    session: AsyncSession,
    village_id: uuid.UUID,
    household_ids: list[uuid.UUID] | None,
    year: int,
    *,
    published_only: bool = False,
    before: date | None = None,
) -> set[uuid.UUID]:
    """The households of the village (all, or those given) vetoed for `year`: they neither
    claim, nor earn activity or claim points, nor (where the policy says so) redeem."""
    if household_ids is not None and not household_ids:
        return set()
    statement = select(col(Household.id)).where(
        col(Household.village_id) == village_id,
        vetoed_in_year_clause(
            col(Household.id), year, published_only=published_only, before=before
        ),
    )
    if household_ids is not None:
        statement = statement.where(col(Household.id).in_(household_ids))
    return set((await session.execute(statement)).scalars())


# The year close


@dataclass(frozen=True)
class YearCloseBlocker:
    """One reason a village's year may not close yet, as the `year-end` command reports it."""

    village_id: uuid.UUID
    code: str
    message: str
    period: str | None = None


async def year_close_blockers(
    session: AsyncSession, village_id: uuid.UUID, year: int
) -> list[YearCloseBlocker]:
    """Everything that stops the village's `year` from closing; empty when it may close.

    The close expires or carries over what the year earned, so every period of the year must
    exist and be published first: December is scored in January (翁源 by the 3rd), and a close
    before it would shut the year on a month nobody scored. The year's periods are its
    calendar's from the day its first approved rules took effect (a village that joined in
    July has no January to wait for). Objections still open or escalated on a period of the
    year hold it too, as they hold the period's own close.
    """
    # Imported here: objections ask the calendar.
    from app.services.objections.reads import open_objections_blocking

    rule_sets = list(
        (
            await session.execute(
                select(RuleSet)
                .where(
                    col(RuleSet.village_id) == village_id,
                    col(RuleSet.year) == year,
                    col(RuleSet.status) == RuleSetStatus.APPROVED,
                )
                .order_by(col(RuleSet.effective_from))
            )
        ).scalars()
    )
    if not rule_sets:
        return [
            YearCloseBlocker(village_id, "year_close.no_rules", f"{year}年没有已备案的积分细则")
        ]
    # Columns, not objects: a session that saw a period before it was published elsewhere
    # would answer with its stale copy.
    periods = {
        p.starts_on: p
        for p in await session.execute(
            select(
                col(ScoringPeriod.id),
                col(ScoringPeriod.kind),
                col(ScoringPeriod.number),
                col(ScoringPeriod.starts_on),
                col(ScoringPeriod.ends_on),
                col(ScoringPeriod.status),
            ).where(col(ScoringPeriod.village_id) == village_id, col(ScoringPeriod.year) == year)
        )
    }
    blockers = []
    for rules in rule_sets:
        following = [r.effective_from for r in rule_sets if r.effective_from > rules.effective_from]
        until = min(following, default=date(year + 1, 1, 1))
        for span in calendar_of(rules.policy).periods_of(year):
            if not rules.effective_from <= span.starts_on < until:
                continue
            period = periods.get(span.starts_on)
            if period is None:
                blockers.append(
                    YearCloseBlocker(
                        village_id, "year_close.period_missing", f"{span.label}考核周期尚未开启",
                        span.label,
                    )
                )  # fmt: skip
            elif period.status not in PUBLISHED:
                blockers.append(
                    YearCloseBlocker(
                        village_id, "year_close.period_unpublished",
                        f"{span.label}考核结果尚未公示（当前：{period.status.value}）", span.label,
                    )
                )  # fmt: skip
    by_id = {p.id: p for p in periods.values()}
    for objection_id, period_id, status in await open_objections_blocking(
        session, village_id, year
    ):
        period = by_id[period_id]
        label = PeriodSpan(period.kind, period.number, period.starts_on, period.ends_on).label
        blockers.append(
            YearCloseBlocker(
                village_id, "year_close.objection_open",
                f"{label}有未处理的异议（{status.value}，编号 {objection_id}）", label,
            )
        )  # fmt: skip
    return blockers
