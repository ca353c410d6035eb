"""The points ledger (积分台账): append-only entries, summaries kept in step, a hash chain."""

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import cache
from operator import getitem, itemgetter
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    ScalarSelect,
    String,
    TableValuedAlias,
    Uuid,
    any_,
    bindparam,
    case,
    column,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine
from sqlmodel import col

from app import clock
from app.authz import (
    household_scope,
    household_scope_args,
    household_scope_sql,
    village_scope,
    village_scope_sql,
)
from app.db import DriverSource, driver_connection, driver_of
from app.driver import DriverStatement, param
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    GENESIS_HASH,
    Household,
    HouseholdBalance,
    HouseholdPeriodScore,
    HouseholdYearScore,
    LedgerChain,
    LedgerEntry,
    LedgerKind,
    PeriodStatus,
    Role,
    RuleItem,
    ScoringPeriod,
    Village,
    YearEndClose,
)
from app.pagination import PageParams, position_after, position_cursor
from app.schemas.ledger import ChainVerification
from app.schemas.rules import Policy
from app.security import Principal
from app.services import audit
from app.services.households import get_household
from app.services.points_year import YearCloseBlocker, year_close_blockers
from app.services.rules import rule_set_in_force
from app.sqljson import json_time

# The fields an entry's hash covers, in this order; changing it breaks every chain.
HASHED_FIELDS = (
    "id", "village_id", "seq", "household_id", "kind", "points", "counts_score", "counts_balance",
    "year", "period_id", "rule_item_id", "item_code", "item_title", "item_points",
    "source_type", "source_id", "reverses_id", "actor_id", "memo", "created_at",
)  # fmt: skip
_hashed_values = itemgetter(*HASHED_FIELDS)


@dataclass
class NewEntry:
    household_id: uuid.UUID
    kind: LedgerKind
    points: int
    counts_score: bool
    counts_balance: bool
    year: int
    source_type: str
    source_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    memo: str = ""
    period_id: uuid.UUID | None = None
    rule_item: RuleItem | None = None
    reverses_id: uuid.UUID | None = None


