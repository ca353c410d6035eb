"""A household's rank: in its village and its village group, for the year and the latest
published period, read from the ranks stored at publication (app/services/rankings.py). Ties
share a rank; only participating households are ranked, and vetoed ones are left out (a
year-scope veto leaves the household out of the year's ranking). Periods approved but not yet
published are in no rank: the year's ranks sum published periods only."""

import uuid

from app.authz import household_scope_sql, village_scope_sql
from app.db import DriverSource
from app.security import Principal
from app.services.ledger import household_json

# One statement, sent straight to the driver and answered as the response's JSON (the shape of
# StandingRead): the household within the caller's scope, its stored year and period ranks by
# their keys, its year score, and for callers who see results only once published (villagers:
# $9 names the villages whose staff see them approved) the points of periods approved but not
# yet published taken out of it, as the notice board would show. A household's span and its
# period's kind share their words ('month', 'quarter'). Scope: $3-$8, household_scope_args.
_STANDING = f"""
    SELECT row_to_json(s)::text FROM (SELECT
        h.id AS household_id,
        $2::integer AS year,
        coalesce(ys.score, 0) - CASE
            WHEN {village_scope_sql("h.village_id", everyone="$3", villages="$9", towns="$5")}
            THEN 0
            ELSE coalesce((
                SELECT sum(e.points) FROM ledger_entry e
                WHERE e.household_id = h.id AND e.counts_score AND e.year = $2
                  AND e.kind <> 'bonus' AND e.period_id IN (
                      SELECT u.id FROM scoring_period u
                      WHERE u.village_id = h.village_id AND u.status = 'approved')
            ), 0) END AS year_score,
        CASE WHEN NOT r.vetoed THEN r.village_rank END AS rank_in_village,
        CASE WHEN NOT r.vetoed THEN r.group_rank END AS rank_in_group,
        coalesce(r.village_ranked, (
            SELECT rs.ranked FROM ranking_summary rs
            WHERE rs.village_id = h.village_id AND rs.year = $2
              AND rs.span = 'year' AND rs.number = 0
        ), 0) AS ranked_households,
        CASE WHEN ps.household_id IS NOT NULL THEN (SELECT row_to_json(l) FROM (SELECT
            p.id AS period_id,
            p.number,
            ps.score,
            ps.vetoed,
            CASE WHEN NOT pr.vetoed THEN pr.village_rank END AS rank_in_village,
            CASE WHEN NOT pr.vetoed THEN pr.group_rank END AS rank_in_group
        ) l) END AS latest_period
    FROM household h
    LEFT JOIN household_rank r
      ON r.household_id = h.id AND r.year = $2 AND r.span = 'year' AND r.number = 0
    LEFT JOIN household_year_score ys ON ys.household_id = h.id AND ys.year = $2
    LEFT JOIN LATERAL (
        SELECT l.id, l.kind, l.number FROM scoring_period l
        WHERE l.village_id = h.village_id AND l.year = $2
          AND l.status IN ('published', 'closed')
        ORDER BY l.starts_on DESC LIMIT 1
    ) p ON true
    LEFT JOIN household_period_score ps ON ps.household_id = h.id AND ps.period_id = p.id
    LEFT JOIN household_rank pr
      ON pr.household_id = h.id AND pr.year = $2 AND pr.span = p.kind AND pr.number = p.number
    WHERE h.id = $1 AND {household_scope_sql("h", 3)}
    ) s
"""


async def standing(
    source: DriverSource, principal: Principal, household_id: uuid.UUID, year: int | None
) -> str:
    """StandingRead as JSON text: PostgreSQL builds it, nothing to validate again here."""
    return await household_json(_STANDING, source, principal, household_id, year)
