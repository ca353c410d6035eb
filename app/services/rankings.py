"""Rankings (排名, 光荣榜): computed and stored when results are published, read by key.

A period's publication (and an amendment of a published result after an objection) calls
`refresh_period_ranks`, which rewrites the stored ranks of the spans the period belongs to: the
period itself, the quarter over its months and the year, each summing published periods only.
Every read is then a keyed lookup or one page of an index, whatever the village's size.
"""

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ARRAY, Boolean, Integer, Uuid, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import STAFF_READ_ROLES
from app.errors import BadRequest, NotFound, Unprocessable
from app.models import (
    HouseholdMember,
    HouseholdPeriodScore,
    HouseholdRank,
    PeriodKind,
    PeriodStatus,
    Person,
    RankingSummary,
    RankSpan,
    RuleSet,
    ScoringPeriod,
    Village,
    VillageGroup,
)
from app.pagination import PageParams, _decode, _encode
from app.schemas.rankings import (
    HonourBoard,
    HonourRoll,
    PeriodScore,
    RankingPage,
    RankRow,
    RankScope,
    TownRanking,
    VillageComparison,
)
from app.schemas.rules import AwardScope, Policy, VetoedInRankings, VetoScope
from app.security import Principal
from app.services.organisation import get_village
from app.services.points_year import quarter_months, quarter_number

PUBLISHED = (PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)
SPAN_OF = {PeriodKind.MONTH: RankSpan.MONTH, PeriodKind.QUARTER: RankSpan.QUARTER}
# Two keys for pg_advisory_xact_lock: this space, and the village. Refreshes of one village
# (two months published at once, an objection amending one) take turns; the lock is the last
# one a refresh takes, so it closes no cycle with the period and chain locks before it.
_LOCK_SPACE = 0x524B