def _canonical(value: Any) -> str:
    """One field as text that can't be confused with another: strings carry their length."""
    if value is None:
        return "~"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, str):  # LedgerKind is a str too: its value is what is hashed
        text = value.value if isinstance(value, LedgerKind) else value
        return f"{len(text)}:{text}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    # isinstance, not type(): asyncpg hands back its own UUID subclass.
    return str(value)  # int, UUID


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and HASHED_FIELDS in order, each encoded by _canonical."""
    data = "|".join([prev_hash, *map(_canonical, _hashed_values(fields))])
    return hashlib.sha256(data.encode()).hexdigest()


class _EncodedColumn(dict[Any, str]):
    """One hashed field's values as _canonical encodes them, each worked out once: a batch
    repeats its village, period, actor, time, households and items entry after entry, and an
    approval hashes twenty thousand. One per field, so True and 1 never share a key."""

    def __missing__(self, value: Any) -> str:
        text = self[value] = _canonical(value)
        return text


def insufficient_balance() -> Conflict:
    return Conflict(
        "The household's spendable points would go below zero.",
        code="ledger.insufficient_balance",
        title="可用积分不足",
    )


def _batch(name: str, **columns: tuple[TypeEngine[Any], list[Any]]) -> TableValuedAlias:
    """A batch as a table from one array per column (unnest): the statement is the same for
    one household or a thousand, so it is compiled once and cached, where a VALUES list of a
    thousand rows would be compiled anew on every approval."""
    arrays = [bindparam(None, values, type_=ARRAY(kind)) for kind, values in columns.values()]
    return (
        func.unnest(*arrays)
        .table_valued(*[column(key, kind) for key, (kind, _) in columns.items()])
        .render_derived(name=name)
    )


async def _apply_summaries(
    session: AsyncSession,
    village_id: uuid.UUID,
    rows: list[dict[str, Any]],
    *,
    spend_published_only: bool = False,
) -> None:
    """Move balances and year scores by the batch's sums, refusing any balance below zero
    (with `spend_published_only`, any spendable figure below zero: see `post`)."""
    balance_delta: dict[uuid.UUID, int] = defaultdict(int)
    score_delta: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
    period_delta: dict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    for row in rows:
        if row["counts_balance"]:
            balance_delta[row["household_id"]] += row["points"]
        if row["counts_score"]:
            score_delta[(row["household_id"], row["year"])] += row["points"]
            if row["period_id"] is not None:
                period_delta[(row["household_id"], row["period_id"])] += row["points"]
    gains = {h: d for h, d in balance_delta.items() if d > 0}
    spends = {h: d for h, d in balance_delta.items() if d < 0}
    if gains:
        # One statement for the whole batch: an approval moves a thousand households at once.
        batch = _batch(
            "gains", household_id=(Uuid(), list(gains)), delta=(Integer(), list(gains.values()))
        )
        upsert = pg_insert(HouseholdBalance).from_select(
            ["household_id", "village_id", "balance"],
            select(batch.c.household_id, literal(village_id, Uuid()), batch.c.delta),
        )
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[col(HouseholdBalance.household_id)],
                set_={"balance": col(HouseholdBalance.balance) + upsert.excluded.balance},
            )
        )
    if spends:
        # Built on first use: the spendable figure's clause (_unpublished_result) comes later.
        spend = _spend_statement(published_only=spend_published_only)
        village = {"village_id": village_id} if spend_published_only else {}
        moved = await spend.fetch(
            session, household_ids=list(spends), deltas=list(spends.values()), **village
        )
        if len(moved) != len(spends):
            raise insufficient_balance()
    moves = [(h, p, d) for (h, p), d in period_delta.items() if d != 0]
    if moves:
        # A correction after approval moves the period's score too. At approval the rows don't
        # exist yet and nothing matches: approval writes them from the same results.
        households, periods, deltas = zip(*moves, strict=True)
        batch = _batch(
            "period_deltas",
            household_id=(Uuid(), list(households)),
            period_id=(Uuid(), list(periods)),
            delta=(Integer(), list(deltas)),
        )
        await session.execute(
            update(HouseholdPeriodScore)
            .where(
                col(HouseholdPeriodScore.household_id) == batch.c.household_id,
                col(HouseholdPeriodScore.period_id) == batch.c.period_id,
            )
            .values(score=col(HouseholdPeriodScore.score) + batch.c.delta)
        )
    scores = [(h, y, d) for (h, y), d in score_delta.items() if d != 0]
    if scores:
        households, years, deltas = zip(*scores, strict=True)
        batch = _batch(
            "scores",
            household_id=(Uuid(), list(households)),
            year=(Integer(), list(years)),
            delta=(Integer(), list(deltas)),
        )
        upsert = pg_insert(HouseholdYearScore).from_select(
            ["household_id", "year", "village_id", "score"],
            select(batch.c.household_id, batch.c.year, literal(village_id, Uuid()), batch.c.delta),
        )
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[col(HouseholdYearScore.household_id), col(HouseholdYearScore.year)],
                set_={"score": col(HouseholdYearScore.score) + upsert.excluded.score},
            )
        )


_VILLAGE = param("village_id", Uuid())
_HOUSEHOLDS = param("household_ids", ARRAY(Uuid()))


@cache
def _spend_statement(*, published_only: bool) -> DriverStatement:
    """Spends (:household_ids, :deltas) out of the balances, guarded in the database: a row
    only moves if it stays at or above zero, so two spends racing for the last points cannot
    both pass. `published_only` (see `post`): only if the spendable figure stays at or above
    zero, that is the balance less the points of :village_id's periods approved but not yet
    published."""
    batch = (
        func.unnest(_HOUSEHOLDS, param("deltas", ARRAY(Integer())))
        .table_valued(column("household_id", Uuid()), column("delta", Integer()))
        .render_derived(name="spends")
    )
    left = col(HouseholdBalance.balance) + batch.c.delta
    if published_only:
        hidden = (
            select(func.coalesce(func.sum(col(LedgerEntry.points)), 0))
            .where(
                col(LedgerEntry.household_id) == col(HouseholdBalance.household_id),
                col(LedgerEntry.counts_balance),
                _unpublished_result(_VILLAGE),
            )
            .scalar_subquery()
        )
        left = left - func.greatest(hidden, 0)
    statement = (
        update(HouseholdBalance)
        .where(
            col(HouseholdBalance.household_id) == batch.c.household_id,
            # The spenders' keys besides the join: with the spendable figure's subquery in the
            # filter, the generic plan otherwise hashes every balance row of the county, under
            # the item and chain locks.
            col(HouseholdBalance.household_id) == any_(_HOUSEHOLDS),
            left >= 0,
        )
        .values(balance=col(HouseholdBalance.balance) + batch.c.delta)
        .returning(col(HouseholdBalance.household_id))
    )
    village = ("village_id",) if published_only else ()
    return DriverStatement(statement, "household_ids", "deltas", *village)


# The village's closed years (household NULL, points 1 where carried over) and the spenders'
# points per year: see _years_held.
_YEARS_HELD = DriverStatement(
    union_all(
        select(
            literal(None, Uuid()).label("household_id"),
            col(YearEndClose.year),
            case((col(YearEndClose.carried_over), 1), else_=0).label("points"),
        ).where(col(YearEndClose.village_id) == _VILLAGE),
        select(
            col(LedgerEntry.household_id),
            col(LedgerEntry.year),
            func.sum(LedgerEntry.points),
        )
        .where(col(LedgerEntry.household_id) == any_(_HOUSEHOLDS), col(LedgerEntry.counts_balance))
        .group_by(col(LedgerEntry.household_id), col(LedgerEntry.year)),
    ),
    "village_id",
    "household_ids",
)


def _is_spend(entry: NewEntry) -> bool:
    return entry.kind is LedgerKind.REDEMPTION and entry.counts_balance and entry.points < 0


async def _years_held(
    session: AsyncSession, village_id: uuid.UUID, entries: Sequence[NewEntry]
) -> tuple[dict[int, bool], dict[uuid.UUID, dict[int, int]]]:
    """The village's closed years (year → carried over) and, for each household the batch
    spends from, its balance points per year: one statement, read under the chain lock `post`
    holds (the close takes it too), so neither moves before the batch is written. A spend holds
    the shop's item rows while it waits for that lock, so every round trip saved here is one
    the shop's other counters do not wait for."""
    spenders = list({e.household_id for e in entries if _is_spend(e)})
    rows = await _YEARS_HELD.fetch(session, village_id=village_id, household_ids=spenders)
    closed: dict[int, bool] = {}
    held: dict[uuid.UUID, dict[int, int]] = {}
    for household_id, year, points in rows:
        if household_id is None:
            closed[year] = bool(points)
        else:
            held.setdefault(household_id, {})[year] = int(points)
    return closed, held


