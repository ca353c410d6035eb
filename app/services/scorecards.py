"""Scorecards (评分表): what a scorer records door to door, possibly on a phone that was offline.

A save carries the whole card and replaces the lines it had, so a phone can resend what it
holds as often as it likes. Saves of one period hold its row FOR SHARE until they commit: the
approval locks it FOR UPDATE before computing the cards, so a save either lands before the
approval reads the cards or waits and then finds the period no longer open. Saves of the same
card are serialised by an advisory lock on (period, household), so the card is created once
and its lines are always one save's lines.
"""

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Uuid,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import household_scope, village_scope
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    Household,
    HouseholdMember,
    ItemKind,
    Outcome,
    Participation,
    PeriodStatus,
    Person,
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
)
from app.schemas.rules import Policy, ScoringMode
from app.schemas.scorecards import (
    CardStatus,
    DueItem,
    ScorecardLineRead,
    ScorecardRead,
    ScorecardWrite,
    Worklist,
    WorklistHousehold,
)
from app.security import Principal
from app.services import photos
from app.services.scoring import is_due

SCORING_ROLES = (Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)
CARD_KINDS = (ItemKind.INSPECTION, ItemKind.VETO)
SAVABLE = (PeriodStatus.OPEN, PeriodStatus.SCORING)


def points_out_of_range(item: RuleItem, allowed: str) -> Unprocessable:
    return Unprocessable(
        f"Item {item.code}: the points given are not allowed here ({allowed}).",
        code="scorecard.points_out_of_range",
        title="评分超出该项目的分值范围",
        rule_item_id=str(item.id),
    )


def line_points(mode: ScoringMode, item: RuleItem, outcome: Outcome, given: int | None) -> int:
    """What a line is worth before caps: earned (additive) or deducted (negative, deductive).

    `given` is a partial score: points earned short of the item's full points in additive
    mode, points deducted short of the full deduction in deductive mode. Where no partial
    score applies, only the line's own value may be given.
    """
    finding = Outcome(outcome) is Outcome.FINDING
    if item.kind is ItemKind.VETO:
        # The veto is the finding itself; the ledger records it without points.
        worth = 0
    elif mode is ScoringMode.DEDUCTIVE and finding:
        if given is None:
            return -item.points
        if not 0 <= given <= item.points:
            raise points_out_of_range(item, f"0 to {item.points} deducted")
        return -given
    elif mode is ScoringMode.ADDITIVE and item.points > 0 and not finding:
        if given is None:
            return item.points
        if not 0 <= given <= item.points:
            raise points_out_of_range(item, f"0 to {item.points} earned")
        return given
    elif mode is ScoringMode.ADDITIVE and item.points < 0 and finding:
        worth = item.points  # a penalty item
    else:
        worth = 0
    if given is not None and given != worth:
        raise points_out_of_range(item, f"only {worth}")
    return worth


def _period_scope(principal: Principal) -> ColumnElement[bool]:
    # Scoring is village work: town supervisors oversee it elsewhere, they do not score.
    return village_scope(principal, col(ScoringPeriod.village_id), roles=SCORING_ROLES, towns=False)


def _period_not_found() -> NotFound:
    return NotFound("No such scoring period.", code="period.not_found", title="考核周期不存在")


def _household_not_found() -> NotFound:
    return NotFound("No such household.", code="household.not_found", title="农户不存在")