_LOCK = text("SELECT pg_advisory_xact_lock(:space, hashtext(CAST(:village AS text)))")
_DELETE = text(
    "DELETE FROM household_rank"
    " WHERE village_id = :village AND year = :year AND span = :span AND number = :number"
)
# Ties share a rank (rank(): 1, 1, 3) and are listed by 户号; a vetoed household has no rank and
# is listed after the ranked ones. Only households taking part are ranked.
_INSERT = text(
    """
    WITH scores AS (
        SELECT s.household_id, h.village_group_id, h.number AS household_number,
               sum(s.score)::int AS score, (:count_vetoes AND bool_or(s.vetoed)) AS vetoed
        FROM household_period_score s JOIN household h ON h.id = s.household_id
        WHERE s.period_id = ANY(:periods) AND h.participation = 'active'
        GROUP BY s.household_id, h.village_group_id, h.number
    ), ranked AS (
        SELECT sc.*, g.name AS group_name,
            CASE WHEN NOT vetoed THEN rank() OVER (PARTITION BY vetoed ORDER BY score DESC) END
                AS village_rank,
            CASE WHEN NOT vetoed THEN rank() OVER (
                PARTITION BY vetoed, sc.village_group_id ORDER BY score DESC) END AS group_rank,
            row_number() OVER (ORDER BY vetoed, score DESC, household_number) AS village_position,
            row_number() OVER (
                PARTITION BY sc.village_group_id ORDER BY vetoed, score DESC, household_number
            ) AS group_position,
            count(*) FILTER (WHERE NOT vetoed) OVER () AS village_ranked,
            count(*) FILTER (WHERE NOT vetoed) OVER (PARTITION BY sc.village_group_id)
                AS group_ranked
        FROM scores sc LEFT JOIN village_group g ON g.id = sc.village_group_id
    )
    INSERT INTO household_rank (
        household_id, year, span, number, village_id, village_group_id, household_number, score,
        vetoed, village_rank, group_rank, village_position, group_position, board_position,
        village_ranked, group_ranked)
    SELECT household_id, CAST(:year AS integer), CAST(:span AS varchar),
        CAST(:number AS integer), CAST(:village AS uuid), village_group_id, household_number,
        score, vetoed, village_rank, group_rank, village_position, group_position,
        CASE WHEN :by_group THEN row_number() OVER (
            ORDER BY group_name NULLS LAST, village_group_id, group_position)
        ELSE village_position END,
        village_ranked, group_ranked
    FROM ranked
    """
).bindparams(
    bindparam("periods", type_=ARRAY(Uuid())),
    bindparam("count_vetoes", type_=Boolean()),
    bindparam("by_group", type_=Boolean()),
    bindparam("village", type_=Uuid()),
)
_SUMMARY = text(
    """
    INSERT INTO ranking_summary (
        village_id, year, span, number, town_id, published, ranks_by_group, lists_vetoed,
        households, participating, ranked, vetoed, average, median, top_score, refreshed_at)
    SELECT CAST(:village AS uuid), CAST(:year AS integer), CAST(:span AS varchar),
        CAST(:number AS integer), CAST(:town AS uuid), CAST(:published AS boolean),
        CAST(:by_group AS boolean), CAST(:lists_vetoed AS boolean),
        (SELECT count(*) FROM household WHERE village_id = :village AND participation <> 'left'),
        (SELECT count(*) FROM household WHERE village_id = :village AND participation = 'active'),
        count(*) FILTER (WHERE NOT r.vetoed), count(*) FILTER (WHERE r.vetoed),
        round(avg(r.score) FILTER (WHERE NOT r.vetoed), 2),
        round(CAST(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.score)
            FILTER (WHERE NOT r.vetoed) AS numeric), 2),
        max(r.score) FILTER (WHERE NOT r.vetoed), CAST(:now AS timestamptz)
    FROM household_rank r
    WHERE r.village_id = :village AND r.year = :year AND r.span = :span AND r.number = :number
    ON CONFLICT (village_id, year, span, number) DO UPDATE SET
        town_id = excluded.town_id, published = excluded.published,
        ranks_by_group = excluded.ranks_by_group, lists_vetoed = excluded.lists_vetoed,
        households = excluded.households, participating = excluded.participating,
        ranked = excluded.ranked, vetoed = excluded.vetoed, average = excluded.average,
        median = excluded.median, top_score = excluded.top_score,
        refreshed_at = excluded.refreshed_at
    """
).bindparams(
    bindparam("village", type_=Uuid()),
    bindparam("town", type_=Uuid()),
    bindparam("published", type_=Boolean()),
    bindparam("by_group", type_=Boolean()),
    bindparam("lists_vetoed", type_=Boolean()),
    bindparam("year", type_=Integer()),
    bindparam("number", type_=Integer()),
)


@dataclass(frozen=True)
class _Span:
    span: RankSpan
    number: int
    periods: list[uuid.UUID]
    # A period's own span counts its vetoes; a sum over periods only where a veto costs the
    # year (张堰), since a month's veto (旧县) cancels that month and nothing more.
    count_vetoes: bool
    published: bool