def _drawn_oldest_first(
    entries: Sequence[NewEntry], closed: dict[int, bool], balances: dict[uuid.UUID, dict[int, int]]
) -> Sequence[NewEntry]:
    """Spends draw on the oldest year that still holds points first: a redemption becomes one
    entry per year it draws from, each carrying that year, so a January order before the close
    spends last year's points (the close then finds them spent) and a give-back returns them
    to the year they came from (shop_orders._give_back). `balances` are the spenders' points
    per year as read under the chain lock, so no other change moves the years in between; the
    balance's own guard still refuses a spend beyond the balance.

    Only open years are drawn from: what closed years left (carried over, or nothing where the
    year reset) counts as the oldest open year's, so after the close a spend belongs to the
    year it was made in. A year's points are what it holds after the years before it: a year
    that ended below zero (a correction after the close) takes its shortfall out of the next
    year first.
    """
    if not balances:
        return entries
    first_open = max(closed) + 1 if closed else -1
    held: dict[uuid.UUID, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for household_id, years_held in balances.items():
        for year, points in years_held.items():
            held[household_id][max(year, first_open)] += points
    drawn: list[NewEntry] = []
    for entry in entries:
        years = held.get(entry.household_id)
        if years is None or not _is_spend(entry):
            if years is not None and entry.counts_balance:
                years[max(entry.year, first_open)] += entry.points
            drawn.append(entry)
            continue
        left, shortfall = -entry.points, 0
        for year in sorted(years):
            available = years[year] + shortfall
            shortfall = min(available, 0)
            take = min(left, max(available, 0))
            if take > 0:
                years[year] -= take
                left -= take
                drawn.append(replace(entry, points=-take, year=year))
        if left > 0:
            # More than every year holds: posted as asked, for the balance's guard to refuse.
            drawn.append(replace(entry, points=-left))
    return drawn


def _settled_into_closed_years(
    entries: Sequence[NewEntry], closed: dict[int, bool]
) -> list[NewEntry]:
    """Entries into a year the village closed without carry-over, as that close would have
    left them (an order cancelled after the close, a correction or an upheld objection after
    it): what they add to the balance expires at once (an `expiry` entry follows), and what
    they take from it is not taken, since that year's balance is already gone and what is left
    belongs to a later year. Scores move as given. Years carried over, or still open, are
    untouched. `closed` was read under the chain lock, which the close also takes."""
    years = {e.year for e in entries if e.counts_balance}
    reset = {year for year in years if year in closed and not closed[year]}
    if not reset:
        return list(entries)
    net: dict[tuple[uuid.UUID, int], int] = defaultdict(int)
    first: dict[tuple[uuid.UUID, int], NewEntry] = {}
    for entry in entries:
        if entry.counts_balance and entry.year in reset:
            key = (entry.household_id, entry.year)
            net[key] += entry.points
            first.setdefault(key, entry)
    taking = {key for key, points in net.items() if points < 0}
    settled = [
        replace(e, counts_balance=False)
        if e.counts_balance and (e.household_id, e.year) in taking
        else e
        for e in entries
    ]
    for (household_id, year), points in net.items():
        if points > 0:
            source = first[(household_id, year)]
            settled.append(
                NewEntry(
                    household_id=household_id,
                    kind=LedgerKind.EXPIRY,
                    points=-points,
                    counts_score=False,
                    counts_balance=True,
                    year=year,
                    source_type=source.source_type,
                    source_id=source.source_id,
                    actor_id=source.actor_id,
                    memo=f"{year}年积分年底清零",
                )
            )
    return settled


ENTRY_COLUMNS = ("id", *HASHED_FIELDS[1:], "prev_hash", "hash")
_entry_record = itemgetter(*ENTRY_COLUMNS)


def _chained_records(rows: list[dict[str, Any]], prev_hash: str) -> Iterator[tuple[Any, ...]]:
    """Hash each row onto the chain as COPY asks for it: asyncpg sends every half megabyte
    while the rest is still being hashed, so PostgreSQL stores one part while Python hashes
    the next."""
    columns = [_EncodedColumn() for _ in HASHED_FIELDS]
    for row in rows:
        # entry_hash's text, with every field looked up in its column's encodings.
        data = "|".join([prev_hash, *map(getitem, columns, _hashed_values(row))])
        row["prev_hash"] = prev_hash
        row["hash"] = prev_hash = hashlib.sha256(data.encode()).hexdigest()
        yield _entry_record(row)


_INSERT_ENTRY = (
    f"INSERT INTO ledger_entry ({', '.join(ENTRY_COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(ENTRY_COLUMNS) + 1))})"
)
# Up to this many entries go in as one prepared INSERT a row, in one round trip; more, by COPY.
# A redemption's or a claim's one entry cost PostgreSQL several times as much as a COPY (its
# statement parsed and the copy set up each time) as it does as an INSERT prepared once.
_COPY_FROM = 32


async def _copy_entries(session: AsyncSession, rows: list[dict[str, Any]], prev_hash: str) -> str:
    """Store the entries in the request's own transaction, hashing on the way; returns the last
    hash. An approval writes tens of thousands of entries, and COPY takes them in a fraction
    of the time row-by-row INSERTs would."""
    driver = await driver_connection(session)
    records = _chained_records(rows, prev_hash)
    try:
        if len(rows) < _COPY_FROM:
            await driver.executemany(_INSERT_ENTRY, list(records))
        else:
            await driver.copy_records_to_table(
                "ledger_entry", records=records, columns=ENTRY_COLUMNS
            )
    except asyncpg.PostgresError as exc:
        # The raw driver's errors bypass SQLAlchemy's wrapping, so the problem handlers never
        # see them: a value PostgreSQL can't hold (a NUL in a memo) is the caller's to fix.
        if str(getattr(exc, "sqlstate", "")).startswith("22"):
            raise Unprocessable(
                "A value cannot be stored (a NUL character, or a number out of range).",
                code="request.invalid_value",
                title="提交的内容含有无法保存的字符或数值",
            ) from exc
        raise
    last_hash: str = rows[-1]["hash"]
    return last_hash


async def lock_chain(session: AsyncSession, village_id: uuid.UUID) -> tuple[int, str]:
    """Lock the village's chain head until the transaction ends; returns (last_seq, last_hash).

    The lock orders this village's appends (other villages are not held up), and every change
    to its balances goes through `post`, so whatever a caller reads after taking it (is this
    entry corrected yet, what is the balance) stays true until it commits. Taking it again in
    the same transaction is free.
    """
    head = await _CHAIN_HEAD.fetchrow(session, village_id=village_id)
    if head is None:
        # A village's first entry. A racing first poster's uncommitted row makes this insert
        # wait for its commit and then do nothing; the select below then finds that row.
        await _CHAIN_START.execute(session, village_id=village_id)
        head = await _CHAIN_HEAD.fetchrow(session, village_id=village_id)
    return head["last_seq"], head["last_hash"]


_CHAIN_HEAD = DriverStatement(
    select(col(LedgerChain.last_seq), col(LedgerChain.last_hash))
    .where(col(LedgerChain.village_id) == _VILLAGE)
    .with_for_update(),
    "village_id",
)
_CHAIN_START = DriverStatement(
    pg_insert(LedgerChain)
    .values(village_id=_VILLAGE, last_seq=0, last_hash=GENESIS_HASH)
    .on_conflict_do_nothing(),
    "village_id",
)
_CHAIN_MOVED = DriverStatement(
    update(LedgerChain)
    .where(col(LedgerChain.village_id) == _VILLAGE)
    .values(last_seq=param("seq", BigInteger()), last_hash=param("hash", String())),
    "village_id",
    "seq",
    "hash",
)


async def post(
    session: AsyncSession,
    village_id: uuid.UUID,
    entries: Sequence[NewEntry],
    *,
    spend_published_only: bool = False,
) -> list[dict[str, Any]]:
    """Append entries to the village's chain and move its summaries, all in the caller's
    transaction. Returns the rows as written.

    `spend_published_only` (a redemption): a spend is refused unless the points of periods
    approved but not yet published (公示) stay out of it, that is unless the household's
    spendable figure (shop.spendable_points) stays at or above zero. Checked in the statement
    that moves the balance, under the chain lock taken here: a period is approved, and its
    points posted, only by a transaction holding that same lock."""
    if not entries:
        return []
    seq, prev_hash = await lock_chain(session, village_id)
    closed, balances = await _years_held(session, village_id, entries)
    entries = _drawn_oldest_first(entries, closed, balances)
    entries = _settled_into_closed_years(entries, closed)
    now = clock.now()
    rows: list[dict[str, Any]] = []
    item_copies: dict[int, tuple[Any, ...]] = {}
    for entry in entries:
        seq += 1
        item = entry.rule_item
        if item is None:
            item_id, item_code, item_title, item_points = None, None, None, None
        else:
            # An approval names the same twenty items a thousand times over.
            copied = item_copies.get(id(item))
            if copied is None:
                copied = item_copies[id(item)] = (item.id, item.code, item.title, item.points)
            item_id, item_code, item_title, item_points = copied
        rows.append(
            {
                "id": uuid.uuid4(),
                "village_id": village_id,
                "seq": seq,
                "household_id": entry.household_id,
                # The value, not the enum: COPY's text codec and the hash both want the string.
                "kind": entry.kind.value,
                "points": entry.points,
                "counts_score": entry.counts_score,
                "counts_balance": entry.counts_balance,
                "year": entry.year,
                "period_id": entry.period_id,
                "rule_item_id": item_id,
                "item_code": item_code,
                "item_title": item_title,
                "item_points": item_points,
                "source_type": entry.source_type,
                "source_id": entry.source_id,
                "reverses_id": entry.reverses_id,
                "actor_id": entry.actor_id,
                "memo": entry.memo,
                "created_at": now,
            }
        )
    await _apply_summaries(session, village_id, rows, spend_published_only=spend_published_only)
    last_hash = await _copy_entries(session, rows, prev_hash)
    await _CHAIN_MOVED.execute(session, village_id=village_id, seq=seq, hash=last_hash)
    return rows


# Reading


# A page of the household's entries in one statement, sent straight to the driver and answered
# as the page's JSON (LedgerEntryRead's shape): the household within the caller's scope ($2-$7,
# household_scope_args; no row when it is not), whether the caller sees results once approved
# ($8, the villages of UNPUBLISHED_READERS) or, as villagers, only once published (the entries
# of periods approved but not yet published left out), the filters ($9 year, $10 kind, $11
# period; null for any), and $13 entries after seq $12 along ix_ledger_entry_household_seq.
_ENTRIES = f"""
    WITH h AS (
        SELECT h.id, h.village_id,
               {village_scope_sql("h.village_id", everyone="$2", villages="$8", towns="$4")}
               AS sees
        FROM household h
        WHERE h.id = $1 AND {household_scope_sql("h", 2)}
    ), page AS (
        SELECT e.* FROM ledger_entry e
        WHERE e.household_id = (SELECT h.id FROM h) AND e.seq > $12::bigint
          AND ($9::integer IS NULL OR e.year = $9::integer)
          AND ($10::varchar IS NULL OR e.kind = $10::varchar)
          AND ($11::uuid IS NULL OR e.period_id = $11::uuid)
          AND ((SELECT h.sees FROM h) OR NOT (
              e.period_id IS NOT NULL AND e.kind <> 'bonus' AND e.period_id IN (
                  SELECT u.id FROM scoring_period u
                  WHERE u.village_id = (SELECT h.village_id FROM h) AND u.status = 'approved')))
        ORDER BY e.seq LIMIT $13::integer + 1
    ), numbered AS (
        SELECT page.*, row_number() OVER (ORDER BY seq) AS n FROM page
    )
    SELECT (SELECT count(*) FROM numbered) > $13::integer AS more,
           (SELECT max(seq) FROM numbered WHERE n <= $13::integer) AS last_seq,
           (SELECT string_agg(row_to_json(r)::text, ',' ORDER BY e.n)
            FROM numbered e CROSS JOIN LATERAL (SELECT
                e.id, e.household_id, e.seq, e.kind, e.points, e.counts_score, e.counts_balance,
                e.year, e.period_id, e.rule_item_id, e.item_code, e.item_title, e.item_points,
                e.source_type, e.source_id, e.reverses_id, e.memo,
                {json_time("e.created_at")} AS created_at
            ) r
            WHERE e.n <= $13::integer) AS items
    FROM h
"""


async def list_entries(
    source: DriverSource,
    principal: Principal,
    household_id: uuid.UUID,
    params: PageParams,
    *,
    year: int | None,
    kind: LedgerKind | None,
    period_id: uuid.UUID | None = None,
) -> str:
    """A page of the household's entries, oldest first, as Page[LedgerEntryRead]'s JSON."""
    after, bad_cursor = position_after(params)
    driver = await driver_of(source)
    row = await driver.fetchrow(
        _ENTRIES,
        household_id,
        *household_scope_args(principal),
        list(principal.village_ids(*UNPUBLISHED_READERS)),
        year,
        None if kind is None else kind.value,
        period_id,
        after,
        params.limit,
    )
    if row is None:
        raise NotFound("No such household.", code="household.not_found")
    if bad_cursor is not None:
        raise bad_cursor
    cursor = position_cursor(row["last_seq"]) if row["more"] else None
    return f'{{"items":[{row["items"] or ""}],"next_cursor":{json.dumps(cursor)}}}'


# The balance in one statement, sent straight to the driver and answered as BalanceRead's JSON:
# the household within the caller's scope ($3-$8, household_scope_args), its two summaries, and
# for callers who see results only once published ($9: the villages of UNPUBLISHED_READERS see
# them approved) what periods approved but not yet published add to them, taken out.
_BALANCE = f"""
    SELECT row_to_json(s)::text FROM (SELECT
        h.id AS household_id,
        $2::integer AS year,
        coalesce(b.balance, 0) - coalesce(hidden.balance, 0) AS balance,
        coalesce(ys.score, 0) - coalesce(hidden.score, 0) AS year_score
    FROM household h
    LEFT JOIN household_balance b ON b.household_id = h.id
    LEFT JOIN household_year_score ys ON ys.household_id = h.id AND ys.year = $2::integer
    LEFT JOIN LATERAL (
        SELECT sum(e.points) FILTER (WHERE e.counts_balance) AS balance,
               sum(e.points) FILTER (WHERE e.counts_score AND e.year = $2::integer) AS score
        FROM ledger_entry e
        WHERE NOT {village_scope_sql("h.village_id", everyone="$3", villages="$9", towns="$5")}
          AND e.household_id = h.id AND e.kind <> 'bonus' AND e.period_id IN (
              SELECT u.id FROM scoring_period u
              WHERE u.village_id = h.village_id AND u.status = 'approved')
    ) hidden ON true
    WHERE h.id = $1 AND {household_scope_sql("h", 3)}
    ) s
"""


async def balance(
    source: DriverSource, principal: Principal, household_id: uuid.UUID, year: int | None
) -> str:
    """Spendable points and the year's score as BalanceRead's JSON, less what periods not yet
    published add to them for callers who do not see those yet."""
    return await household_json(_BALANCE, source, principal, household_id, year)


async def household_json(
    statement: str,
    source: DriverSource,
    principal: Principal,
    household_id: uuid.UUID,
    year: int | None,
) -> str:
    """A household's read as JSON text built by `statement`, whose parameters are the
    household, the year, household_scope_args and the villages of UNPUBLISHED_READERS."""
    driver = await driver_of(source)
    found: str | None = await driver.fetchval(
        statement,
        household_id,
        year or clock.today().year,
        *household_scope_args(principal),
        list(principal.village_ids(*UNPUBLISHED_READERS)),
    )
    if found is None:
        raise NotFound("No such household.", code="household.not_found")
    return found


def _unpublished_result(village_id: Any) -> ColumnElement[bool]:
    """Entries of periods approved (posted) but not yet published (公示). Bonuses posted into
    such a period before its approval are not: the household saw them when the claim or the
    activity was decided, and was told so."""
    # Given a column (the household's village in an enclosing statement), the periods are
    # read once for the household, not once per entry.
    unpublished = (
        select(col(ScoringPeriod.id))
        .where(
            col(ScoringPeriod.village_id) == village_id,
            col(ScoringPeriod.status) == PeriodStatus.APPROVED,
        )
        .correlate_except(ScoringPeriod)
    )
    # Not null first: NOT (NULL IN ...) would be null and drop the period-less entries too.
    return (
        col(LedgerEntry.period_id).is_not(None)
        & col(LedgerEntry.period_id).in_(unpublished)
        & (col(LedgerEntry.kind) != LedgerKind.BONUS)
    )


# Who sees a village's results as soon as they are approved, besides its town and the district.
UNPUBLISHED_READERS = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)


