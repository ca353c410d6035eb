"""Ruling: the village working group's ruling, the household told, the escalation to the
town and the town's final ruling."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import (
    OBJECTION_HANDLERS,
    ensure_no_conflict_of_interest,
    objection_village_scope,
    town_scope,
)
from app.errors import Conflict, Unprocessable
from app.models import (
    Objection,
    ObjectionStatus,
    PeriodKind,
    Role,
    RoleGrant,
    RulingDecision,
    Scorecard,
    ScoringPeriod,
)
from app.schemas.objections import EscalationCreate, RulingCreate
from app.security import Principal
from app.services import audit, ledger, notifications
from app.services.notifications import NotificationKind
from app.services.objections.common import not_found, period_policy
from app.services.objections.filing import duplicate
from app.services.objections.upholding import uphold
from app.timeutil import wechat_time

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
        await uphold(session, principal, objection, data.lines, data.reason)
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
            window = (await period_policy(session, objection.period_id)).deadlines
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
