import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.db import SessionDep
from app.idempotency import IdempotencyDep
from app.models import Claim, ClaimStatus, Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.claims import ClaimCreate, ClaimRead, ReviewCreate
from app.security import CurrentPrincipal, Principal, require_roles
from app.services import claims as service

router = APIRouter(tags=["claims"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
Reviewer = Annotated[Principal, require_roles(Role.SCORING_LEADER, Role.SCORER)]
Overseer = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]


async def _one(session: SessionDep, claim: Claim) -> ClaimRead:
    [read] = await service.claims_read(session, [claim])
    return read


@router.post("/claims", status_code=status.HTTP_201_CREATED, operation_id="submit_claim")
async def submit_claim(
    session: SessionDep,
    principal: CurrentPrincipal,
    idempotency: IdempotencyDep,
    data: ClaimCreate,
) -> ClaimRead:
    """自主申报 for the caller's own household. Send an Idempotency-Key: a retried submission
    is written once and answered the same."""
    claim = await service.submit(session, principal, data)
    read = await _one(session, claim)
    await idempotency.remember(status.HTTP_201_CREATED, read)
    return read


@router.post(
    "/households/{household_id}/claims",
    status_code=status.HTTP_201_CREATED,
    operation_id="record_claim_on_behalf",
)
async def record_claim_on_behalf(
    session: SessionDep,
    principal: Reviewer,
    idempotency: IdempotencyDep,
    household_id: uuid.UUID,
    data: ClaimCreate,
) -> ClaimRead:
    """线下登记: a scorer records a claim for a household that reported it in person."""
    claim = await service.submit_on_behalf(session, principal, household_id, data)
    read = await _one(session, claim)
    await idempotency.remember(status.HTTP_201_CREATED, read)
    return read


@router.get("/households/{household_id}/claims", operation_id="list_household_claims")
async def list_household_claims(
    session: SessionDep, principal: CurrentPrincipal, household_id: uuid.UUID, paging: Paging
) -> Page[ClaimRead]:
    """A household's claims with their status, reviews and reasons, oldest first."""
    listing = await service.household_claims(session, principal, household_id, paging)
    return Page(items=listing.claims, next_cursor=listing.next_cursor)


@router.get("/claims/{claim_id}", operation_id="get_claim")
async def get_claim(
    session: SessionDep, principal: CurrentPrincipal, claim_id: uuid.UUID
) -> ClaimRead:
    return await _one(session, await service.get_claim(session, principal, claim_id))


@router.post("/claims/{claim_id}/reviews", operation_id="review_claim")
async def review_claim(
    session: SessionDep, principal: Reviewer, claim_id: uuid.UUID, data: ReviewCreate
) -> ClaimRead:
    """Approve, or reject with a reason. Decided when the policy's quorum agrees, or by the
    group leader alone where the policy says so; an approval posts the bonus."""
    return await _one(session, await service.review(session, principal, claim_id, data))


@router.post("/claims/{claim_id}/withdraw", operation_id="withdraw_claim")
async def withdraw_claim(
    session: SessionDep, principal: CurrentPrincipal, claim_id: uuid.UUID
) -> ClaimRead:
    """The household takes back a claim while it is still pending."""
    return await _one(session, await service.withdraw(session, principal, claim_id))


@router.get("/villages/{village_id}/claim-queue", operation_id="list_claim_queue")
async def list_claim_queue(
    session: SessionDep,
    principal: Reviewer,
    village_id: uuid.UUID,
    paging: Paging,
    group_id: uuid.UUID | None = None,
    item_id: uuid.UUID | None = None,
) -> Page[ClaimRead]:
    """The scorer's review queue: pending claims they have not yet reviewed, oldest first,
    never their own household's, with photo thumbnails."""
    listing = await service.review_queue(
        session, principal, village_id, paging, group_id=group_id, item_id=item_id
    )
    return Page(items=listing.claims, next_cursor=listing.next_cursor)


@router.get("/villages/{village_id}/claims", operation_id="list_village_claims")
async def list_village_claims(
    session: SessionDep,
    principal: Overseer,
    village_id: uuid.UUID,
    paging: Paging,
    status: ClaimStatus | None = None,
) -> Page[ClaimRead]:
    """Every claim of the village with its age in days, oldest first."""
    listing = await service.village_claims(session, principal, village_id, paging, status=status)
    return Page(items=listing.claims, next_cursor=listing.next_cursor)