def unpublished_balance_points(household: Household) -> ScalarSelect[int]:
    """What periods not yet published add to the household's balance, as a subquery: callers
    fold it into the statement that reads the balance."""
    return (
        select(func.coalesce(func.sum(col(LedgerEntry.points)), 0))
        .where(
            col(LedgerEntry.household_id) == household.id,
            col(LedgerEntry.counts_balance),
            _unpublished_result(household.village_id),
        )
        .scalar_subquery()
    )


# Changing


async def adjust(
    session: AsyncSession,
    principal: Principal,
    household_id: uuid.UUID,
    *,
    points: int,
    reason: str,
    counts_score: bool,
    counts_balance: bool,
) -> dict[str, Any]:
    """An admin's adjustment with its reason, audited with the balance before and after."""
    household = await get_household(session, principal, household_id, admin=True)
    if not (counts_score or counts_balance):
        raise Unprocessable(
            "An adjustment must count toward the score, the balance, or both.",
            code="ledger.adjustment_counts_nothing",
        )
    if principal.household_id == household.id:
        raise own_household()
    # Read under the chain lock: a concurrent adjustment cannot slip in between this reading
    # and the entry, so the audited "before" is the balance this entry really started from.
    await lock_chain(session, household.village_id)
    before = json.loads(await balance(session, principal, household.id, clock.today().year))
    [row] = await post(
        session,
        household.village_id,
        [
            NewEntry(
                household_id=household.id,
                kind=LedgerKind.ADJUSTMENT,
                points=points,
                counts_score=counts_score,
                counts_balance=counts_balance,
                year=clock.today().year,
                source_type="adjustment",
                actor_id=principal.person_id,
                memo=reason,
            )
        ],
    )
    after = json.loads(await balance(session, principal, household.id, clock.today().year))
    audit.record(
        session,
        principal,
        "ledger.adjust",
        "ledger_entry",
        row["id"],
        before=before,
        after={**after, "reason": reason},
        village_id=household.village_id,
    )
    return row


