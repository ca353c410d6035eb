"""抽查 (旧县: 不定期抽查): the town draws a seeded random sample of a period's scored households,
an inspector from the town scores them on the period's own card, and the difference from the
village's card shows how far the village's scoring can be trusted."""

import random
import secrets
import uuid
from typing import NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.errors import Conflict, Forbidden, Unprocessable
from app.models import (
    Household,
    Inspection,
    InspectionHousehold,
    ItemKind,
    LedgerEntry,
    Outcome,
    PeriodStatus,
    RuleCategory,
    RuleItem,
    RuleSet,
    ScoringPeriod,
)
from app.schemas.rules import Policy
from app.schemas.supervision import InspectedHousehold, InspectionCard, InspectionRead
from app.security import Principal
from app.services import audit
from app.services.scorecards import line_points
from app.services.scoring import PeriodContext, household_result, is_due
from app.services.supervision.scope import supervised_period

SCORED = (PeriodStatus.APPROVED, PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)
# The entries approval posts from a card (its lines, and the base, caps and floor).
CARD_SOURCES = ("scorecard_line", "period")


def draw_sample(household_ids: list[uuid.UUID], size: int, seed: int) -> list[uuid.UUID]:
    """The same households for the same seed and population, whatever order they came in."""
    population = sorted(household_ids, key=str)
    return sorted(random.Random(seed).sample(population, min(size, len(population))), key=str)


async def _card_scores(session: AsyncSession, period: ScoringPeriod) -> dict[uuid.UUID, int]:
    """Each household's card result as approval posted it (bonuses left out)."""
    rows = await session.execute(
        select(col(LedgerEntry.household_id), func.sum(col(LedgerEntry.points)))
        .where(
            col(LedgerEntry.period_id) == period.id,
            col(LedgerEntry.village_id) == period.village_id,
            col(LedgerEntry.source_type).in_(CARD_SOURCES),
            col(LedgerEntry.reverses_id).is_(None),
        )
        .group_by(col(LedgerEntry.household_id))
    )
    return {household_id: int(points) for household_id, points in rows}


async def draw(
    session: AsyncSession,
    principal: Principal,
    period_id: uuid.UUID,
    size: int,
    seed: int | None,
) -> InspectionRead:
    period = await supervised_period(session, principal, period_id, lock=True)
    if period.status not in SCORED:
        raise Conflict(
            "Only approved results can be checked.",
            code="period.wrong_status",
            title="考核周期当前状态不允许该操作",
            status_now=period.status.value,
        )
    if await session.get(Inspection, period.id) is not None:
        raise Conflict(
            "This period's sample has been drawn already.",
            code="inspection.exists",
            title="该考核周期已抽查",
        )
    scores = await _card_scores(session, period)
    seed = secrets.randbits(62) if seed is None else seed
    sample = draw_sample(list(scores), size, seed)
    inspection = Inspection(
        period_id=period.id,
        village_id=period.village_id,
        town_id=period.town_id,
        seed=seed,
        size=len(sample),
        drawn_by=principal.person_id,
    )
    session.add(inspection)
    await session.flush()
    if sample:
        await session.execute(
            insert(InspectionHousehold),
            [
                {
                    "period_id": period.id,
                    "household_id": h,
                    "village_id": period.village_id,
                    "village_score": scores[h],
                }
                for h in sample
            ],
        )
    audit.record(
        session,
        principal,
        "inspection.draw",
        "scoring_period",
        period.id,
        after={"seed": seed, "size": len(sample), "households": [str(h) for h in sample]},
        town_id=period.town_id,
        village_id=period.village_id,
    )
    return await _read(session, inspection)


class _Line(NamedTuple):
    id: uuid.UUID
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int
    note: str


async def _context(session: AsyncSession, period: ScoringPeriod) -> PeriodContext:
    rule_set = await session.get(RuleSet, period.rule_set_id)
    assert rule_set is not None
    categories = (
        await session.execute(
            select(RuleCategory).where(col(RuleCategory.rule_set_id) == rule_set.id)
        )
    ).scalars()
    items = (
        await session.execute(
            select(RuleItem).where(
                col(RuleItem.rule_set_id) == rule_set.id,
                col(RuleItem.kind).in_([ItemKind.INSPECTION, ItemKind.VETO]),
            )
        )
    ).scalars()
    return PeriodContext(
        period_id=period.id,
        year=period.year,
        actor_id=None,
        policy=Policy.model_validate(rule_set.policy),
        categories={c.id: c for c in categories},
        items={i.id: i for i in items if is_due(i.cadence, period.kind, period.number)},
    )


