"""Filing: a member's objection for their own household, within the period's window."""

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    HouseholdPeriodScore,
    LedgerEntry,
    LedgerKind,
    Objection,
    ObjectionStatus,
    PeriodStatus,
    ScoringPeriod,
)
from app.schemas.objections import ObjectionCreate
from app.security import Principal
from app.services import audit, photos
from app.services.households import get_household
from app.services.objections.common import LIVE, entry_reversed

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
        if await entry_reversed(session, entry.id):
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
