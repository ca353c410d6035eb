import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.db import SessionDep
from app.idempotency import IdempotencyDep
from app.models import Objection, ObjectionStatus, Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.objections import EscalationCreate, ObjectionCreate, ObjectionRead, RulingCreate
from app.security import CurrentPrincipal, Principal, require_roles
from app.services.objections import filing, reads, ruling

router = APIRouter(tags=["objections"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
WorkingGroup = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.SCORING_LEADER)]
TownSupervisor = Annotated[Principal, require_roles(Role.TOWN_SUPERVISOR)]


async def _one(session: SessionDep, principal: Principal, objection: Objection) -> ObjectionRead:
    [read] = await reads.objections_read(session, principal, [objection])
    return read


@router.post("/objections", status_code=status.HTTP_201_CREATED, operation_id="file_objection")
async def file_objection(
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency: IdempotencyDep,
    data: ObjectionCreate,
) -> ObjectionRead:
    """异议 to an entry of the caller's household, or to its period score, while the published
    period's objection window is open. Send an Idempotency-Key: a retry files once."""
    objection = await filing.file(session, principal, data)
    read = await _one(session, principal, objection)
    await idempotency.remember(status.HTTP_201_CREATED, read)
    return read


@router.get("/objections/{objection_id}", operation_id="get_objection")
async def get_objection(
    session: SessionDep, principal: CurrentPrincipal, objection_id: uuid.UUID
) -> ObjectionRead:
    """The objection, its status and the answer; staff also see the card and its scorer."""
    objection = await reads.get_objection(session, principal, objection_id)
    return await _one(session, principal, objection)


@router.get("/households/{household_id}/objections", operation_id="list_household_objections")
async def list_household_objections(
    session: SessionDep, principal: CurrentPrincipal, household_id: uuid.UUID, paging: Paging
) -> Page[ObjectionRead]:
    """A household's objections with their rulings, oldest first."""
    listing = await reads.household_objections(session, principal, household_id, paging)
    return Page(items=listing.objections, next_cursor=listing.next_cursor)


@router.get("/villages/{village_id}/objection-queue", operation_id="list_objection_queue")
async def list_objection_queue(
    session: SessionDep,
    principal: WorkingGroup,
    village_id: uuid.UUID,
    paging: Paging,
    status: ObjectionStatus | None = None,
) -> Page[ObjectionRead]:
    """The working group's queue: open objections (or another status) oldest first, with age,
    the disputed entry and card, photos and who scored it; never the caller's own household."""
    listing = await reads.village_queue(session, principal, village_id, paging, status=status)
    return Page(items=listing.objections, next_cursor=listing.next_cursor)


@router.post("/objections/{objection_id}/ruling", operation_id="rule_objection")
async def rule_objection(
    session: SessionDep,
    principal: WorkingGroup,
    idempotency: IdempotencyDep,
    objection_id: uuid.UUID,
    data: RulingCreate,
) -> ObjectionRead:
    """Uphold (a correction through the ledger, the period score recomputed and republished)
    or dismiss with a reason. Audited; the household is told."""
    objection = await ruling.rule(session, principal, objection_id, data)
    read = await _one(session, principal, objection)
    await idempotency.remember(status.HTTP_200_OK, read)
    return read


@router.post("/objections/{objection_id}/escalation", operation_id="escalate_objection")
async def escalate_objection(
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency: IdempotencyDep,
    objection_id: uuid.UUID,
    data: EscalationCreate,
) -> ObjectionRead:
    """The household takes a dismissed objection to the town supervisor, once, within the
    policy's escalation window."""
    objection = await ruling.escalate(session, principal, objection_id, data)
    read = await _one(session, principal, objection)
    await idempotency.remember(status.HTTP_200_OK, read)
    return read


@router.get("/towns/{town_id}/objection-escalations", operation_id="list_objection_escalations")
async def list_objection_escalations(
    session: SessionDep, principal: TownSupervisor, town_id: uuid.UUID, paging: Paging
) -> Page[ObjectionRead]:
    """Escalated objections across the town's villages, longest waiting first."""
    listing = await reads.town_escalations(session, principal, town_id, paging)
    return Page(items=listing.objections, next_cursor=listing.next_cursor)


@router.post("/objections/{objection_id}/town-ruling", operation_id="rule_escalated_objection")
async def rule_escalated_objection(
    session: SessionDep,
    principal: TownSupervisor,
    idempotency: IdempotencyDep,
    objection_id: uuid.UUID,
    data: RulingCreate,
) -> ObjectionRead:
    """The town supervisor's final ruling on an escalated objection, uphold or dismiss."""
    objection = await ruling.rule_escalation(session, principal, objection_id, data)
    read = await _one(session, principal, objection)
    await idempotency.remember(status.HTTP_200_OK, read)
    return read
