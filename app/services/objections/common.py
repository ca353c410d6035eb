"""What the objection modules share: the live statuses, the not-found error, the period's
policy and whether an entry was already corrected."""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.errors import NotFound
from app.models import LedgerEntry, ObjectionStatus, RuleSet, ScoringPeriod
from app.schemas.rules import Policy

LIVE = (ObjectionStatus.OPEN, ObjectionStatus.ESCALATED)


def not_found() -> NotFound:
    return NotFound("No such objection.", code="objection.not_found")


async def period_policy(session: AsyncSession, period_id: uuid.UUID) -> Policy:
    rules = (
        await session.execute(
            select(col(RuleSet.policy))
            .join(ScoringPeriod, col(ScoringPeriod.rule_set_id) == col(RuleSet.id))
            .where(col(ScoringPeriod.id) == period_id)
        )
    ).scalar_one()
    return Policy.model_validate(rules)


async def entry_reversed(session: AsyncSession, entry_id: uuid.UUID) -> bool:
    found = await session.execute(
        select(col(LedgerEntry.id)).where(col(LedgerEntry.reverses_id) == entry_id)
    )
    return found.first() is not None
