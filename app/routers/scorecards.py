import uuid
from typing import Annotated

from fastapi import APIRouter, status

from app.db import SessionDep
from app.idempotency import IdempotencyDep
from app.models import Role
from app.quick_routes import QuickRoute
from app.schemas.scorecards import (
    ScorecardBatch,
    ScorecardBatchRead,
    ScorecardRead,
    ScorecardWrite,
    Worklist,
)
from app.security import Principal, require_roles
from app.services import scorecards as service

router = APIRouter(tags=["scorecards"], route_class=QuickRoute)
# District admins pass every gate; town supervisors oversee scoring but do not score.
ScoringStaff = Annotated[
    Principal, require_roles(Role.VILLAGE_ADMIN, Role.SCORING_LEADER, Role.SCORER)
]


@router.get("/periods/{period_id}/worklist", operation_id="get_scoring_worklist")
async def get_worklist(
    session: SessionDep, principal: ScoringStaff, period_id: uuid.UUID
) -> Worklist:
    """The households the caller scores this period (their village groups only, for a scorer
    limited to some), each card's state, and the items due, so the phone can work offline."""
    return await service.worklist(session, principal, period_id)


@router.get(
    "/periods/{period_id}/households/{household_id}/scorecard", operation_id="get_scorecard"
)
async def get_scorecard(
    session: SessionDep, principal: ScoringStaff, period_id: uuid.UUID, household_id: uuid.UUID
) -> ScorecardRead:
    return await service.get_scorecard(session, principal, period_id, household_id)


@router.put(
    "/periods/{period_id}/households/{household_id}/scorecard", operation_id="save_scorecard"
)
async def save_scorecard(
    session: SessionDep,
    principal: ScoringStaff,
    period_id: uuid.UUID,
    household_id: uuid.UUID,
    body: ScorecardWrite,
    idempotency: IdempotencyDep,
) -> ScorecardRead:
    """Save the whole card: created with the phone's id, or its lines replaced (revision + 1).
    Points are computed from the rules; never for the caller's own household."""
    [result] = await service.save_cards(session, principal, period_id, [(household_id, body)])
    await idempotency.remember(status.HTTP_200_OK, result)
    return result


@router.post("/periods/{period_id}/scorecards/batch", operation_id="save_scorecard_batch")
async def save_scorecard_batch(
    session: SessionDep,
    principal: ScoringStaff,
    period_id: uuid.UUID,
    body: ScorecardBatch,
    idempotency: IdempotencyDep,
) -> ScorecardBatchRead:
    """An offline phone's upload: every card saved as by `save_scorecard`, or none at all."""
    cards = await service.save_cards(
        session, principal, period_id, [(card.household_id, card) for card in body.cards]
    )
    result = ScorecardBatchRead(cards=cards)
    await idempotency.remember(status.HTTP_200_OK, result)
    return result