def own_household() -> Forbidden:
    return Forbidden(
        "Nobody changes the points of their own household.",
        code="ledger.own_household",
        title="不能更改本户的积分",
    )


def reversal_of(
    original: LedgerEntry,
    *,
    actor_id: uuid.UUID | None,
    memo: str,
    source_type: str = "correction",
    source_id: uuid.UUID | None = None,
) -> NewEntry:
    """The correction entry that reverses `original`: its points negated, counted where it
    counted, in its year and period. The ledger takes it once (uq_ledger_entry_reverses_id);
    callers check under the chain lock that it is not reversed yet."""
    return NewEntry(
        household_id=original.household_id,
        kind=LedgerKind.CORRECTION,
        points=-original.points,
        counts_score=original.counts_score,
        counts_balance=original.counts_balance,
        year=original.year,
        period_id=original.period_id,
        source_type=source_type,
        source_id=source_id or original.id,
        reverses_id=original.id,
        actor_id=actor_id,
        memo=memo,
    )


async def correct(
    session: AsyncSession, principal: Principal, entry_id: uuid.UUID, reason: str
) -> dict[str, Any]:
    """Reverse an entry, once, with a reason; the original stays as it was."""
    original = (
        await session.execute(
            select(LedgerEntry)
            .join(Household, col(Household.id) == col(LedgerEntry.household_id))
            .where(col(LedgerEntry.id) == entry_id, household_scope(principal, admin_only=True))
        )
    ).scalar_one_or_none()
    if original is None:
        raise NotFound("No such ledger entry.", code="ledger_entry.not_found")
    if principal.household_id == original.household_id:
        raise own_household()
    if original.kind is LedgerKind.CORRECTION:
        raise Conflict(
            "A correction is not itself corrected; adjust instead.",
            code="ledger.correction_of_correction",
        )
    if original.points == 0:
        # Only a veto may carry zero points, and a zero-point reversal cannot be an entry.
        raise Conflict(
            "The entry moved no points, so there is nothing to reverse.",
            code="ledger.nothing_to_correct",
            title="该记录没有可更正的积分",
        )
    # Checked under the chain lock, so two simultaneous corrections of one entry get one
    # entry and one clear answer rather than a unique-constraint violation.
    await lock_chain(session, original.village_id)
    already = (
        await session.execute(
            select(col(LedgerEntry.id)).where(col(LedgerEntry.reverses_id) == original.id)
        )
    ).first()
    if already is not None:
        raise Conflict(
            "The entry was already corrected.",
            code="ledger.already_corrected",
            title="该记录已更正",
        )
    # The first row is the correction; an expiry follows where its year has closed and reset.
    row, *_ = await post(
        session,
        original.village_id,
        [reversal_of(original, actor_id=principal.person_id, memo=reason)],
    )
    audit.record(
        session, principal, "ledger.correct", "ledger_entry", row["id"],
        before={"entry_id": str(original.id), "points": original.points},
        after={"points": row["points"], "reason": reason}, village_id=original.village_id,
    )  # fmt: skip
    return row


