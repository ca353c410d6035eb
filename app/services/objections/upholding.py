"""Upholding: the correction through the ledger, the re-score and the republication."""

import uuid
from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app import clock
from app.errors import Conflict, Unprocessable
from app.models import (
    HouseholdPeriodScore,
    LedgerEntry,
    LedgerKind,
    Objection,
    ObjectionStatus,
    Outcome,
    RuleCategory,
    RuleItem,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
)
from app.schemas.objections import AmendedLine
from app.schemas.rules import Policy, VetoScope
from app.security import Principal
from app.services import audit, ledger, rankings
from app.services.objections.common import entry_reversed, period_policy
from app.services.periods import _due_items as due_items
from app.services.periods import vetoed_for_the_year
from app.services.scorecards import line_points
from app.services.scoring import PeriodContext, household_result

# Entries that come from the household's card: approval posts them (scorecard lines, the
# base score, caps and floors), and an upheld objection re-posts them re-scored.
CARD_SOURCES = ("scorecard_line", "period", "objection")


# Upholding: the correction, the re-score and the republication


@dataclass
class _Line:
    """A card line as scoring reads it (scoring.CardLine)."""

    id: uuid.UUID
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int
    note: str
    amended: bool = False


async def uphold(
    session: AsyncSession,
    principal: Principal,
    objection: Objection,
    lines: list[AmendedLine],
    reason: str,
) -> None:
    """The outcome of an upheld objection is a correction through the ledger: a disputed
    bonus, award or adjustment is reversed; a disputed card (an entry it gave, or the period
    score) is re-scored, the card's entries reversed and its new result posted, with caps, the
    period cap and vetoes exactly as approval computes them. Then the period is republished
    for the household."""
    period = await session.get(ScoringPeriod, objection.period_id)
    assert period is not None
    score = await session.get(HouseholdPeriodScore, (objection.household_id, period.id))
    assert score is not None  # filing required it, and nothing deletes it
    objection.score_before, objection.vetoed_before = score.score, score.vetoed
    entry = (
        await session.get(LedgerEntry, objection.ledger_entry_id)
        if objection.ledger_entry_id
        else None
    )
    memo = f"异议更正：{reason}"[:500]
    if entry is not None and entry.source_type not in CARD_SOURCES:
        if lines:
            raise Unprocessable(
                "The disputed entry is not from the card; upholding reverses it.",
                code="objection.lines_not_applicable",
                title="该记录不是评分表得分，不需要重新评分",
            )
        if await entry_reversed(session, entry.id):
            raise Conflict(
                "The entry was already corrected.",
                code="ledger.already_corrected",
                title="该记录已更正",
            )
        reversal = ledger.reversal_of(
            entry,
            actor_id=principal.person_id,
            memo=memo,
            source_type="objection",
            source_id=objection.id,
        )
        await ledger.post(session, period.village_id, [reversal])
    else:
        policy = await period_policy(session, period.id)
        items = await due_items(session, period)
        if not lines and (entry is None or entry.source_type != "scorecard_line"):
            raise Unprocessable(
                "Upholding an objection to the period score (or to its base, caps or floor) "
                "needs the card's lines re-scored.",
                code="objection.lines_required",
                title="请填写重新评分的项目",
            )
        if lines:
            amended = _amended(policy, items, lines)
        else:
            # Reversing a card line is scoring it at nothing (a veto lifted, a deduction
            # taken back); caps and the floor then follow from the rest of the card.
            assert entry is not None
            assert entry.rule_item_id is not None
            reversed_line = AmendedLine(
                rule_item_id=entry.rule_item_id, outcome=Outcome.COMPLIANT, points=0, note=memo
            )
            amended = _amended(policy, items, [reversed_line])
        objection.amended_lines = [line.model_dump(mode="json") for line in amended.values()]
        changed = await _rescore(session, principal, objection, period, policy, items, amended)
        if changed and policy.veto_scope is VetoScope.YEAR:
            await _rescore_later_periods(session, principal, objection, period)
    await session.refresh(score)
    objection.score_after, objection.vetoed_after = score.score, score.vetoed
    await republish_household_period(session, principal, objection, period)