async def refresh_period_ranks(session: AsyncSession, period_id: uuid.UUID) -> None:
    """Store the ranks of every span the period is part of, from its current scores.

    Approval stores the period's own span (unpublished: for the staff's preview); publication,
    and an upheld objection amending a published period, store it again published, with the
    quarter and the year that sum the village's published periods. Flush before calling:
    it reads the period's scores and status from the database.
    """
    # Its status as stored now, whatever this session read of it before.
    period = await session.get(ScoringPeriod, period_id, populate_existing=True)
    assert period is not None
    rule_set = await session.get(RuleSet, period.rule_set_id)
    assert rule_set is not None
    policy = Policy.model_validate(rule_set.policy)
    published = period.status in PUBLISHED
    spans = [
        _Span(SPAN_OF[period.kind], period.number, [period.id], True, published),
    ]
    if published:
        rows = (
            await session.execute(
                select(
                    col(ScoringPeriod.id), col(ScoringPeriod.kind), col(ScoringPeriod.number)
                ).where(
                    col(ScoringPeriod.village_id) == period.village_id,
                    col(ScoringPeriod.year) == period.year,
                    col(ScoringPeriod.status).in_(PUBLISHED),
                )
            )
        ).all()
        year_vetoes = policy.veto_scope is VetoScope.YEAR
        if period.kind is PeriodKind.MONTH:
            quarter = quarter_number(period.number)
            months = [
                i
                for i, kind, number in rows
                if kind is PeriodKind.MONTH and quarter_number(number) == quarter
            ]
            spans.append(_Span(RankSpan.QUARTER, quarter, months, year_vetoes, True))
        spans.append(_Span(RankSpan.YEAR, 0, [i for i, _, _ in rows], year_vetoes, True))
    await session.execute(_LOCK, {"space": _LOCK_SPACE, "village": str(period.village_id)})
    by_group = policy.rank_within is AwardScope.VILLAGE_GROUP
    for span in spans:
        key = {
            "village": period.village_id,
            "year": period.year,
            "span": span.span.value,
            "number": span.number,
        }
        await session.execute(_DELETE, key)
        await session.execute(
            _INSERT,
            {
                **key,
                "periods": span.periods,
                "count_vetoes": span.count_vetoes,
                "by_group": by_group,
            },
        )
        await session.execute(
            _SUMMARY,
            {
                **key,
                "town": period.town_id,
                "published": span.published,
                "by_group": by_group,
                "lists_vetoed": policy.vetoed_in_rankings is VetoedInRankings.MARK,
                "now": clock.now(),
            },
        )


# ---------------------------------------------------------------------------------------------
# Reads


def notice_board_name(name: str | None) -> str | None:
    """As a notice board shows a name: the surname and a mark for the rest (张**)."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def span_key(span: RankSpan, number: int | None) -> int:
    """The span's number: a month 1-12, a quarter 1-4; the year has none (0)."""
    limits = {RankSpan.MONTH: 12, RankSpan.QUARTER: 4}
    if span is RankSpan.YEAR:
        return 0
    if number is None or not 1 <= number <= limits[span]:
        raise Unprocessable(
            f"A {span.value} needs a number from 1 to {limits[span]}.",
            code="ranking.bad_span",
            title="排名周期有误",
        )
    return number


def is_village_staff(principal: Principal, village: Village) -> bool:
    """Who sees full names and unpublished previews: the village's staff, its town, the district."""
    return (
        principal.is_district_admin
        or village.id in principal.village_ids(*STAFF_READ_ROLES)
        or village.town_id in principal.supervised_town_ids()
    )


_HEAD = (
    select(col(Person.name))
    .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
    .where(
        col(HouseholdMember.household_id) == col(HouseholdRank.household_id),
        col(HouseholdMember.is_head),
    )
    .scalar_subquery()
)
_ROW_COLUMNS = (
    col(HouseholdRank.household_id),
    col(HouseholdRank.household_number),
    _HEAD.label("head_name"),
    col(HouseholdRank.village_group_id),
    col(HouseholdRank.score),
    col(HouseholdRank.vetoed),
    col(HouseholdRank.village_rank),
    col(HouseholdRank.group_rank),
    col(HouseholdRank.village_ranked),
    col(HouseholdRank.group_ranked),
)


def _row(row: Any, *, by_group: bool, staff: bool) -> RankRow:
    return RankRow(
        household_id=row.household_id,
        number=row.household_number,
        head_name=row.head_name if staff else notice_board_name(row.head_name),
        village_group_id=row.village_group_id,
        score=row.score,
        vetoed=row.vetoed,
        rank=row.group_rank if by_group else row.village_rank,
        of=row.group_ranked if by_group else row.village_ranked,
        rank_in_village=row.village_rank,
        rank_in_group=row.group_rank,
    )


