"""Queueing WeChat subscribe messages in the caller's transaction; app/services/
notification_delivery.py sends them."""

import re
import uuid
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Select, exists, func, insert, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.models.auth import WechatIdentity
from app.models.households import Household, HouseholdMember, Participation
from app.models.notifications import Notification, NotificationKind, NotificationStatus
from app.models.people import Person
from app.models.scoring import HouseholdPeriodScore
from app.pagination import PageParams, paginate
from app.security import Principal
from app.services.organisation import get_village_for_admin

__all__ = [
    "NotificationKind",
    "list_for_village",
    "notify_household",
    "notify_person",
    "notify_scored_households",
    "notify_village_households",
    "template_data",
]

# WeChat's documented limits for a template field's value, by the field's type (the key
# without its number: thing3 is a thing). time, date and amount have formats, not lengths.
MAX_LENGTH = {
    "thing": 20,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "character_string": 32,
    "phone_number": 17,
    "car_number": 8,
    "phrase": 5,
}
# name: 10 Chinese characters, or 20 when it is all letters and symbols.
NAME_CHINESE_LENGTH, NAME_LATIN_LENGTH = 10, 20
FIELD_KEY = re.compile(r"^([a-z_]+?)(\d+)$")


def _truncate(kind: str, value: str) -> str:
    if kind == "name":
        limit = NAME_LATIN_LENGTH if value.isascii() else NAME_CHINESE_LENGTH
    elif kind in MAX_LENGTH:
        limit = MAX_LENGTH[kind]
    else:
        return value
    if len(value) <= limit:
        return value
    # Only a thing may carry any symbol; the other types would reject the ellipsis.
    return value[: limit - 1] + "…" if kind == "thing" else value[:limit]


def template_data(data: dict[str, str]) -> dict[str, dict[str, str]]:
    """{"thing1": "..."} in WeChat's {"thing1": {"value": "..."}} shape, cut to its limits."""
    shaped = {}
    for key, value in data.items():
        match = FIELD_KEY.match(key)
        if match is None:
            raise ValueError(f"{key!r} is not a template field key like 'thing1'")
        shaped[key] = {"value": _truncate(match.group(1), value)}
    return shaped


async def _queue(
    session: AsyncSession,
    recipients: Select[uuid.UUID | None, str],
    *,
    village_id: uuid.UUID,
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None,
) -> int:
    """One outbox row per (person_id, openid) that `recipients` yields, in one statement."""
    # The session does not autoflush: the recipients may have been added in this transaction.
    await session.flush()
    person_id, openid = recipients.selected_columns
    rows = recipients.with_only_columns(
        func.gen_random_uuid(),
        literal(village_id, sa.Uuid),
        person_id,
        openid,
        literal(kind.value, sa.String),
        literal(page, sa.String),
        literal(template_data(data), JSONB),
        literal(NotificationStatus.QUEUED.value, sa.String),
    )
    statement = (
        insert(Notification)
        .from_select(
            ["id", "village_id", "person_id", "openid", "kind", "page", "data", "status"],
            rows,
            include_defaults=False,
        )
        .returning(col(Notification.id))
    )
    return len((await session.execute(statement)).all())


async def notify_person(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    person_id: uuid.UUID,
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None = None,
) -> int:
    """Queue a message to the person if they have bound WeChat and belong to the village (by
    registration or household); returns how many were queued (0 or 1)."""
    return await notify_people(
        session, village_id=village_id, person_ids=[person_id], kind=kind, data=data, page=page
    )


async def notify_people(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    person_ids: Collection[uuid.UUID],
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None = None,
) -> int:
    """notify_person for several people given the same message, in one statement."""
    person = col(WechatIdentity.person_id)
    belongs = or_(
        col(Person.village_id) == village_id,
        exists().where(
            col(HouseholdMember.person_id) == person,
            col(HouseholdMember.village_id) == village_id,
        ),
    )
    recipients = (
        select(person, col(WechatIdentity.openid))
        .join(Person, col(Person.id) == person)
        .where(person.in_(list(person_ids)), belongs)
    )
    return await _queue(session, recipients, village_id=village_id, kind=kind, data=data, page=page)


async def notify_household(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    household_id: uuid.UUID,
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None = None,
) -> int:
    """Queue a message to every member of the household who has bound WeChat."""
    recipients = (
        select(col(WechatIdentity.person_id), col(WechatIdentity.openid))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(WechatIdentity.person_id))
        .where(
            col(HouseholdMember.household_id) == household_id,
            col(HouseholdMember.village_id) == village_id,
        )
    )
    return await _queue(session, recipients, village_id=village_id, kind=kind, data=data, page=page)


async def notify_scored_households(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    period_id: uuid.UUID,
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None = None,
) -> int:
    """Queue a message to every bound member of every household scored in the period."""
    recipients = (
        select(col(WechatIdentity.person_id), col(WechatIdentity.openid))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(WechatIdentity.person_id))
        .join(
            HouseholdPeriodScore,
            col(HouseholdPeriodScore.household_id) == col(HouseholdMember.household_id),
        )
        .where(
            col(HouseholdPeriodScore.period_id) == period_id,
            col(HouseholdPeriodScore.village_id) == village_id,
        )
    )
    return await _queue(session, recipients, village_id=village_id, kind=kind, data=data, page=page)


async def notify_village_households(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    kind: NotificationKind,
    data: dict[str, str],
    page: str | None = None,
) -> int:
    """Queue a message to every bound member of every household taking part in the village."""
    recipients = (
        select(col(WechatIdentity.person_id), col(WechatIdentity.openid))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(WechatIdentity.person_id))
        .join(Household, col(Household.id) == col(HouseholdMember.household_id))
        .where(
            col(Household.village_id) == village_id,
            col(Household.participation) == Participation.ACTIVE,
        )
    )
    return await _queue(session, recipients, village_id=village_id, kind=kind, data=data, page=page)


async def list_for_village(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    paging: PageParams,
    status: NotificationStatus | None,
) -> tuple[list[Notification], str | None]:
    """The village's messages for its admin, oldest first, optionally of one status."""
    village = await get_village_for_admin(session, principal, village_id)
    statement = select(Notification).where(col(Notification.village_id) == village.id)
    if status is not None:
        statement = statement.where(col(Notification.status) == status)
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(Notification.created_at), col(Notification.id)],
        params=paging,
        parse=[datetime.fromisoformat, uuid.UUID],
    )
    return [r[0] for r in rows], cursor