def _amended(
    policy: Policy, items: dict[uuid.UUID, RuleItem], lines: list[AmendedLine]
) -> dict[uuid.UUID, AmendedLine]:
    """The re-scored lines, checked as a scorecard save checks them; points filled in."""
    amended: dict[uuid.UUID, AmendedLine] = {}
    for line in lines:
        item = items.get(line.rule_item_id)
        if item is None or line.rule_item_id in amended:
            raise Unprocessable(
                "Each re-scored line names, once, an item due on the period's card.",
                code="objection.line_not_on_card",
                title="重新评分的项目不在本期评分表上",
                rule_item_id=str(line.rule_item_id),
            )
        points = line_points(policy.scoring_mode, item, line.outcome, line.points)
        amended[item.id] = line.model_copy(update={"points": points})
    return amended


async def current_card(
    session: AsyncSession,
    household_id: uuid.UUID,
    period: ScoringPeriod,
    items: dict[uuid.UUID, RuleItem],
    *,
    excluding: uuid.UUID | None = None,
) -> dict[uuid.UUID, _Line]:
    """The household's card as it stands: the lines scored, overlaid with what upheld
    objections re-scored, in the order they were upheld."""
    card = {
        line.rule_item_id: _Line(line.id, line.rule_item_id, line.outcome, line.points, line.note)
        for line in (
            await session.execute(
                select(ScorecardLine)
                .join(Scorecard, col(Scorecard.id) == col(ScorecardLine.scorecard_id))
                .where(
                    col(Scorecard.household_id) == household_id,
                    col(Scorecard.period_id) == period.id,
                    col(ScorecardLine.rule_item_id).in_(list(items)),
                )
            )
        ).scalars()
    }
    upheld = await session.execute(
        select(Objection)
        .where(
            col(Objection.household_id) == household_id,
            col(Objection.period_id) == period.id,
            col(Objection.status) == ObjectionStatus.UPHELD,
            col(Objection.amended_lines).is_not(None),
            col(Objection.id) != (excluding or uuid.UUID(int=0)),
        )
        .order_by(col(Objection.upheld_at), col(Objection.id))
    )
    for earlier in upheld.scalars():
        for raw in earlier.amended_lines or []:
            line = AmendedLine.model_validate(raw)
            if line.rule_item_id in items:
                card[line.rule_item_id] = _as_line(earlier.id, line)
    return card


def _as_line(objection_id: uuid.UUID, line: AmendedLine) -> _Line:
    return _Line(
        objection_id, line.rule_item_id, line.outcome, line.points or 0, line.note, amended=True
    )


