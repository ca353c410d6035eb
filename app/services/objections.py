"""Objections (异议): a household disputes an entry or its score of a published period; the
village working group upholds it (a correction, republished) or dismisses it with a reason; a
dismissal can be escalated once to the town supervisor, whose ruling is final."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app import clock
from app.authz import (
    OBJECTION_HANDLERS,
    ensure_no_conflict_of_interest,
    household_scope,
    objection_village_scope,
    town_scope,
)
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    Household,
    HouseholdPeriodScore,
    LedgerEntry,
    LedgerKind,
    Objection,
    ObjectionStatus,
    Outcome,
    PeriodKind,
    PeriodStatus,
    Person,
    Role,
    RoleGrant,
    RuleCategory,
    RuleItem,
    RuleSet,
    RulingDecision,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Town,
    Village,
)
from app.pagination import PageParams, paginate
from app.schemas.objections import (
    AmendedLine,
    CardLineRead,
    DisputedEntry,
    EscalationCreate,
    ObjectionCreate,
    ObjectionRead,
    RulingCreate,
)
from app.schemas.rules import Policy, VetoScope
from app.security import Principal
from app.services import audit, ledger, notifications, photos, rankings
from app.services.households import get_household
from app.services.notifications import NotificationKind
from app.services.periods import _due_items as due_items
from app.services.periods import vetoed_for_the_year
from app.services.scorecards import line_points
from app.services.scoring import PeriodContext, household_result
from app.timeutil import SHANGHAI, wechat_time

LIVE = (ObjectionStatus.OPEN, ObjectionStatus.ESCALATED)
# Entries that come from the household's card: approval posts them (scorecard lines, the
# base score, caps and floors), and an upheld objection re-posts them re-scored.
CARD_SOURCES = ("scorecard_line", "period", "objection")
# What a household may dispute: points the period gave or took. Corrections, expiries and
# shop movements are answers and bookkeeping, not findings.
DISPUTABLE = (
    LedgerKind.INSPECTION,
    LedgerKind.VETO,
    LedgerKind.BONUS,
    LedgerKind.AWARD,
    LedgerKind.ADJUSTMENT,
)
RESULTS = (PeriodStatus.PUBLISHED, PeriodStatus.CLOSED)


def not_found() -> NotFound:
    return NotFound("No such objection.", code="objection.not_found")


# Filing


async def file(session: AsyncSession, principal: Principal, data: ObjectionCreate) -> Objection:
    """A member's objection for their own household, within the period's objection window."""
    if principal.household_id is None:
        raise Forbidden(
            "Only a member of a household can object for it.",
            code="objection.no_household",
            title="只有农户成员才能提出异议",
        )
    household = await get_household(session, principal, principal.household_id)
    # Shared-locked: a period close (FOR UPDATE) waits for this filing and then sees it, and
    # a filing behind a close finds the period closed.
    period = (
        await session.execute(
            select(ScoringPeriod)
            .where(
                col(ScoringPeriod.id) == data.period_id,
                col(ScoringPeriod.village_id) == household.village_id,
            )
            .with_for_update(read=True)
        )
    ).scalar_one_or_none()
    if period is None:
        raise NotFound("No such scoring period.", code="period.not_found")
    if period.status not in RESULTS:
        raise Conflict(
            "The period's results are not published; objections come after publication.",
            code="objection.period_not_published",
            title="该期积分尚未公示，不能提出异议",
        )
    closes = period.objection_closes_on
    if period.status is PeriodStatus.CLOSED or closes is None or clock.today() > closes:
        raise Conflict(
            "The period's objection window has closed.",
            code="objection.window_closed",
            title="异议期已过",
            objection_closes_on=closes.isoformat() if closes else None,
        )
    if data.ledger_entry_id is not None:
        entry = (
            await session.execute(
                select(LedgerEntry).where(
                    col(LedgerEntry.id) == data.ledger_entry_id,
                    col(LedgerEntry.household_id) == household.id,
                )
            )
        ).scalar_one_or_none()
        if entry is None:
            raise NotFound("No such ledger entry.", code="ledger_entry.not_found")
        if entry.period_id != period.id or entry.kind not in DISPUTABLE:
            raise Unprocessable(
                "Only an entry of the period's results can be disputed (not a correction, "
                "an expiry or a shop movement, nor an entry of another period).",
                code="objection.entry_not_disputable",
                title="该记录不属于本期公示结果，不能提出异议",
            )
        if await _reversed(session, entry.id):
            raise Conflict(
                "The entry was already corrected.",
                code="ledger.already_corrected",
                title="该记录已更正",
            )
    if await session.get(HouseholdPeriodScore, (household.id, period.id)) is None:
        raise Conflict(
            "The household has no score in this period.",
            code="objection.no_period_score",
            title="本户本期没有积分结果",
        )
    if await _live(session, household.id, period.id, data.ledger_entry_id):
        raise duplicate()
    objection = Objection(
        village_id=household.village_id,
        town_id=period.town_id,
        household_id=household.id,
        period_id=period.id,
        ledger_entry_id=data.ledger_entry_id,
        reason=data.reason,
        status=ObjectionStatus.OPEN,
        filed_by=principal.person_id,
    )
    try:
        async with session.begin_nested():
            session.add(objection)
    except IntegrityError as exc:
        # Filed twice at once: the partial unique index let one through.
        raise duplicate() from exc
    await photos.attach_evidence(
        session,
        principal,
        data.photo_ids,
        village_id=objection.village_id,
        objection_id=objection.id,
    )
    audit.record(
        session, principal, "objection.file", "objection", objection.id,
        after=audit.snapshot(objection), village_id=objection.village_id,
    )  # fmt: skip
    return objection


def duplicate() -> Conflict:
    return Conflict(
        "An objection to this entry (or this period score) is already open.",
        code="objection.duplicate",
        title="已有对该项的异议正在处理",
    )


async def _live(
    session: AsyncSession,
    household_id: uuid.UUID,
    period_id: uuid.UUID,
    entry_id: uuid.UUID | None,
) -> bool:
    target = (
        col(Objection.ledger_entry_id) == entry_id
        if entry_id is not None
        else col(Objection.ledger_entry_id).is_(None)
    )
    found = await session.execute(
        select(col(Objection.id)).where(
            col(Objection.household_id) == household_id,
            col(Objection.period_id) == period_id,
            target,
            col(Objection.status).in_(LIVE),
        )
    )
    return found.first() is not None


async def _reversed(session: AsyncSession, entry_id: uuid.UUID) -> bool:
    found = await session.execute(
        select(col(LedgerEntry.id)).where(col(LedgerEntry.reverses_id) == entry_id)
    )
    return found.first() is not None


# Ruling


async def rule(
    session: AsyncSession, principal: Principal, objection_id: uuid.UUID, data: RulingCreate
) -> Objection:
    """The village working group upholds or dismisses an open objection."""
    objection = await _for_ruling(
        session, principal, objection_id, objection_village_scope(principal, Objection.village_id)
    )
    if objection.status is not ObjectionStatus.OPEN:
        raise already_ruled(objection)
    await ensure_no_conflict_of_interest(
        session,
        principal,
        household_id=objection.household_id,
        scorer_ids=await _scorers(session, objection),
        colleagues=(col(RoleGrant.village_id) == objection.village_id)
        & col(RoleGrant.role).in_(OBJECTION_HANDLERS),
    )
    return await _decide(session, principal, objection, data, town=False)


async def rule_escalation(
    session: AsyncSession, principal: Principal, objection_id: uuid.UUID, data: RulingCreate
) -> Objection:
    """The town supervisor's final ruling on an escalated objection."""
    objection = await _for_ruling(
        session, principal, objection_id, town_scope(principal, Objection.town_id)
    )
    if objection.status is not ObjectionStatus.ESCALATED:
        if objection.town_ruled_at is not None:
            raise already_ruled(objection)
        raise Conflict(
            "Only an escalated objection is ruled by the town.",
            code="objection.not_escalated",
            title="该异议未提请镇（街道）复核",
            status_now=objection.status.value,
        )
    await ensure_no_conflict_of_interest(
        session,
        principal,
        household_id=objection.household_id,
        scorer_ids=await _scorers(session, objection),
        colleagues=(col(RoleGrant.town_id) == objection.town_id)
        & (col(RoleGrant.role) == Role.TOWN_SUPERVISOR),
    )
    return await _decide(session, principal, objection, data, town=True)