# Verification


def _audit_scope(principal: Principal) -> ColumnElement[bool]:
    return village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,))


async def verify_chain(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID
) -> ChainVerification:
    village = (
        await session.execute(
            select(Village).where(col(Village.id) == village_id, _audit_scope(principal))
        )
    ).scalar_one_or_none()
    if village is None:
        raise NotFound("No such village.", code="village.not_found")
    return await verify_village_chain(session, village.id)


async def verify_village_chain(
    session: AsyncSession, village_id: uuid.UUID, batch: int = 5000
) -> ChainVerification:
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    columns = [col(getattr(LedgerEntry, name)) for name in (*HASHED_FIELDS, "prev_hash", "hash")]
    last_seq = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(*columns)
                    .where(
                        col(LedgerEntry.village_id) == village_id, col(LedgerEntry.seq) > last_seq
                    )
                    .order_by(col(LedgerEntry.seq))
                    .limit(batch)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            problem = None
            bad_seq = row["seq"]
            if row["seq"] != expected_seq:
                # The first missing entry is the first bad one.
                problem = f"expected entry {expected_seq}, found {row['seq']}"
                bad_seq = expected_seq
            elif row["prev_hash"] != prev_hash:
                problem = "does not link to the entry before it"
            elif entry_hash(prev_hash, dict(row)) != row["hash"]:
                problem = "its content does not match its hash"
            if problem:
                return ChainVerification(
                    village_id=village_id,
                    ok=False,
                    entries_checked=checked,
                    first_bad_seq=bad_seq,
                    problem=problem,
                )
            prev_hash, expected_seq, checked = row["hash"], expected_seq + 1, checked + 1
        last_seq = rows[-1]["seq"]
    # The head is written only by `post`: entries removed from the end, added behind the
    # application's back, or re-hashed after a change all leave it out of step.
    head = (
        await session.execute(
            select(col(LedgerChain.last_seq), col(LedgerChain.last_hash)).where(
                col(LedgerChain.village_id) == village_id
            )
        )
    ).first()
    head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
    if (head_seq, head_hash) == (checked, prev_hash):
        return ChainVerification(village_id=village_id, ok=True, entries_checked=checked)
    if head_seq > checked:
        bad_seq, problem = checked + 1, "entries are missing at the end of the chain"
    elif head_seq < checked:
        bad_seq, problem = head_seq + 1, "entries were added after the chain head"
    else:
        bad_seq, problem = checked, "the last entry does not match the chain head"
    return ChainVerification(
        village_id=village_id,
        ok=False,
        entries_checked=checked,
        first_bad_seq=bad_seq,
        problem=problem,
    )