async def score_household(
    session: AsyncSession,
    principal: Principal,
    period_id: uuid.UUID,
    household_id: uuid.UUID,
    card: InspectionCard,
) -> InspectedHousehold:
    """The inspector's card for a sampled household, scored as approval scores the village's:
    the same items, caps, base and floor. Saving again replaces the inspector's card."""
    period = await supervised_period(session, principal, period_id)
    row = (
        await session.execute(
            select(InspectionHousehold)
            .where(
                col(InspectionHousehold.period_id) == period.id,
                col(InspectionHousehold.household_id) == household_id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise Conflict(
            "The household is not in this period's sample.",
            code="inspection.not_sampled",
            title="该农户不在本次抽查样本中",
        )
    if principal.household_id == household_id:
        raise Forbidden(
            "Nobody inspects their own household.",
            code="inspection.own_household",
            title="不能抽查本人家庭",
        )
    context = await _context(session, period)
    lines: list[_Line] = []
    for line in card.lines:
        item = context.items.get(line.rule_item_id)
        if item is None:
            raise Unprocessable(
                "The item is not on this period's card.",
                code="scorecard.item_not_on_card",
                title="该项目不在本期评分表上",
                rule_item_id=str(line.rule_item_id),
            )
        points = line_points(context.policy.scoring_mode, item, line.outcome, line.points)
        lines.append(_Line(uuid.uuid4(), item.id, line.outcome, points, line.note))
    given = [line.rule_item_id for line in lines]
    if len(set(given)) != len(given) or set(given) != set(context.items):
        raise Unprocessable(
            "The card needs every item due this period, each once.",
            code="inspection.card_incomplete",
            title="抽查评分表须逐项填写且不得重复",
        )
    result = household_result(context, household_id, lines)
    before = {"inspector_score": row.inspector_score}
    row.inspector_score = result.score
    row.inspected_by = principal.person_id
    row.inspected_at = clock.now()
    row.lines = [
        {
            "rule_item_id": str(line.rule_item_id),
            "outcome": line.outcome.value,
            "points": line.points,
            "note": line.note,
        }
        for line in lines
    ]
    await session.flush()
    audit.record(
        session,
        principal,
        "inspection.score",
        "household",
        household_id,
        before=before,
        after={"inspector_score": result.score, "village_score": row.village_score},
        town_id=period.town_id,
        village_id=period.village_id,
    )
    number = await session.scalar(
        select(col(Household.number)).where(col(Household.id) == household_id)
    )
    return _household(row, number or "")


def _household(row: InspectionHousehold, number: str) -> InspectedHousehold:
    return InspectedHousehold(
        household_id=row.household_id,
        number=number,
        village_score=row.village_score,
        inspector_score=row.inspector_score,
        difference=(
            row.inspector_score - row.village_score if row.inspector_score is not None else None
        ),
        inspected_at=row.inspected_at,
    )


async def _read(session: AsyncSession, inspection: Inspection) -> InspectionRead:
    rows = (
        await session.execute(
            select(InspectionHousehold, col(Household.number))
            .join(Household, col(Household.id) == col(InspectionHousehold.household_id))
            .where(col(InspectionHousehold.period_id) == inspection.period_id)
            .order_by(col(Household.number), col(Household.id))
        )
    ).all()
    households = [_household(row, number) for row, number in rows]
    differences = [abs(h.difference) for h in households if h.difference is not None]
    return InspectionRead(
        period_id=inspection.period_id,
        village_id=inspection.village_id,
        seed=inspection.seed,
        size=inspection.size,
        drawn_by=inspection.drawn_by,
        drawn_at=inspection.drawn_at,
        households=households,
        inspected=len(differences),
        mean_abs_difference=(
            round(sum(differences) / len(differences), 2) if differences else None
        ),
    )


async def get_inspection(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> InspectionRead:
    period = await supervised_period(session, principal, period_id)
    inspection = await session.get(Inspection, period.id)
    if inspection is None:
        return InspectionRead(period_id=period.id, village_id=period.village_id)
    return await _read(session, inspection)
