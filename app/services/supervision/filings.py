"""报街镇备案: a village files a published period's results with its town; the town acknowledges
them or queries them with a note, and a queried filing is filed again once answered."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.errors import Conflict, Unprocessable
from app.models import FilingStatus, PeriodFiling, PeriodStatus
from app.schemas.supervision import FilingRead
from app.security import Principal
from app.services import audit
from app.services.periods import get_period
from app.services.supervision.scope import overseen_period, supervised_period


def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    filing: PeriodFiling,
    before: dict[str, object] | None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        "period_filing",
        filing.period_id,
        before=before,
        after=audit.snapshot(filing),
        town_id=filing.town_id,
        village_id=filing.village_id,
    )


async def file_period(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID, note: str
) -> FilingRead:
    period = await get_period(session, principal, period_id, admin=True, lock=True)
    if period.status not in (PeriodStatus.PUBLISHED, PeriodStatus.CLOSED):
        raise Conflict(
            "Only published results are filed with the town.",
            code="period.wrong_status",
            title="考核周期当前状态不允许该操作",
            status_now=period.status.value,
        )
    filing = await session.get(PeriodFiling, period.id)
    if filing is None:
        filing = PeriodFiling(
            period_id=period.id,
            village_id=period.village_id,
            town_id=period.town_id,
            status=FilingStatus.FILED,
            note=note,
            filed_by=principal.person_id,
        )
        session.add(filing)
        before = None
    elif filing.status is FilingStatus.QUERIED:
        before = audit.snapshot(filing)
        filing.status = FilingStatus.FILED
        filing.times_filed += 1
        filing.note = note
        filing.filed_by = principal.person_id
        filing.filed_at = clock.now()
    else:
        raise Conflict(
            "The period is filed already; file again only after the town queries it.",
            code="filing.exists",
            title="该考核周期已报街镇备案",
            status_now=filing.status.value,
        )
    await session.flush()
    _audit(session, principal, "filing.file", filing, before)
    return FilingRead.model_validate(filing)


async def answer(
    session: AsyncSession,
    principal: Principal,
    period_id: uuid.UUID,
    *,
    acknowledge: bool,
    note: str,
) -> FilingRead:
    period = await supervised_period(session, principal, period_id, lock=True)
    filing = await session.get(PeriodFiling, period.id, with_for_update=True)
    if filing is None:
        raise Conflict(
            "The village has not filed this period.",
            code="filing.not_filed",
            title="该考核周期尚未报备",
        )
    if filing.status is not FilingStatus.FILED:
        raise Conflict(
            "The town has answered this filing already.",
            code="filing.already_answered",
            title="该备案已处理",
            status_now=filing.status.value,
        )
    if not acknowledge and not note:
        raise Unprocessable(
            "A query says what the village must look at again.",
            code="filing.note_missing",
            title="退回查询须写明原因",
        )
    before = audit.snapshot(filing)
    filing.status = FilingStatus.ACKNOWLEDGED if acknowledge else FilingStatus.QUERIED
    filing.answer_note = note
    filing.answered_by = principal.person_id
    filing.answered_at = clock.now()
    await session.flush()
    _audit(
        session, principal, "filing.acknowledge" if acknowledge else "filing.query", filing, before
    )
    return FilingRead.model_validate(filing)


async def get_filing(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID
) -> FilingRead:
    period = await overseen_period(session, principal, period_id)
    filing = await session.get(PeriodFiling, period.id)
    if filing is None:
        return FilingRead(period_id=period.id, village_id=period.village_id, status=None)
    return FilingRead.model_validate(filing)