# Year end


async def _expiring_points(
    session: AsyncSession, village_id: uuid.UUID, year: int
) -> list[tuple[uuid.UUID, int]]:
    """Each household's points that expire when `year` closes: what is left of the points of
    that year and before, never the next year's. The close usually runs after New Year, when
    the next year's entries may already be in the balance.

    Read under the chain lock, so no spend can move a balance before the expiry is posted.
    """
    await lock_chain(session, village_id)
    through_year = (
        select(
            col(LedgerEntry.household_id).label("household_id"),
            func.sum(col(LedgerEntry.points)).label("points"),
        )
        .where(
            col(LedgerEntry.village_id) == village_id,
            col(LedgerEntry.counts_balance),
            col(LedgerEntry.year) <= year,
        )
        .group_by(col(LedgerEntry.household_id))
        .subquery()
    )
    expiring = func.least(col(HouseholdBalance.balance), through_year.c.points)
    rows = await session.execute(
        select(col(HouseholdBalance.household_id), expiring)
        .join(through_year, through_year.c.household_id == col(HouseholdBalance.household_id))
        .where(col(HouseholdBalance.village_id) == village_id, expiring > 0)
        .order_by(col(HouseholdBalance.household_id))
    )
    return [(household_id, int(points)) for household_id, points in rows]


