"""Printed household cards (积分卡) for members without a smartphone.

The card carries a signed code naming the household and the card; revoking it (a lost card)
voids the code at once, and reissuing prints a new one. A redemption made with a card records
that the attendant checked the member's identity (shop_order.identity_checked, enforced by a
CHECK constraint for the card channel).
"""

import io
import uuid
from enum import StrEnum

import segno
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.config import Settings
from app.errors import NotFound
from app.models import HouseholdCard
from app.schemas.shop import CardRead
from app.security import Principal
from app.services import audit, shop_codes
from app.services.households import get_household


class CardFormat(StrEnum):
    PNG = "png"
    PDF = "pdf"


MEDIA_TYPES = {CardFormat.PNG: "image/png", CardFormat.PDF: "application/pdf"}


def _read(settings: Settings, card: HouseholdCard) -> CardRead:
    return CardRead(
        id=card.id,
        household_id=card.household_id,
        code=shop_codes.card_code(settings, card.household_id, card.id),
        issued_at=card.issued_at,
    )


async def _revoke(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID
) -> uuid.UUID | None:
    return (
        await session.execute(
            update(HouseholdCard)
            .where(
                col(HouseholdCard.household_id) == household_id,
                col(HouseholdCard.revoked_at).is_(None),
            )
            .values(revoked_at=clock.now(), revoked_by=principal.person_id)
            .returning(col(HouseholdCard.id))
        )
    ).scalar_one_or_none()


async def issue_card(
    session: AsyncSession, settings: Settings, principal: Principal, household_id: uuid.UUID
) -> CardRead:
    """A new card; the household's previous card, if any, stops working."""
    household = await get_household(session, principal, household_id, admin=True)
    revoked = await _revoke(session, principal, household.id)
    card = HouseholdCard(
        household_id=household.id, village_id=household.village_id, issued_by=principal.person_id
    )
    session.add(card)
    await session.flush()
    audit.record(
        session, principal, "household_card.issue", "household_card", card.id,
        before={"revoked_card_id": str(revoked)} if revoked else None,
        after={"household_id": str(household.id)}, village_id=household.village_id,
    )  # fmt: skip
    return _read(settings, card)


async def revoke_card(session: AsyncSession, principal: Principal, household_id: uuid.UUID) -> None:
    household = await get_household(session, principal, household_id, admin=True)
    revoked = await _revoke(session, principal, household.id)
    if revoked is None:
        raise NotFound(
            "The household has no card.", code="household_card.not_found", title="该户没有积分卡"
        )
    audit.record(
        session, principal, "household_card.revoke", "household_card", revoked,
        village_id=household.village_id,
    )  # fmt: skip


async def card_image(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    household_id: uuid.UUID,
    kind: CardFormat,
) -> bytes:
    household = await get_household(session, principal, household_id, admin=True)
    card = (
        await session.execute(
            select(HouseholdCard).where(
                col(HouseholdCard.household_id) == household.id,
                col(HouseholdCard.revoked_at).is_(None),
            )
        )
    ).scalar_one_or_none()
    if card is None:
        raise NotFound(
            "The household has no card.", code="household_card.not_found", title="该户没有积分卡"
        )
    qr = segno.make_qr(shop_codes.card_code(settings, household.id, card.id), error="m")
    out = io.BytesIO()
    qr.save(out, kind=kind.value, scale=8, border=4)
    return out.getvalue()