async def _for_ruling(
    session: AsyncSession,
    principal: Principal,
    objection_id: uuid.UUID,
    scope: ColumnElement[bool],
) -> Objection:
    """The objection, locked, after the village's chain lock.

    The chain lock comes first, in the order every ledger change takes it (approval, bonuses,
    corrections): two handlers ruling at once queue there, and the second then finds the
    objection ruled. The row lock holds off an escalation racing the ruling.
    """
    found = (
        await session.execute(
            select(col(Objection.village_id)).where(col(Objection.id) == objection_id, scope)
        )
    ).scalar_one_or_none()
    if found is None:
        raise not_found()
    await ledger.lock_chain(session, found)
    objection = (
        await session.execute(
            select(Objection)
            .where(col(Objection.id) == objection_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return objection


def already_ruled(objection: Objection) -> Conflict:
    return Conflict(
        f"The objection is already {objection.status.value}.",
        code="objection.already_ruled",
        title="该异议已处理",
        status_now=objection.status.value,
    )


async def _scorers(session: AsyncSession, objection: Objection) -> set[uuid.UUID]:
    """Who scored the household's card for the period: the people the objection is about."""
    rows = await session.execute(
        select(col(Scorecard.scorer_id)).where(
            col(Scorecard.household_id) == objection.household_id,
            col(Scorecard.period_id) == objection.period_id,
        )
    )
    return set(rows.scalars())


async def _decide(
    session: AsyncSession,
    principal: Principal,
    objection: Objection,
    data: RulingCreate,
    *,
    town: bool,
) -> Objection:
    before = audit.snapshot(objection)
    now = clock.now()
    upheld = data.decision is RulingDecision.UPHOLD
    if upheld:
        await _uphold(session, principal, objection, data.lines, data.reason)
    elif data.lines:
        raise Unprocessable(
            "Re-scored lines belong to an uphold.",
            code="objection.lines_not_applicable",
            title="驳回异议时不需要重新评分",
        )
    objection.status = ObjectionStatus.UPHELD if upheld else ObjectionStatus.DISMISSED
    if town:
        objection.town_ruled_at, objection.town_ruled_by = now, principal.person_id
        objection.town_ruling_reason = data.reason
    else:
        objection.ruled_at, objection.ruled_by = now, principal.person_id
        objection.ruling_reason = data.reason
        if not upheld:
            window = (await _policy(session, objection.period_id)).deadlines
            objection.escalation_closes_on = clock.today() + timedelta(
                days=window.escalation_window_days
            )
    await session.flush()
    audit.record(
        session, principal, "objection.rule_escalation" if town else "objection.rule",
        "objection", objection.id, before=before, after=audit.snapshot(objection),
        town_id=objection.town_id, village_id=objection.village_id,
    )  # fmt: skip
    await _tell_household(session, objection, upheld, data.reason, now)
    return objection


async def _policy(session: AsyncSession, period_id: uuid.UUID) -> Policy:
    rules = (
        await session.execute(
            select(col(RuleSet.policy))
            .join(ScoringPeriod, col(ScoringPeriod.rule_set_id) == col(RuleSet.id))
            .where(col(ScoringPeriod.id) == period_id)
        )
    ).scalar_one()
    return Policy.model_validate(rules)


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


async def _uphold(
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
        if await _reversed(session, entry.id):
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
        policy = await _policy(session, period.id)
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


async def _card(
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
    card = await _card(session, household_id, period, items, excluding=objection.id)
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
        policy = await _policy(session, each.id)
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


# Telling the household


def ruled_message(
    objection: Objection, period: ScoringPeriod, upheld: bool, reason: str, at: datetime
) -> dict[str, str]:
    """The objection_ruled template: thing1 what was disputed, phrase2 the decision, thing3
    the reason (or the amended score), time4 when it was ruled."""
    if period.kind is PeriodKind.MONTH:
        label = f"{period.year}年{period.number}月积分异议"
    else:
        label = f"{period.year}年第{period.number}季度积分异议"
    detail = f"更正后{objection.score_after}分" if upheld else reason
    return {
        "thing1": label,
        "phrase2": "已采纳" if upheld else "未采纳",
        "thing3": detail,
        "time4": wechat_time(at),
    }


async def _tell_household(
    session: AsyncSession, objection: Objection, upheld: bool, reason: str, at: datetime
) -> None:
    period = await session.get(ScoringPeriod, objection.period_id)
    assert period is not None
    await notifications.notify_person(
        session,
        village_id=objection.village_id,
        person_id=objection.filed_by,
        kind=NotificationKind.OBJECTION_RULED,
        data=ruled_message(objection, period, upheld, reason, at),
    )


# Escalating


async def escalate(
    session: AsyncSession, principal: Principal, objection_id: uuid.UUID, data: EscalationCreate
) -> Objection:
    """The household takes a dismissed objection to the town supervisor, once, in time."""
    objection = (
        await session.execute(
            select(Objection)
            .where(
                col(Objection.id) == objection_id,
                col(Objection.household_id) == principal.household_id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if objection is None:
        raise not_found()
    if objection.status is not ObjectionStatus.DISMISSED or objection.escalated_at is not None:
        raise Conflict(
            "Only a dismissed objection not escalated before can be escalated.",
            code="objection.not_escalatable",
            title="只有被驳回且未复核过的异议可以提请复核",
            status_now=objection.status.value,
        )
    closes = objection.escalation_closes_on
    if closes is None or clock.today() > closes:
        raise Conflict(
            "The time to escalate has passed.",
            code="objection.escalation_window_closed",
            title="已超过提请复核的期限",
            escalation_closes_on=closes.isoformat() if closes else None,
        )
    before = audit.snapshot(objection)
    objection.status = ObjectionStatus.ESCALATED
    objection.escalated_at = clock.now()
    objection.escalated_by = principal.person_id
    objection.escalation_reason = data.reason
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        # Another objection to the same entry was filed after the dismissal and is open.
        raise duplicate() from exc
    audit.record(
        session, principal, "objection.escalate", "objection", objection.id,
        before=before, after=audit.snapshot(objection),
        town_id=objection.town_id, village_id=objection.village_id,
    )  # fmt: skip
    return objection


# Consequences elsewhere


async def open_objections_blocking(
    session: AsyncSession, village_id: uuid.UUID, year: int
) -> list[tuple[uuid.UUID, uuid.UUID, ObjectionStatus]]:
    """(objection, period, status) of the village's objections on periods of the year still
    open or escalated: the year close waits for them, as a period close does."""
    rows = await session.execute(
        select(col(Objection.id), col(Objection.period_id), col(Objection.status))
        .join(ScoringPeriod, col(ScoringPeriod.id) == col(Objection.period_id))
        .where(
            col(Objection.village_id) == village_id,
            col(ScoringPeriod.year) == year,
            col(Objection.status).in_(LIVE),
        )
        .order_by(col(Objection.created_at), col(Objection.id))
    )
    return [(r[0], r[1], r[2]) for r in rows]


# Reading


async def get_objection(
    session: AsyncSession, principal: Principal, objection_id: uuid.UUID
) -> Objection:
    """Seen by the household, whoever sees the household (scorers, the admin), and the town."""
    objection = (
        await session.execute(
            select(Objection)
            .join(Household, col(Household.id) == col(Objection.household_id))
            .where(col(Objection.id) == objection_id, household_scope(principal))
        )
    ).scalar_one_or_none()
    if objection is None:
        raise not_found()
    return objection


@dataclass
class Listing:
    objections: list[ObjectionRead]
    next_cursor: str | None


async def _page(
    session: AsyncSession,
    principal: Principal,
    statement: Select[Any],
    params: PageParams,
    order: ColumnElement[Any] | Any = None,
) -> Listing:
    rows, cursor = await paginate(
        session,
        statement,
        order=[order if order is not None else col(Objection.created_at), col(Objection.id)],
        params=params,
        parse=[datetime.fromisoformat, uuid.UUID],
    )
    return Listing(await objections_read(session, principal, [r[0] for r in rows]), cursor)


async def household_objections(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, params: PageParams
) -> Listing:
    household = await get_household(session, principal, household_id)
    statement = select(Objection).where(col(Objection.household_id) == household.id)
    return await _page(session, principal, statement, params)


async def village_queue(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    params: PageParams,
    *,
    status: ObjectionStatus | None,
) -> Listing:
    """The working group's queue, oldest first (open ones unless asked otherwise); never the
    caller's own household's."""
    in_scope = await session.execute(
        select(col(Village.id)).where(
            col(Village.id) == village_id, objection_village_scope(principal, col(Village.id))
        )
    )
    if in_scope.first() is None:
        raise NotFound("No such village.", code="village.not_found")
    statement = select(Objection).where(
        col(Objection.village_id) == village_id,
        col(Objection.status) == (status or ObjectionStatus.OPEN),
    )
    if principal.household_id is not None:
        statement = statement.where(col(Objection.household_id) != principal.household_id)
    return await _page(session, principal, statement, params)


async def town_escalations(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID, params: PageParams
) -> Listing:
    """Escalated objections across the town's villages, longest waiting first."""
    in_scope = await session.execute(
        select(col(Town.id)).where(col(Town.id) == town_id, town_scope(principal, col(Town.id)))
    )
    if in_scope.first() is None:
        raise NotFound("No such town.", code="town.not_found")
    statement = select(Objection).where(
        col(Objection.town_id) == town_id, col(Objection.status) == ObjectionStatus.ESCALATED
    )
    return await _page(session, principal, statement, params, col(Objection.escalated_at))


def _staff(principal: Principal, objection: Objection) -> bool:
    if principal.household_id == objection.household_id:
        return False
    return (
        principal.is_district_admin
        or objection.village_id
        in principal.village_ids(Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)
        or objection.town_id in principal.supervised_town_ids()
    )


async def objections_read(
    session: AsyncSession, principal: Principal, objections: list[Objection]
) -> list[ObjectionRead]:
    if not objections:
        return []
    ids = [o.id for o in objections]
    numbers = dict(
        (
            await session.execute(
                select(col(Household.id), col(Household.number)).where(
                    col(Household.id).in_({o.household_id for o in objections})
                )
            )
        ).all()
    )
    periods = {
        p.id: p
        for p in (
            await session.execute(
                select(ScoringPeriod).where(
                    col(ScoringPeriod.id).in_({o.period_id for o in objections})
                )
            )
        ).scalars()
    }
    entry_ids = {o.ledger_entry_id for o in objections if o.ledger_entry_id}
    entries = {
        e.id: e
        for e in (
            await session.execute(select(LedgerEntry).where(col(LedgerEntry.id).in_(entry_ids)))
        ).scalars()
    }
    photo_ids = await photos.objection_photos(session, ids)
    today = clock.today()
    out = []
    for o in objections:
        period = periods[o.period_id]
        score = await session.get(HouseholdPeriodScore, (o.household_id, o.period_id))
        staff = _staff(principal, o)
        card: list[CardLineRead] = []
        scorer_id, scorer_name = None, None
        if staff:
            card, scorer_id, scorer_name = await _card_read(session, o, period)
        entry = entries.get(o.ledger_entry_id) if o.ledger_entry_id else None
        out.append(
            ObjectionRead(
                id=o.id,
                village_id=o.village_id,
                household_id=o.household_id,
                household_number=numbers[o.household_id],
                period_id=o.period_id,
                period_year=period.year,
                period_number=period.number,
                ledger_entry_id=o.ledger_entry_id,
                entry=DisputedEntry.model_validate(entry) if entry else None,
                reason=o.reason,
                status=o.status,
                filed_by=o.filed_by,
                created_at=o.created_at,
                age_days=(today - o.created_at.astimezone(SHANGHAI).date()).days,
                photo_ids=photo_ids[o.id],
                thumbnail_urls=[f"/api/v1/photos/{p}?thumbnail=true" for p in photo_ids[o.id]],
                period_score=score.score if score else None,
                vetoed=score.vetoed if score else None,
                scored_by=scorer_id,
                scorer_name=scorer_name,
                card=card,
                ruled_at=o.ruled_at,
                ruled_by=o.ruled_by,
                ruling_reason=o.ruling_reason,
                escalation_closes_on=o.escalation_closes_on,
                escalated_at=o.escalated_at,
                escalation_reason=o.escalation_reason,
                town_ruled_at=o.town_ruled_at,
                town_ruled_by=o.town_ruled_by,
                town_ruling_reason=o.town_ruling_reason,
                final=_final(o, today),
                score_before=o.score_before,
                score_after=o.score_after,
                vetoed_before=o.vetoed_before,
                vetoed_after=o.vetoed_after,
            )
        )
    return out


def _final(objection: Objection, today: date) -> bool:
    if objection.status is ObjectionStatus.UPHELD or objection.town_ruled_at is not None:
        return True
    closes = objection.escalation_closes_on
    return objection.status is ObjectionStatus.DISMISSED and closes is not None and today > closes


async def _card_read(
    session: AsyncSession, objection: Objection, period: ScoringPeriod
) -> tuple[list[CardLineRead], uuid.UUID | None, str | None]:
    """The disputed card as it stands, for the working group: lines, photos, who scored it."""
    scorecard = (
        await session.execute(
            select(Scorecard).where(
                col(Scorecard.household_id) == objection.household_id,
                col(Scorecard.period_id) == period.id,
            )
        )
    ).scalar_one_or_none()
    if scorecard is None:
        return [], None, None
    items = await due_items(session, period)
    card = await _card(session, objection.household_id, period, items)
    photos_of_line = dict(
        (
            await session.execute(
                select(col(ScorecardLine.rule_item_id), col(ScorecardLine.photos)).where(
                    col(ScorecardLine.scorecard_id) == scorecard.id
                )
            )
        ).all()
    )
    lines = [
        CardLineRead(
            rule_item_id=line.rule_item_id,
            item_code=items[line.rule_item_id].code,
            item_title=items[line.rule_item_id].title,
            outcome=line.outcome,
            points=line.points,
            note=line.note,
            photos=list(photos_of_line.get(line.rule_item_id, [])),
            amended=line.amended,
        )
        for line in card.values()
    ]
    name = (
        await session.execute(select(col(Person.name)).where(col(Person.id) == scorecard.scorer_id))
    ).scalar_one_or_none()
    return lines, scorecard.scorer_id, name