@dataclass
class YearEnd:
    """What a run of the close did: the villages it closed, and why the others wait."""

    closed: list[YearEndClose] = field(default_factory=list)
    blocked: list[YearCloseBlocker] = field(default_factory=list)


async def close_year(
    session: AsyncSession, year: int, *, village_ids: Sequence[uuid.UUID] | None = None
) -> YearEnd:
    """Expire what is left of the year's points in villages whose policy resets each year;
    record carry-overs.

    Runs once per village and year: a second run finds the record and changes nothing. A
    village waits, with the reasons said (points_year.year_close_blockers), until every
    period of the year exists and is published: closing before December is scored would shut
    the year on a month nobody scored. Only the closed year's points expire: spends drew on
    the oldest year first (`post`), so what the year still holds is the sum of its entries
    and those before it, and the new year's points are never touched.
    """
    statement = select(Village).order_by(col(Village.name))
    if village_ids is not None:
        statement = statement.where(col(Village.id).in_(village_ids))
    outcome = YearEnd()
    for village in (await session.execute(statement)).scalars().all():
        # Serialise two runs of the close for the same village and year.
        await session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(f"year-end:{village.id}:{year}")))
        )
        if await session.get(YearEndClose, (village.id, year)) is not None:
            continue
        blockers = await year_close_blockers(session, village.id, year)
        if blockers:
            outcome.blocked += blockers
            continue
        rules = await rule_set_in_force(session, village.id, date(year, 12, 31))
        assert rules is not None  # no approved rules for the year is a blocker
        policy = Policy.model_validate(rules.policy)
        expiring: list[NewEntry] = []
        if not policy.carry_over:
            expiring_points = await _expiring_points(session, village.id, year)
            expiring = [
                NewEntry(
                    household_id=household_id,
                    kind=LedgerKind.EXPIRY,
                    points=-points,
                    counts_score=False,
                    counts_balance=True,
                    year=year,
                    source_type="year_end",
                    memo=f"{year}年积分年底清零",
                )
                for household_id, points in expiring_points
            ]
            await post(session, village.id, expiring)
        record = YearEndClose(
            village_id=village.id,
            year=year,
            carried_over=policy.carry_over,
            households_expired=len(expiring),
            points_expired=-sum(e.points for e in expiring),
        )
        session.add(record)
        await session.flush()
        outcome.closed.append(record)
    return outcome