@dataclass(frozen=True)
class Board:
    """One stored list, as the caller may read it."""

    village: Village
    summary: RankingSummary
    year: int
    span: RankSpan
    number: int
    staff: bool

    @property
    def hides_vetoed(self) -> bool:
        return not self.staff and not self.summary.lists_vetoed

    def where(self) -> list[Any]:
        clauses = [
            col(HouseholdRank.village_id) == self.village.id,
            col(HouseholdRank.year) == self.year,
            col(HouseholdRank.span) == self.span,
            col(HouseholdRank.number) == self.number,
        ]
        if self.hides_vetoed:
            clauses.append(~col(HouseholdRank.vetoed))
        return clauses


async def board(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    span: RankSpan,
    year: int,
    number: int | None,
) -> tuple[Village, Board | None]:
    """The stored list, or None while nothing of the span is published (or, for staff,
    approved): an empty list then, the same for a span that has not come yet. A month or
    quarter asked without its number is the latest of the year the caller may see, as a
    phone opens the rankings."""
    village = await get_village(session, principal, village_id)
    staff = is_village_staff(principal, village)
    if number is None and span is not RankSpan.YEAR:
        number = await _latest_number(session, village.id, year, span, staff)
        if number is None:
            return village, None
    key = span_key(span, number)
    summary = await session.get(RankingSummary, (village.id, year, span, key))
    if summary is None or not (summary.published or staff):
        return village, None
    return village, Board(village, summary, year, span, key, staff)


async def _latest_number(
    session: AsyncSession, village_id: uuid.UUID, year: int, span: RankSpan, staff: bool
) -> int | None:
    """The year's latest month or quarter with stored ranks (published ones, or approved for
    staff): a read along the summary's primary key."""
    statement = select(col(RankingSummary.number)).where(
        col(RankingSummary.village_id) == village_id,
        col(RankingSummary.year) == year,
        col(RankingSummary.span) == span,
    )
    if not staff:
        statement = statement.where(col(RankingSummary.published))
    return await session.scalar(statement.order_by(col(RankingSummary.number).desc()).limit(1))


def _asked_number(span: RankSpan, number: int | None) -> int:
    """The number an empty answer repeats: as asked, or 0 where a month or quarter was left
    to the latest and none has ranks yet."""
    return 0 if number is None else span_key(span, number)


async def _months(
    session: AsyncSession, board: Board, household_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[PeriodScore]]:
    """Each month of a quarter beside its total, for the households on the page only."""
    if board.span is not RankSpan.QUARTER or not household_ids:
        return {}
    first = quarter_months(board.number)[0]
    rows = await session.execute(
        select(
            col(HouseholdPeriodScore.household_id),
            col(ScoringPeriod.number),
            col(HouseholdPeriodScore.score),
            col(HouseholdPeriodScore.vetoed),
        )
        .join(ScoringPeriod, col(ScoringPeriod.id) == col(HouseholdPeriodScore.period_id))
        .where(
            col(ScoringPeriod.village_id) == board.village.id,
            col(ScoringPeriod.year) == board.year,
            col(ScoringPeriod.kind) == PeriodKind.MONTH,
            col(ScoringPeriod.number).between(first, first + 2),
            col(ScoringPeriod.status).in_(PUBLISHED),
            col(HouseholdPeriodScore.household_id).in_(household_ids),
        )
        .order_by(col(ScoringPeriod.number))
    )
    months: dict[uuid.UUID, list[PeriodScore]] = {}
    for household_id, month, score, vetoed in rows:
        months.setdefault(household_id, []).append(
            PeriodScore(number=month, score=score, vetoed=vetoed)
        )
    return months