async def _period(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    period = (
        await session.execute(
            select(ScoringPeriod).where(
                col(ScoringPeriod.id) == period_id, _period_scope(principal)
            )
        )
    ).scalar_one_or_none()
    if period is None:
        raise _period_not_found()
    return period


async def _period_for_saving(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> ScoringPeriod:
    """The period, held FOR SHARE until the save commits, if it still takes cards.

    The first save moves an open period to scoring. That update comes before the share lock:
    two saves holding the row FOR SHARE and then both updating it would deadlock, whereas
    saves queued on the update find the period already scoring and take the share lock only.
    """
    scope = _period_scope(principal)
    await session.execute(
        update(ScoringPeriod)
        .where(
            col(ScoringPeriod.id) == period_id,
            col(ScoringPeriod.status) == PeriodStatus.OPEN,
            scope,
        )
        .values(status=PeriodStatus.SCORING)
        .execution_options(synchronize_session=False)
    )
    period = (
        await session.execute(
            select(ScoringPeriod)
            .where(col(ScoringPeriod.id) == period_id, scope)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if period is None:
        raise _period_not_found()
    if period.status not in SAVABLE:
        raise Conflict(
            f"The period is {period.status.value}; its scorecards can no longer change.",
            code="period.not_open",
            title="该考核周期已不能评分",
        )
    return period


@dataclass(frozen=True)
class CardRules:
    mode: ScoringMode
    # Every inspection and veto item of the period's rule set, due or not.
    items: dict[uuid.UUID, RuleItem]
    category_names: dict[uuid.UUID, str]


async def _card_rules(session: AsyncSession, period: ScoringPeriod) -> CardRules:
    policy = (
        await session.execute(
            select(col(RuleSet.policy)).where(col(RuleSet.id) == period.rule_set_id)
        )
    ).scalar_one()
    rows = await session.execute(
        select(RuleItem, col(RuleCategory.name))
        .join(RuleCategory, col(RuleCategory.id) == col(RuleItem.category_id))
        .where(col(RuleItem.rule_set_id) == period.rule_set_id, col(RuleItem.kind).in_(CARD_KINDS))
        .order_by(col(RuleCategory.position), col(RuleItem.position), col(RuleItem.code))
    )
    items: dict[uuid.UUID, RuleItem] = {}
    names: dict[uuid.UUID, str] = {}
    for item, category_name in rows:
        items[item.id] = item
        names[item.id] = category_name
    return CardRules(Policy.model_validate(policy).scoring_mode, items, names)


def _due(period: ScoringPeriod, rules: CardRules) -> list[RuleItem]:
    return [i for i in rules.items.values() if is_due(i.cadence, period.kind, period.number)]


# Reading


async def worklist(session: AsyncSession, principal: Principal, period_id: uuid.UUID) -> Worklist:
    """The period's participating households in the caller's scope, with each card's state.

    The caller's own household is left out: nobody scores their own household.
    """
    period = await _period(session, principal, period_id)
    rules = await _card_rules(session, period)
    due = _due(period, rules)
    filled = (
        select(
            col(ScorecardLine.scorecard_id).label("scorecard_id"),
            func.count().label("lines"),
        )
        .where(col(ScorecardLine.rule_item_id).in_([i.id for i in due]))
        .group_by(col(ScorecardLine.scorecard_id))
        .subquery()
    )
    statement = (
        select(
            col(Household.id),
            col(Household.number),
            col(Household.village_group_id),
            col(Person.name),
            col(Scorecard.id).label("card_id"),
            col(Scorecard.updated_at),
            filled.c.lines,
        )
        .outerjoin(
            HouseholdMember,
            and_(
                col(HouseholdMember.household_id) == col(Household.id),
                col(HouseholdMember.is_head),
            ),
        )
        .outerjoin(Person, col(Person.id) == col(HouseholdMember.person_id))
        .outerjoin(
            Scorecard,
            and_(
                col(Scorecard.household_id) == col(Household.id),
                col(Scorecard.period_id) == period.id,
            ),
        )
        .outerjoin(filled, filled.c.scorecard_id == col(Scorecard.id))
        .where(
            col(Household.village_id) == period.village_id,
            col(Household.participation) == Participation.ACTIVE,
            household_scope(principal),
        )
        .order_by(col(Household.number), col(Household.id))
    )
    if principal.household_id is not None:
        statement = statement.where(col(Household.id) != principal.household_id)
    households = []
    for row in await session.execute(statement):
        status: CardStatus = "none"
        if row.card_id is not None:
            status = "complete" if (row.lines or 0) >= len(due) else "partial"
        households.append(
            WorklistHousehold(
                household_id=row.id,
                number=row.number,
                village_group_id=row.village_group_id,
                head_name=row.name,
                card_status=status,
                card_id=row.card_id,
                card_updated_at=row.updated_at,
            )
        )
    return Worklist(
        period_id=period.id,
        rule_set_id=period.rule_set_id,
        scoring_mode=rules.mode.value,
        items=[
            DueItem(
                id=item.id,
                code=item.code,
                title=item.title,
                points=item.points,
                kind=item.kind,
                category_name=rules.category_names[item.id],
            )
            for item in due
        ],
        households=households,
    )


async def _cards_read(
    session: AsyncSession, card_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ScorecardRead]:
    """Cards as stored, lines in the rule set's order (columns, never cached objects)."""
    cards = (
        await session.execute(
            select(
                col(Scorecard.id),
                col(Scorecard.period_id),
                col(Scorecard.household_id),
                col(Scorecard.scorer_id),
                col(Scorecard.note),
                col(Scorecard.revision),
                col(Scorecard.created_at),
                col(Scorecard.updated_at),
            ).where(col(Scorecard.id).in_(card_ids))
        )
    ).mappings()
    lines = await session.execute(
        select(
            col(ScorecardLine.scorecard_id),
            col(ScorecardLine.id),
            col(ScorecardLine.rule_item_id),
            col(ScorecardLine.outcome),
            col(ScorecardLine.points),
            col(ScorecardLine.note),
            col(ScorecardLine.photos),
            col(RuleItem.kind),
        )
        .join(RuleItem, col(RuleItem.id) == col(ScorecardLine.rule_item_id))
        .join(RuleCategory, col(RuleCategory.id) == col(RuleItem.category_id))
        .where(col(ScorecardLine.scorecard_id).in_(card_ids))
        .order_by(col(RuleCategory.position), col(RuleItem.position), col(RuleItem.code))
    )
    by_card: dict[uuid.UUID, list[Any]] = {card_id: [] for card_id in card_ids}
    for line in lines:
        by_card[line.scorecard_id].append(line)
    return {
        card["id"]: ScorecardRead(
            **card,
            points=sum(line.points for line in by_card[card["id"]]),
            vetoed=any(
                line.kind is ItemKind.VETO and line.outcome is Outcome.FINDING
                for line in by_card[card["id"]]
            ),
            lines=[ScorecardLineRead.model_validate(line) for line in by_card[card["id"]]],
        )
        for card in cards
    }


async def get_scorecard(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID, household_id: uuid.UUID
) -> ScorecardRead:
    period = await _period(session, principal, period_id)
    household = await session.scalar(
        select(col(Household.id)).where(
            col(Household.id) == household_id,
            col(Household.village_id) == period.village_id,
            household_scope(principal),
        )
    )
    if household is None:
        raise _household_not_found()
    card_id = await session.scalar(
        select(col(Scorecard.id)).where(
            col(Scorecard.period_id) == period.id, col(Scorecard.household_id) == household_id
        )
    )
    if card_id is None:
        raise NotFound(
            "This household has no scorecard for the period yet.",
            code="scorecard.not_found",
            title="该户本期尚未评分",
        )
    return (await _cards_read(session, [card_id]))[card_id]


# Saving


def _card_lock_key(period_id: uuid.UUID, household_id: uuid.UUID) -> int:
    digest = hashlib.blake2b(period_id.bytes + household_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _lock_cards(
    session: AsyncSession, period_id: uuid.UUID, household_ids: Sequence[uuid.UUID]
) -> None:
    """Serialise saves of the same cards until commit. Taken in ascending key order in one
    statement, so two batches sharing cards queue instead of deadlocking."""
    keys = sorted({_card_lock_key(period_id, h) for h in household_ids})
    await session.execute(
        text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
        {"keys": keys},
    )


def _validated_lines(
    period: ScoringPeriod, rules: CardRules, card: ScorecardWrite
) -> list[dict[str, Any]]:
    """The card's lines as rows (without their card), or the first refusal."""
    seen: set[uuid.UUID] = set()
    rows: list[dict[str, Any]] = []
    for line in card.lines:
        item = rules.items.get(line.rule_item_id)
        if item is None:
            raise Unprocessable(
                "The item is not an inspection or veto item of the period's rules.",
                code="scorecard.item_not_on_card",
                title="该项目不在本期评分表上",
                rule_item_id=str(line.rule_item_id),
            )
        if item.id in seen:
            raise Unprocessable(
                f"Item {item.code} appears more than once on the card.",
                code="scorecard.duplicate_item",
                title="同一项目在评分表上重复",
                rule_item_id=str(item.id),
            )
        seen.add(item.id)
        if not is_due(item.cadence, period.kind, period.number):
            raise Unprocessable(
                f"Item {item.code} is scored {item.cadence.value}, not in this period.",
                code="scorecard.item_not_due",
                title="该项目本期不需评分",
                rule_item_id=str(item.id),
            )
        rows.append(
            {
                "id": line.id,
                "village_id": period.village_id,
                "rule_item_id": item.id,
                "outcome": line.outcome,
                "points": line_points(rules.mode, item, line.outcome, line.points),
                "note": line.note,
                "photos": [str(photo_id) for photo_id in line.photos],
            }
        )
    return rows


def _id_taken() -> Conflict:
    return Conflict(
        "This card id is already used by another household's or period's card.",
        code="scorecard.id_taken",
        title="评分表标识已被占用",
    )


def _line_id_taken() -> Conflict:
    return Conflict(
        "A line id is already used by another card.",
        code="scorecard.line_id_taken",
        title="评分项标识已被占用",
    )


async def save_cards(
    session: AsyncSession,
    principal: Principal,
    period_id: uuid.UUID,
    cards: Sequence[tuple[uuid.UUID, ScorecardWrite]],
) -> list[ScorecardRead]:
    """Save whole cards (household, card) in the caller's transaction: all of them or, on the
    first refusal, none. Returns them as stored, in the order given."""
    period = await _period_for_saving(session, principal, period_id)
    rules = await _card_rules(session, period)
    household_ids = [household_id for household_id, _ in cards]
    await _lock_cards(session, period.id, household_ids)

    households = {
        household_id: participation
        for household_id, participation in await session.execute(
            select(col(Household.id), col(Household.participation)).where(
                col(Household.id).in_(household_ids),
                col(Household.village_id) == period.village_id,
                household_scope(principal),
            )
        )
    }
    # Read after the card locks: what another save committed meanwhile is seen here.
    existing = {
        household_id: card_id
        for household_id, card_id in await session.execute(
            select(col(Scorecard.household_id), col(Scorecard.id)).where(
                col(Scorecard.period_id) == period.id,
                col(Scorecard.household_id).in_(household_ids),
            )
        )
    }
    card_owners = {
        row.id: (row.period_id, row.household_id)
        for row in await session.execute(
            select(col(Scorecard.id), col(Scorecard.period_id), col(Scorecard.household_id)).where(
                col(Scorecard.id).in_([card.id for _, card in cards])
            )
        )
    }
    line_ids = [line.id for _, card in cards for line in card.lines]
    line_owners = {
        line_id: card_id
        for line_id, card_id in await session.execute(
            # One array parameter, not one per id: a batch may carry tens of thousands.
            select(col(ScorecardLine.id), col(ScorecardLine.scorecard_id)).where(
                col(ScorecardLine.id) == any_(bindparam("line_ids", line_ids, type_=ARRAY(Uuid)))
            )
        )
    }

    now = clock.now()
    new_cards: list[dict[str, Any]] = []
    card_ids: list[uuid.UUID] = []
    lines: list[dict[str, Any]] = []
    for household_id, card in cards:
        if household_id not in households:
            raise _household_not_found()
        if household_id == principal.household_id:
            raise Forbidden(
                "Nobody scores their own household.",
                code="scorecard.own_household",
                title="不能为本户评分",
            )
        if households[household_id] is not Participation.ACTIVE:
            raise Conflict(
                "The household does not take part in the points scheme.",
                code="scorecard.household_not_participating",
                title="该户未参与积分评比",
            )
        rows = _validated_lines(period, rules, card)
        card_id = existing.get(household_id, card.id)
        owner = card_owners.get(card.id)
        if owner is not None and owner != (period.id, household_id):
            raise _id_taken()
        if any(line_owners.get(row["id"], card_id) != card_id for row in rows):
            raise _line_id_taken()
        if household_id not in existing:
            new_cards.append(
                {
                    "id": card_id,
                    "period_id": period.id,
                    "household_id": household_id,
                    "village_id": period.village_id,
                    "scorer_id": principal.person_id,
                    "note": card.note,
                    "revision": 1,
                    "updated_at": now,
                }
            )
        card_ids.append(card_id)
        lines.extend({**row, "scorecard_id": card_id} for row in rows)

    resaved = [existing[h] for h in household_ids if h in existing]
    if resaved:
        await session.execute(
            delete(ScorecardLine).where(col(ScorecardLine.scorecard_id).in_(resaved))
        )
        notes = {card_id: card.note for (_, card), card_id in zip(cards, card_ids, strict=True)}
        for card_id in resaved:
            await session.execute(
                update(Scorecard)
                .where(col(Scorecard.id) == card_id)
                .values(
                    revision=col(Scorecard.revision) + 1,
                    updated_at=now,
                    scorer_id=principal.person_id,
                    note=notes[card_id],
                )
                .execution_options(synchronize_session=False)
            )
    try:
        if new_cards:
            await session.execute(insert(Scorecard), new_cards)
        if lines:
            await session.execute(insert(ScorecardLine), lines)
    except IntegrityError as exc:
        # An id another card took between our check and our insert (a different household's
        # save, which our card locks do not hold back).
        constraint = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
        if constraint == "pk_scorecard":
            raise _id_taken() from exc
        if constraint == "pk_scorecard_line":
            raise _line_id_taken() from exc
        raise
    for card_id, (_, card) in zip(card_ids, cards, strict=True):
        await photos.attach_to_card(
            session,
            principal,
            [photo_id for line in card.lines for photo_id in line.photos],
            card_id=card_id,
            village_id=period.village_id,
        )
    read = await _cards_read(session, card_ids)
    return [read[card_id] for card_id in card_ids]
