"""A period's scoring group: who scored it, the policy's minimum size, the town's waiver, and the
score spread worked out once at approval for the dashboard."""

import statistics
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.errors import Conflict
from app.models import (
    PeriodFigures,
    PeriodScorer,
    PeriodStatus,
    Person,
    Role,
    RoleGrant,
    Scorecard,
    ScoringGroupWaiver,
    ScoringPeriod,
)
from app.schemas.rules import Policy, ScoringMode
from app.schemas.supervision import ScoringGroupMember, WaiverRead
from app.security import Principal
from app.services import audit
from app.services.scoring import PeriodResult
from app.services.supervision.scope import supervised_period

GROUP_ROLES = (Role.SCORING_LEADER, Role.SCORER)
# A scorer stands out only with enough cards for a pattern to mean something.
MIN_CARDS_TO_STAND_OUT = 2


async def _grant_holders(session: AsyncSession, village_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """Members of the village's scoring group now: person → their highest scoring grant."""
    rows = await session.execute(
        select(col(RoleGrant.person_id), col(RoleGrant.role)).where(
            col(RoleGrant.village_id) == village_id,
            col(RoleGrant.role).in_(GROUP_ROLES),
            col(RoleGrant.revoked_at).is_(None),
        )
    )
    holders: dict[uuid.UUID, str] = {}
    for person_id, role in rows:
        if holders.get(person_id) != Role.SCORING_LEADER.value:
            holders[person_id] = Role(role).value
    return holders


def full_score(policy: Policy) -> int | None:
    """The most a card can score: the base (deductive) or the period cap (additive)."""
    if policy.scoring_mode is ScoringMode.DEDUCTIVE:
        return policy.base_score
    return policy.period_cap


def spread(scores: Sequence[int], full: int | None) -> dict[str, Any]:
    n = len(scores)
    return {
        "mean": round(statistics.fmean(scores), 2) if n else None,
        "std_dev": round(statistics.pstdev(scores), 2) if n else None,
        "share_full": round(sum(s >= full for s in scores) / n, 4) if n and full else None,
        "distinct_scores": len(set(scores)),
    }


def _flags(own: dict[str, Any], village: dict[str, Any], cards: int) -> list[str]:
    """What makes a scorer's cards stand out from the village's (旧县: 严禁人情分,
    分值要形成差距)."""
    if cards < MIN_CARDS_TO_STAND_OUT:
        return []
    if own["share_full"] == 1 and (village["share_full"] or 0) < 1:
        return ["all_full_score"]
    if own["distinct_scores"] == 1 and village["distinct_scores"] > 1:
        return ["no_spread"]
    return []


async def on_approval(
    session: AsyncSession, period: ScoringPeriod, policy: Policy, results: Sequence[PeriodResult]
) -> None:
    """Refuse a group smaller than the policy's minimum (unless waived); record the group and
    the period's figures. Runs inside approval's transaction, so a refusal changes nothing."""
    holders = await _grant_holders(session, period.village_id)
    minimum = policy.scoring_group_min_size
    waived = await session.get(ScoringGroupWaiver, period.id) is not None
    if minimum is not None and len(holders) < minimum and not waived:
        raise Conflict(
            f"The scoring group has {len(holders)} members; the rules ask for {minimum}.",
            code="period.scoring_group_too_small",
            title="评分小组人数不足，不能审定",
            group_size=len(holders),
            min_size=minimum,
        )
    savers = dict(
        (
            await session.execute(
                select(col(Scorecard.household_id), col(Scorecard.scorer_id)).where(
                    col(Scorecard.period_id) == period.id
                )
            )
        ).all()
    )
    cards_saved: dict[uuid.UUID, int] = defaultdict(int)
    for scorer_id in savers.values():
        cards_saved[scorer_id] += 1
    members = set(holders) | set(cards_saved)
    if members:
        await session.execute(
            insert(PeriodScorer),
            [
                {
                    "period_id": period.id,
                    "person_id": person_id,
                    "village_id": period.village_id,
                    "role": holders.get(person_id),
                    "cards_saved": cards_saved.get(person_id, 0),
                }
                for person_id in members
            ],
        )
    full = full_score(policy)
    counted = [r for r in results if not r.vetoed]
    village = spread([r.score for r in counted], full)
    by_scorer: dict[uuid.UUID, list[int]] = defaultdict(list)
    for r in counted:
        if r.household_id in savers:
            by_scorer[savers[r.household_id]].append(r.score)
    names = dict(
        (
            await session.execute(
                select(col(Person.id), col(Person.name)).where(col(Person.id).in_(by_scorer))
            )
        ).all()
    )
    scorers = []
    for person_id, scores in sorted(by_scorer.items(), key=lambda kv: names.get(kv[0], "")):
        own = spread(scores, full)
        scorers.append(
            {
                "person_id": str(person_id),
                "name": names.get(person_id, ""),
                "cards": len(scores),
                **own,
                "flags": _flags(own, village, len(scores)),
            }
        )
    session.add(
        PeriodFigures(
            period_id=period.id,
            village_id=period.village_id,
            town_id=period.town_id,
            households_scored=len(counted),
            households_vetoed=len(results) - len(counted),
            full_score=full,
            group_size=len(holders),
            group_min_size=minimum,
            waived=waived,
            scorers=scorers,
            **village,
        )
    )


async def grant_waiver(
    session: AsyncSession, principal: Principal, period_id: uuid.UUID, reason: str
) -> WaiverRead:
    """The town lets this period be approved by a smaller group; audited, once per period.

    The period's row lock orders the waiver against an approval running at the same time."""
    period = await supervised_period(session, principal, period_id, lock=True)
    if period.status not in (PeriodStatus.OPEN, PeriodStatus.SCORING, PeriodStatus.SUBMITTED):
        raise Conflict(
            "The period has been approved already.",
            code="period.wrong_status",
            title="考核周期当前状态不允许该操作",
            status_now=period.status.value,
        )
    if await session.get(ScoringGroupWaiver, period.id) is not None:
        raise Conflict(
            "This period's group size has been waived already.",
            code="scoring_group.waiver_exists",
            title="该考核周期已批准评分小组人数豁免",
        )
    waiver = ScoringGroupWaiver(
        period_id=period.id,
        village_id=period.village_id,
        town_id=period.town_id,
        reason=reason,
        granted_by=principal.person_id,
    )
    session.add(waiver)
    await session.flush()
    audit.record(
        session,
        principal,
        "scoring_group.waive",
        "scoring_period",
        period.id,
        after=audit.snapshot(waiver),
        town_id=period.town_id,
        village_id=period.village_id,
    )
    return WaiverRead.model_validate(waiver)


async def scoring_group(session: AsyncSession, period: ScoringPeriod) -> list[ScoringGroupMember]:
    """As recorded at approval; before approval, the grant holders now and the cards so far."""
    if period.status in (PeriodStatus.OPEN, PeriodStatus.SCORING, PeriodStatus.SUBMITTED):
        holders = await _grant_holders(session, period.village_id)
        saved = dict(
            (
                await session.execute(
                    select(col(Scorecard.scorer_id), func.count())
                    .where(col(Scorecard.period_id) == period.id)
                    .group_by(col(Scorecard.scorer_id))
                )
            ).all()
        )
        rows = [(p, holders.get(p), int(saved.get(p, 0))) for p in set(holders) | set(saved)]
    else:
        rows = [
            (r.person_id, r.role, r.cards_saved)
            for r in (
                await session.execute(
                    select(PeriodScorer).where(col(PeriodScorer.period_id) == period.id)
                )
            ).scalars()
        ]
    names = dict(
        (
            await session.execute(
                select(col(Person.id), col(Person.name)).where(
                    col(Person.id).in_([r[0] for r in rows])
                )
            )
        ).all()
    )
    return sorted(
        (
            ScoringGroupMember(person_id=p, name=names.get(p, ""), role=role, cards_saved=n)
            for p, role, n in rows
        ),
        key=lambda m: (m.role is None, m.name, str(m.person_id)),
    )