async def ranked_rows(
    session: AsyncSession,
    board: Board,
    *,
    scope: RankScope,
    group_id: uuid.UUID | None,
    params: PageParams,
) -> tuple[list[RankRow], str | None]:
    """One page of a stored list, in the order its position column keeps (one index range)."""
    if group_id is not None:
        position = col(HouseholdRank.group_position)
    elif scope is RankScope.VILLAGE_GROUP:
        position = col(HouseholdRank.board_position)
    else:
        position = col(HouseholdRank.village_position)
    statement = select(*_ROW_COLUMNS, position.label("position")).where(*board.where())
    if group_id is not None:
        statement = statement.where(col(HouseholdRank.village_group_id) == group_id)
    if params.cursor:
        [raw] = _decode(params.cursor, 1)
        if not raw.isdigit():
            raise BadRequest("The cursor is not valid.", code="pagination.bad_cursor")
        statement = statement.where(position > int(raw))
    rows = (await session.execute(statement.order_by(position).limit(params.limit + 1))).all()
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = _encode([rows[-1].position])
    by_group = scope is RankScope.VILLAGE_GROUP
    items = [_row(r, by_group=by_group, staff=board.staff) for r in rows]
    months = await _months(session, board, [r.household_id for r in items])
    for item in items:
        item.months = months.get(item.household_id, [])
    return items, next_cursor


async def own_row(
    session: AsyncSession, board: Board, household_id: uuid.UUID | None, *, by_group: bool
) -> RankRow | None:
    """One household's row by its key: its rank without reading the list."""
    if household_id is None:
        return None
    row = (
        await session.execute(
            select(*_ROW_COLUMNS).where(
                col(HouseholdRank.household_id) == household_id,
                col(HouseholdRank.year) == board.year,
                col(HouseholdRank.span) == board.span,
                col(HouseholdRank.number) == board.number,
                col(HouseholdRank.village_id) == board.village.id,
            )
        )
    ).first()
    if row is None:
        return None
    own = _row(row, by_group=by_group, staff=True)
    own.months = (await _months(session, board, [own.household_id])).get(own.household_id, [])
    return own


async def _check_group(session: AsyncSession, village: Village, group_id: uuid.UUID) -> None:
    group = await session.get(VillageGroup, group_id)
    if group is None or group.village_id != village.id:
        raise NotFound("No such village group.", code="village_group.not_found")


async def village_ranking(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    *,
    span: RankSpan,
    year: int,
    number: int | None,
    scope: RankScope | None,
    group_id: uuid.UUID | None,
    params: PageParams,
) -> RankingPage:
    village, found = await board(session, principal, village_id, span, year, number)
    if group_id is not None:
        await _check_group(session, village, group_id)
        scope = RankScope.VILLAGE_GROUP
    if found is None:
        return RankingPage(
            village_id=village.id,
            span=span,
            year=year,
            number=_asked_number(span, number),
            scope=scope or RankScope.VILLAGE,
            group_id=group_id,
            published=False,
            ranked=0,
            items=[],
        )
    if scope is None:
        scope = RankScope.VILLAGE_GROUP if found.summary.ranks_by_group else RankScope.VILLAGE
    items, next_cursor = await ranked_rows(
        session, found, scope=scope, group_id=group_id, params=params
    )
    own = None
    if principal.household_village_id == found.village.id:
        own = await own_row(
            session, found, principal.household_id, by_group=scope is RankScope.VILLAGE_GROUP
        )
    return RankingPage(
        village_id=found.village.id,
        span=span,
        year=year,
        number=found.number,
        scope=scope,
        group_id=group_id,
        published=found.summary.published,
        ranked=found.summary.ranked,
        items=items,
        next_cursor=next_cursor,
        own=own,
    )


