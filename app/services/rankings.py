"""Rankings (排名, 光荣榜): computed and stored when results are published, read by key.

A period's publication (and an amendment of a published result after an objection) calls
`refresh_period_ranks`, which rewrites the stored ranks of the spans the period belongs to: the
period itself, the quarter over its months and the year, each summing published periods only.
Every read is then a keyed lookup or one page of an index, whatever the village's size.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Boolean, Integer, Uuid, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import STAFF_READ_ROLES, village_scope_sql
from app.db import DriverSource, driver_of
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
from app.pagination import PageParams, _decode, _encode, position_after, position_cursor
from app.schemas.rankings import (
    HonourBoard,
    HonourRoll,
    PeriodScore,
    RankRow,
    RankScope,
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


def ranked_page_sql(columns: str, *, group: str, after: str, size: str) -> str:
    """One page of a stored list (ranked_rows' order, in SQL), for the hot reads that send it
    to the driver: the rows of household_rank named by the CTE `b` (village_id, year, span,
    number, by_group, lists_vetoed), `columns` of each and its `position`, after the position
    `after`, `size` + 1 of them. Of the three laterals one runs, along the index of its order:
    the asked group's own positions (`group`, a parameter, not NULL), else the board's (ranked
    by group: 翁源) or the village's."""
    list_of = """
        FROM household_rank r
        WHERE r.village_id = b.village_id AND r.year = b.year AND r.span = b.span
          AND r.number = b.number AND (b.lists_vetoed OR NOT r.vetoed)
    """
    return f"""
        SELECT x.* FROM b CROSS JOIN LATERAL (
            SELECT {columns}, r.group_position AS position {list_of}
              AND r.village_group_id = {group}::uuid AND r.group_position > {after}::integer
            ORDER BY r.group_position LIMIT {size}::integer + 1
        ) x WHERE {group}::uuid IS NOT NULL
        UNION ALL
        SELECT x.* FROM b CROSS JOIN LATERAL (
            SELECT {columns}, r.board_position AS position {list_of}
              AND r.board_position > {after}::integer
            ORDER BY r.board_position LIMIT {size}::integer + 1
        ) x WHERE {group}::uuid IS NULL AND b.by_group
        UNION ALL
        SELECT x.* FROM b CROSS JOIN LATERAL (
            SELECT {columns}, r.village_position AS position {list_of}
              AND r.village_position > {after}::integer
            ORDER BY r.village_position LIMIT {size}::integer + 1
        ) x WHERE {group}::uuid IS NULL AND NOT b.by_group
    """


# The village's ranking page in one statement, sent straight to the driver, answered as the rows
# of RankingPage's JSON built by PostgreSQL. The village within the caller's read scope ($2-$5:
# organisation.get_village's, whose staff part, $2-$4, is is_village_staff), the span's number
# ($8; NULL: the latest the caller may see, as _latest_number), the stored list if the caller
# may see it (board), one page of it along the index of its order (ranked_rows: one of the three
# laterals runs, chosen by the asked group $10 and the scope, $9 or else the village's policy),
# and the caller's own row by its key ($13: their household, where it is of this village), each
# row with its quarter's months. $11 the position after which the page starts, $12 its size.
# The summary and the periods are looked up by $1 itself, so the generic plan keys them by the
# village. A household's span and its period's kind share their words ('month', 'quarter').
_RANK_COLUMNS = """
    r.household_id, r.household_number, r.village_group_id, r.score, r.vetoed,
    r.village_rank, r.group_rank, r.village_ranked, r.group_ranked
"""


_VILLAGE_RANKING = f"""
    WITH v AS (
        SELECT v.id,
               {village_scope_sql("v.id", everyone="$2", villages="$3", towns="$4")} AS staff
        FROM village v WHERE v.id = $1
    ), seen AS (
        SELECT * FROM v WHERE staff OR id = $5::uuid
    ), b AS (
        SELECT s.village_id, s.year, s.span, s.number, s.published, s.ranked,
               coalesce($9::text = 'village_group', s.ranks_by_group) AS by_group,
               seen.staff, seen.staff OR s.lists_vetoed AS lists_vetoed
        FROM seen CROSS JOIN LATERAL (SELECT coalesce($8::integer, (
            SELECT l.number FROM ranking_summary l
            WHERE l.village_id = $1 AND l.year = $7::integer AND l.span = $6::text
              AND (l.published OR seen.staff)
            ORDER BY l.number DESC LIMIT 1)) AS number
        ) n
        JOIN ranking_summary s
          ON s.village_id = $1 AND s.year = $7::integer AND s.span = $6::text
         AND s.number = n.number
        WHERE s.published OR seen.staff
    ), page AS (
        {ranked_page_sql(_RANK_COLUMNS, group="$10", after="$11", size="$12")}
    ), numbered AS (
        SELECT page.*, row_number() OVER (ORDER BY position) AS n, false AS own FROM page
    ), shown AS (
        SELECT * FROM numbered WHERE n <= $12::integer
        UNION ALL
        SELECT {_RANK_COLUMNS}, 0, 0, true
        FROM b JOIN household_rank r
          ON r.household_id = $13::uuid AND r.year = b.year AND r.span = b.span
         AND r.number = b.number AND r.village_id = b.village_id
    ), months AS MATERIALIZED (
        SELECT p.id, p.number FROM b CROSS JOIN LATERAL (
            SELECT p.id, p.number FROM scoring_period p
            WHERE p.village_id = $1 AND p.year = $7::integer AND p.kind = 'month'
              AND p.number BETWEEN 3 * b.number - 2 AND 3 * b.number
              AND p.status IN ('published', 'closed')
        ) p
        WHERE b.span = 'quarter'
    ), heads AS MATERIALIZED (
        -- The shown households' heads in one lookup by their keys: a join to household_member
        -- row by row was planned as a scan of the table for each row while it is small.
        SELECT m.household_id, p.name FROM household_member m JOIN person p ON p.id = m.person_id
        WHERE m.is_head AND m.household_id = ANY (ARRAY(SELECT household_id FROM shown))
    ), written AS (
        SELECT x.n, x.own, row_to_json(j)::text AS row
        FROM b CROSS JOIN shown x
        LEFT JOIN heads head ON head.household_id = x.household_id
        CROSS JOIN LATERAL (SELECT
            x.household_id,
            x.household_number AS number,
            CASE WHEN b.staff OR x.own THEN head.name
                ELSE left(head.name, 1) || repeat('*', char_length(head.name) - 1) END
                AS head_name,
            x.village_group_id,
            x.score,
            x.vetoed,
            CASE WHEN b.by_group THEN x.group_rank ELSE x.village_rank END AS rank,
            CASE WHEN b.by_group THEN x.group_ranked ELSE x.village_ranked END AS of,
            x.village_rank AS rank_in_village,
            x.group_rank AS rank_in_group,
            ('[' || coalesce((
                SELECT string_agg(row_to_json(ms)::text, ',' ORDER BY ms.number)
                FROM (SELECT mp.number, hs.score, hs.vetoed
                      FROM months mp JOIN household_period_score hs
                        ON hs.period_id = mp.id AND hs.household_id = x.household_id) ms
            ), '') || ']')::json AS months
        ) j
    )
    SELECT $10::uuid IS NULL OR EXISTS (
               SELECT FROM village_group g WHERE g.id = $10::uuid AND g.village_id = seen.id
           ) AS group_found,
           b.village_id IS NOT NULL AS found,
           b.number, b.published, b.ranked, b.by_group,
           (SELECT max(position) FROM numbered WHERE n <= $12::integer) AS last_position,
           (SELECT count(*) FROM numbered) > $12::integer AS more,
           (SELECT string_agg(row, ',' ORDER BY n) FROM written WHERE NOT own) AS items,
           (SELECT row FROM written WHERE own) AS own
    FROM seen LEFT JOIN b ON true
"""


async def village_ranking(
    source: DriverSource,
    principal: Principal,
    village_id: uuid.UUID,
    *,
    span: RankSpan,
    year: int,
    number: int | None,
    scope: RankScope | None,
    group_id: uuid.UUID | None,
    params: PageParams,
) -> str:
    """RankingPage's JSON: one page of the stored list of the span (the latest month or
    quarter the caller may see where none is asked) and the caller's own row. Problems keep
    their order: 404 village, 422 span, 404 group, then 400 cursor only where there is a list."""
    after, bad_cursor = position_after(params)
    bad_span: Unprocessable | None = None
    key: int | None = None  # the latest
    if span is RankSpan.YEAR or number is not None:
        try:
            key = span_key(span, number)
        except Unprocessable as exc:
            bad_span, key = exc, number
    if group_id is not None:
        scope = RankScope.VILLAGE_GROUP
    lives_here = principal.household_village_id == village_id
    driver = await driver_of(source)
    row = await driver.fetchrow(
        _VILLAGE_RANKING,
        village_id,
        principal.is_district_admin,
        list(principal.village_ids(*STAFF_READ_ROLES)),
        list(principal.supervised_town_ids()),
        principal.household_village_id,
        span.value,
        year,
        key,
        scope.value if scope else None,
        group_id,
        after,
        params.limit,
        principal.household_id if lives_here else None,
    )
    if row is None:
        raise NotFound("No such village.", code="village.not_found")
    if bad_span is not None:
        raise bad_span
    if not row["group_found"]:
        raise NotFound("No such village group.", code="village_group.not_found")
    if not row["found"]:
        return _page_json(village_id, span, year, _asked_number(span, number), scope, group_id)
    if bad_cursor is not None:
        raise bad_cursor
    if scope is None:
        scope = RankScope.VILLAGE_GROUP if row["by_group"] else RankScope.VILLAGE
    return _page_json(
        village_id,
        span,
        year,
        row["number"],
        scope,
        group_id,
        published=row["published"],
        ranked=row["ranked"],
        items=row["items"] or "",
        next_cursor=position_cursor(row["last_position"]) if row["more"] else None,
        own=row["own"],
    )


def _page_json(
    village_id: uuid.UUID,
    span: RankSpan,
    year: int,
    number: int,
    scope: RankScope | None,
    group_id: uuid.UUID | None,
    *,
    published: bool = False,
    ranked: int = 0,
    items: str = "",
    next_cursor: str | None = None,
    own: str | None = None,
) -> str:
    """RankingPage as pydantic writes it, around the rows PostgreSQL wrote; the empty page of
    a span with nothing stored (yet) where no rows are given."""
    return (
        f'{{"village_id":"{village_id}","span":"{span.value}","year":{year},'
        f'"number":{number},"scope":"{(scope or RankScope.VILLAGE).value}",'
        f'"group_id":{json.dumps(str(group_id) if group_id else None)},'
        f'"published":{json.dumps(published)},"ranked":{ranked},"items":[{items}],'
        f'"next_cursor":{json.dumps(next_cursor)},"own":{own or "null"}}}'
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


# The town's comparison of its villages in one statement, sent straight to the driver: the
# villages' stored summaries of the span, each written as VillageComparison's JSON (decimals as
# pydantic writes them, text with their two places; participation rounded half up as
# Decimal.quantize does), ranked by average with ties shared. Scope: $4 the district flag, $5
# the towns the caller reads (supervised, or of the villages they hold a grant in or live in);
# none of it, no row: not found.
_TOWN_RANKING = """
    SELECT string_agg(row_to_json(j)::text, ',' ORDER BY c.position) AS villages
    FROM (SELECT s.*, v.name,
              rank() OVER (ORDER BY s.average DESC NULLS LAST) AS rank,
              row_number() OVER (ORDER BY s.average DESC NULLS LAST, v.name) AS position
          FROM ranking_summary s JOIN village v ON v.id = s.village_id
          WHERE s.town_id = $1 AND s.year = $2 AND s.span = $3::text AND s.number = $6
            AND s.published AND ($4::boolean OR $1 = ANY($5::uuid[]))
    ) c
    CROSS JOIN LATERAL (SELECT
        c.village_id,
        c.name,
        c.households,
        c.participating,
        CASE WHEN c.households > 0
            THEN round(c.participating::numeric / c.households, 2)::text END AS participation,
        c.ranked,
        c.vetoed,
        c.average::text AS average,
        c.median::text AS median,
        c.top_score,
        CASE WHEN c.average IS NOT NULL THEN c.rank END AS rank
    ) j
    HAVING $4::boolean OR $1 = ANY($5::uuid[])
"""


async def town_ranking(
    source: DriverSource,
    principal: Principal,
    town_id: uuid.UUID,
    *,
    span: RankSpan,
    year: int,
    number: int | None,
) -> str:
    """TownRanking's JSON: villages of the town side by side over a span, households ranked,
    average and median, participation. Read by anyone of the town; no household of another
    village is named."""
    key = span_key(span, number)
    towns = principal.supervised_town_ids() | set(principal.village_towns.values())
    driver = await driver_of(source)
    row = await driver.fetchrow(
        _TOWN_RANKING, town_id, year, span.value, principal.is_district_admin, list(towns), key
    )
    if row is None:
        raise NotFound("No such town.", code="town.not_found")
    return (
        f'{{"town_id":"{town_id}","span":"{span.value}","year":{year},"number":{key},'
        f'"villages":[{row["villages"] or ""}]}}'
    )


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