async def _rescore(
    session: AsyncSession,
    principal: Principal,
    objection: Objection,
    period: ScoringPeriod,
    policy: Policy,
    items: dict[uuid.UUID, RuleItem],
    amended: dict[uuid.UUID, AmendedLine],
) -> bool:
    """Reverse the card's live entries for the period and post its result afresh; returns
    whether the household's veto changed. The period score row moves with the entries (the
    ledger's summaries); only its veto mark is set here."""
    household_id = objection.household_id
    card = await current_card(session, household_id, period, items, excluding=objection.id)
    for item_id, line in amended.items():
        card[item_id] = _as_line(objection.id, line)
    categories = (
        await session.execute(
            select(RuleCategory).where(col(RuleCategory.rule_set_id) == period.rule_set_id)
        )
    ).scalars()
    context = PeriodContext(
        period_id=period.id,
        year=period.year,
        actor_id=principal.person_id,
        policy=policy,
        categories={c.id: c for c in categories},
        items=items,
    )
    year_vetoed = policy.veto_scope is VetoScope.YEAR and household_id in (
        await vetoed_for_the_year(session, period)
    )
    result = household_result(
        context, household_id, list(card.values()), vetoed_this_year=year_vetoed
    )
    score = await session.get(HouseholdPeriodScore, (household_id, period.id))
    assert score is not None
    # Read before posting: the ledger's summary UPDATE expires the row in this session.
    was_vetoed = score.vetoed
    reversal = aliased(LedgerEntry)
    live = (
        await session.execute(
            select(LedgerEntry)
            .where(
                col(LedgerEntry.household_id) == household_id,
                col(LedgerEntry.period_id) == period.id,
                col(LedgerEntry.source_type).in_(CARD_SOURCES),
                col(LedgerEntry.kind) != LedgerKind.CORRECTION,
                col(LedgerEntry.points) != 0,
                ~exists().where(col(reversal.reverses_id) == col(LedgerEntry.id)),
            )
            .order_by(col(LedgerEntry.seq))
        )
    ).scalars()
    memo = f"异议更正：{objection.reason}"[:500]
    entries = [
        ledger.reversal_of(
            e, actor_id=principal.person_id, memo=memo,
            source_type="objection", source_id=objection.id,
        )
        for e in live
    ]  # fmt: skip
    for posted in result.entries:
        if posted.kind is LedgerKind.VETO and posted.points == 0 and was_vetoed:
            continue  # the veto is on record already; the ledger cannot take it twice over
        posted.source_type, posted.source_id = "objection", objection.id
        entries.append(posted)
    await ledger.post(session, period.village_id, entries)
    changed = was_vetoed != result.vetoed
    if changed:
        await session.execute(
            update(HouseholdPeriodScore)
            .where(
                col(HouseholdPeriodScore.household_id) == household_id,
                col(HouseholdPeriodScore.period_id) == period.id,
            )
            .values(vetoed=result.vetoed)
        )
    return changed


async def _rescore_later_periods(
    session: AsyncSession, principal: Principal, objection: Objection, period: ScoringPeriod
) -> None:
    """A year-scope veto set or lifted holds (or frees) the household's later periods of the
    year too: each is computed again from its own card, as its approval would now."""
    later = (
        await session.execute(
            select(ScoringPeriod)
            .join(
                HouseholdPeriodScore, col(HouseholdPeriodScore.period_id) == col(ScoringPeriod.id)
            )
            .where(
                col(ScoringPeriod.village_id) == period.village_id,
                col(ScoringPeriod.year) == period.year,
                col(ScoringPeriod.starts_on) > period.starts_on,
                col(HouseholdPeriodScore.household_id) == objection.household_id,
            )
            .order_by(col(ScoringPeriod.starts_on))
        )
    ).scalars()
    for each in list(later):
        policy = await period_policy(session, each.id)
        await _rescore(
            session, principal, objection, each, policy, await due_items(session, each), {}
        )
        await session.flush()
        await rankings.refresh_period_ranks(session, each.id)


async def republish_household_period(
    session: AsyncSession, principal: Principal, objection: Objection, period: ScoringPeriod
) -> None:
    """重新公示: the household's amended result is published at once, marked as amended after
    an objection (the publication list and the objection show it). Its period is already
    published (or closed), so what the correction added is spendable from this moment, as
    any published points are."""
    objection.upheld_at = clock.now()
    await session.flush()
    await rankings.refresh_period_ranks(session, period.id)
    audit.record(
        session, principal, "period.republish", "scoring_period", period.id,
        before={"household_id": str(objection.household_id), "score": objection.score_before,
                "vetoed": objection.vetoed_before},
        after={"household_id": str(objection.household_id), "score": objection.score_after,
               "vetoed": objection.vetoed_after, "objection_id": str(objection.id)},
        town_id=period.town_id, village_id=period.village_id,
    )  # fmt: skip


async def amended_households(session: AsyncSession, period_id: uuid.UUID) -> set[uuid.UUID]:
    """Households whose result in the period was amended after an objection."""
    rows = await session.execute(
        select(col(Objection.household_id)).where(
            col(Objection.period_id) == period_id,
            col(Objection.status) == ObjectionStatus.UPHELD,
        )
    )
    return set(rows.scalars())