async def honour_roll(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    *,
    span: RankSpan,
    year: int,
    number: int | None,
    top: int,
) -> HonourRoll:
    """光荣榜: each village group's top households where the policy ranks by group, else the
    village's; a tie at the last place is shown whole. Vetoed households are never on it."""
    village, found = await board(session, principal, village_id, span, year, number)
    if found is None:
        return HonourRoll(
            village_id=village.id,
            span=span,
            year=year,
            number=_asked_number(span, number),
            top=top,
            boards=[],
        )
    by_group = found.summary.ranks_by_group
    rank = col(HouseholdRank.group_rank) if by_group else col(HouseholdRank.village_rank)
    position = (
        col(HouseholdRank.group_position) if by_group else col(HouseholdRank.village_position)
    )
    rows = (
        await session.execute(
            select(*_ROW_COLUMNS)
            .where(*found.where(), rank <= top)
            .order_by(col(HouseholdRank.village_group_id), position)
        )
    ).all()
    names: dict[uuid.UUID | None, str] = {None: found.village.name}
    if by_group:
        groups = await session.execute(
            select(col(VillageGroup.id), col(VillageGroup.name)).where(
                col(VillageGroup.village_id) == found.village.id
            )
        )
        names.update((group_id, name) for group_id, name in groups)
    boards: dict[uuid.UUID | None, HonourBoard] = {}
    for row in rows:
        key = row.village_group_id if by_group else None
        if key not in boards:
            boards[key] = HonourBoard(village_group_id=key, name=names.get(key, "未分组"), rows=[])
        boards[key].rows.append(_row(row, by_group=by_group, staff=found.staff))
    return HonourRoll(
        village_id=found.village.id,
        span=span,
        year=year,
        number=found.number,
        top=top,
        boards=sorted(boards.values(), key=lambda b: b.name),
    )


async def town_ranking(
    session: AsyncSession,
    principal: Principal,
    town_id: uuid.UUID,
    *,
    span: RankSpan,
    year: int,
    number: int | None,
) -> TownRanking:
    """Villages of the town side by side over a span: households ranked, average and median,
    participation. Read by anyone of the town; no household of another village is named."""
    key = span_key(span, number)
    in_town = (
        principal.is_district_admin
        or town_id in principal.supervised_town_ids()
        or town_id in principal.village_towns.values()
    )
    if not in_town:
        raise NotFound("No such town.", code="town.not_found")
    rows = (
        await session.execute(
            select(RankingSummary, col(Village.name))
            .join(Village, col(Village.id) == col(RankingSummary.village_id))
            .where(
                col(RankingSummary.town_id) == town_id,
                col(RankingSummary.year) == year,
                col(RankingSummary.span) == span,
                col(RankingSummary.number) == key,
                col(RankingSummary.published),
            )
            .order_by(col(RankingSummary.average).desc().nulls_last(), col(Village.name))
        )
    ).all()
    villages: list[VillageComparison] = []
    rank, previous = 0, None
    for position, (summary, name) in enumerate(rows, start=1):
        if summary.average != previous:
            rank, previous = position, summary.average
        villages.append(
            VillageComparison(
                village_id=summary.village_id,
                name=name,
                households=summary.households,
                participating=summary.participating,
                participation=(
                    (Decimal(summary.participating) / summary.households).quantize(
                        Decimal("0.01"), rounding=ROUND_HALF_UP
                    )
                    if summary.households
                    else None
                ),
                ranked=summary.ranked,
                vetoed=summary.vetoed,
                average=summary.average,
                median=summary.median,
                top_score=summary.top_score,
                rank=rank if summary.average is not None else None,
            )
        )
    return TownRanking(town_id=town_id, span=span, year=year, number=key, villages=villages)


async def stored_rank(
    session: AsyncSession, household_id: uuid.UUID, year: int, span: RankSpan, number: int
) -> Any:
    """A household's stored ranks for a span, by its key (standing, the shop's top-N check):
    score, vetoed, village_rank, group_rank, village_ranked, group_ranked; None if unranked."""
    return (
        await session.execute(
            select(
                col(HouseholdRank.score),
                col(HouseholdRank.vetoed),
                col(HouseholdRank.village_rank),
                col(HouseholdRank.group_rank),
                col(HouseholdRank.village_ranked),
                col(HouseholdRank.group_ranked),
            ).where(
                col(HouseholdRank.household_id) == household_id,
                col(HouseholdRank.year) == year,
                col(HouseholdRank.span) == span,
                col(HouseholdRank.number) == number,
            )
        )
    ).first()
