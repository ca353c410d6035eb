"""Reading objections: one, the household's, the village's queue, the town's escalations,
with the disputed card for the working group; and what a year close waits for."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import household_scope, objection_village_scope, town_scope
from app.errors import NotFound
from app.models import (
    Household,
    HouseholdPeriodScore,
    LedgerEntry,
    Objection,
    ObjectionStatus,
    Person,
    Role,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
    Town,
    Village,
)
from app.pagination import PageParams, paginate
from app.schemas.objections import CardLineRead, DisputedEntry, ObjectionRead
from app.security import Principal
from app.services import photos
from app.services.households import get_household
from app.services.objections.common import LIVE, not_found
from app.services.objections.upholding import current_card
from app.services.periods import _due_items as due_items
from app.timeutil import SHANGHAI

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
    card = await current_card(session, objection.household_id, period, items)
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
