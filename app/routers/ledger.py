import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from app.db import SessionDep
from app.idempotency import IdempotencyDep
from app.models import LedgerKind, Role
from app.pagination import Page, PageParams, page_params
from app.quick_routes import QuickRoute
from app.schemas.ledger import (
    AdjustmentCreate,
    BalanceRead,
    ChainVerification,
    CorrectionCreate,
    LedgerEntryRead,
    StandingRead,
)
from app.security import CurrentPrincipal, Principal, ReadingDep, VillageAdmin, require_roles
from app.services import ledger as service
from app.services import standing as standing_service
from app.services.passbook import household_passbook, passbook_workbook
from app.xlsx import XLSX_MEDIA_TYPE, attachment

router = APIRouter(tags=["ledger"], route_class=QuickRoute)
Paging = Annotated[PageParams, Depends(page_params)]
Auditor = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]


def _read(row: dict[str, Any]) -> LedgerEntryRead:
    return LedgerEntryRead.model_validate(row)


@router.get(
    "/households/{household_id}/ledger",
    operation_id="list_ledger_entries",
    response_model=Page[LedgerEntryRead],
)
async def list_entries(
    reading: ReadingDep,
    household_id: uuid.UUID,
    paging: Paging,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    kind: LedgerKind | None = None,
    period_id: uuid.UUID | None = None,
) -> Response:
    """The household's 积分加减明细, oldest first."""
    # Built by PostgreSQL in the page's shape; passed through as it came.
    body = await service.list_entries(
        reading.connection,
        reading.principal,
        household_id,
        paging,
        year=year,
        kind=kind,
        period_id=period_id,
    )
    return Response(body, media_type="application/json")


@router.get(
    "/households/{household_id}/balance",
    operation_id="get_household_balance",
    response_model=BalanceRead,
)
async def get_balance(
    reading: ReadingDep,
    household_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """Spendable points and the year's score (default: this year in Asia/Shanghai)."""
    # Built by PostgreSQL in BalanceRead's shape; passed through as it came.
    body = await service.balance(reading.connection, reading.principal, household_id, year)
    return Response(body, media_type="application/json")


@router.get(
    "/households/{household_id}/standing",
    operation_id="get_household_standing",
    response_model=StandingRead,
)
async def get_standing(
    reading: ReadingDep,
    household_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """The year's score and rank in the village and village group, and the latest published
    period's; ties share a rank, vetoed households are left out."""
    # Built by PostgreSQL in StandingRead's shape; passed through as it came.
    body = await standing_service.standing(
        reading.connection, reading.principal, household_id, year
    )
    return Response(body, media_type="application/json")


@router.post(
    "/households/{household_id}/adjustments",
    status_code=status.HTTP_201_CREATED,
    operation_id="adjust_household_points",
)
async def adjust(
    session: SessionDep,
    principal: VillageAdmin,
    household_id: uuid.UUID,
    body: AdjustmentCreate,
    idempotency: IdempotencyDep,
) -> LedgerEntryRead:
    """An admin adjustment with its reason; audited, and never to the admin's own household."""
    row = await service.adjust(
        session,
        principal,
        household_id,
        points=body.points,
        reason=body.reason,
        counts_score=body.counts_score,
        counts_balance=body.counts_balance,
    )
    result = _read(row)
    await idempotency.remember(status.HTTP_201_CREATED, result)
    return result


@router.post(
    "/ledger-entries/{entry_id}/correction",
    status_code=status.HTTP_201_CREATED,
    operation_id="correct_ledger_entry",
)
async def correct(
    session: SessionDep,
    principal: VillageAdmin,
    entry_id: uuid.UUID,
    body: CorrectionCreate,
    idempotency: IdempotencyDep,
) -> LedgerEntryRead:
    """Reverse an entry with a correction entry, at most once; nothing is edited or deleted."""
    result = _read(await service.correct(session, principal, entry_id, body.reason))
    await idempotency.remember(status.HTTP_201_CREATED, result)
    return result


@router.get("/villages/{village_id}/ledger/verification", operation_id="verify_ledger_chain")
async def verify(
    session: SessionDep, principal: Auditor, village_id: uuid.UUID
) -> ChainVerification:
    """Recompute the village's hash chain from the first entry and report the first break."""
    return await service.verify_chain(session, principal, village_id)


@router.get(
    "/households/{household_id}/passbook",
    operation_id="export_household_passbook",
    response_class=Response,
    responses={
        200: {
            "content": {XLSX_MEDIA_TYPE: {}},
            "description": "The household's 积分存折 for the year as an XLSX workbook",
        }
    },
)
async def export_passbook(
    session: SessionDep,
    principal: CurrentPrincipal,
    household_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> Response:
    """The household's 积分存折 (default: this year in Asia/Shanghai): each entry of the year in
    order with its running 结余 from the balance carried in, and the year's score."""
    passbook = await household_passbook(session, principal, household_id, year)
    return Response(
        passbook_workbook(passbook),
        media_type=XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": attachment(f"passbook-{passbook.number}-{passbook.year}.xlsx")
        },
    )
