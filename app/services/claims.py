"""Claims (自主申报): a household reports a claimable bonus item; the scoring group of its
village decides; an approval posts the bonus to the ledger, capped per period."""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import household_scope, scorer_household_scope, village_scope
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.models import (
    BonusAward,
    Claim,
    ClaimReview,
    ClaimStatus,
    Household,
    ItemKind,
    LedgerKind,
    Participation,
    PeriodStatus,
    ReviewDecision,
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    ScoringPeriod,
    Village,
    YearEndClose,
)
from app.pagination import PageParams, paginate
from app.schemas.claims import ClaimCreate, ClaimRead, ReviewCreate, ReviewRead
from app.schemas.rules import Policy, VetoScope
from app.security import Principal
from app.services import audit, ledger, notifications, photos
from app.services.households import get_household
from app.services.notifications import NotificationKind
from app.services.points_year import calendar_of, vetoed_in_year
from app.services.rules import rule_set_in_force
from app.timeutil import SHANGHAI, wechat_time

REVIEWERS = (Role.SCORER, Role.SCORING_LEADER)
LIVE = (ClaimStatus.PENDING, ClaimStatus.APPROVED)


# Bonus posting, shared by approved claims and confirmed activity attendance


async def post_bonus(
    session: AsyncSession,
    *,
    village_id: uuid.UUID,
    household_id: uuid.UUID,
    item: RuleItem,
    policy: Policy,
    activity_on: date,
    source_type: str,
    source_id: uuid.UUID,
    actor_id: uuid.UUID,
    memo: str,
) -> BonusAward:
    """Post the item's bonus for the household, no more than what its per-period cap leaves.

    The cap counts every award for the item in the period the activity fell in. The village's
    chain lock is taken before the awards are summed, and every award is posted under it, so
    two approvals at once cannot both take the last of a cap.

    The entry belongs to a scoring period not yet approved (see `_bonus_period`), whose
    approval then adds it to the period score: bonus points stand outside the period cap, and
    an approved or published period never changes. The period is chosen under the chain lock,
    which approval also holds from before it reads the bonuses until it marks the period
    approved, so a bonus lands either in time to be counted or in another period. Without such
    a period the bonus counts in the year's score only, its year the activity's, or the
    current year once that one has been closed. Where the policy spends points it counts in
    the balance too.
    """
    await ledger.lock_chain(session, village_id)
    cap_starts_on = calendar_of(policy).period_start(activity_on)
    points = item.points
    if item.period_cap is not None:
        used = (
            await session.execute(
                select(func.coalesce(func.sum(col(BonusAward.points)), 0)).where(
                    col(BonusAward.household_id) == household_id,
                    col(BonusAward.item_lineage_id) == item.lineage_id,
                    col(BonusAward.cap_starts_on) == cap_starts_on,
                )
            )
        ).scalar_one()
        points = max(0, min(points, item.period_cap - int(used)))
    points = min(points, await _category_room(session, household_id, item, cap_starts_on))
    period = await _bonus_period(session, village_id, activity_on)
    if period is not None:
        period_id, year = period
    else:
        period_id, year = None, calendar_of(policy).year_of(activity_on)
        if await _year_closed(session, village_id, year):
            year = clock.today().year
    entry_id = None
    if points > 0:
        [row] = await ledger.post(
            session,
            village_id,
            [
                ledger.NewEntry(
                    household_id=household_id,
                    kind=LedgerKind.BONUS,
                    points=points,
                    counts_score=True,
                    counts_balance=policy.redemption.spends_balance,
                    year=year,
                    period_id=period_id,
                    rule_item=item,
                    source_type=source_type,
                    source_id=source_id,
                    actor_id=actor_id,
                    memo=memo,
                )
            ],
        )
        entry_id = row["id"]
    award = BonusAward(
        village_id=village_id,
        household_id=household_id,
        rule_item_id=item.id,
        item_lineage_id=item.lineage_id,
        activity_on=activity_on,
        cap_starts_on=cap_starts_on,
        points=points,
        ledger_entry_id=entry_id,
        source_type=source_type,
        source_id=source_id,
    )
    session.add(award)
    await session.flush()
    return award


async def _category_room(
    session: AsyncSession, household_id: uuid.UUID, item: RuleItem, cap_starts_on: date
) -> int:
    """What the caps of the item's category and of the categories above it still leave the
    household in the period the caps count (张堰: 志愿服务 at most 5 points, however many claims
    are approved). Awards are counted by item lineage, so a new version of the rules counts
    what the earlier one awarded in the same period. Read under the chain lock, as the item's
    own cap is."""
    categories = {
        c.id: c
        for c in (
            await session.execute(
                select(RuleCategory).where(col(RuleCategory.rule_set_id) == item.rule_set_id)
            )
        ).scalars()
    }
    bonus_items = (
        await session.execute(
            select(col(RuleItem.category_id), col(RuleItem.lineage_id)).where(
                col(RuleItem.rule_set_id) == item.rule_set_id,
                col(RuleItem.kind) == ItemKind.BONUS,
            )
        )
    ).all()

    def within(category_id: uuid.UUID | None, top: uuid.UUID) -> bool:
        while category_id is not None:
            if category_id == top:
                return True
            category_id = categories[category_id].parent_id
        return False

    room = item.points
    category_id: uuid.UUID | None = item.category_id
    while category_id is not None:
        category = categories[category_id]
        if category.cap is not None:
            lineages = [lineage for c, lineage in bonus_items if within(c, category.id)]
            used = await session.scalar(
                select(func.coalesce(func.sum(col(BonusAward.points)), 0)).where(
                    col(BonusAward.household_id) == household_id,
                    col(BonusAward.item_lineage_id).in_(lineages),
                    col(BonusAward.cap_starts_on) == cap_starts_on,
                )
            )
            room = min(room, category.cap - int(used or 0))
        category_id = category.parent_id
    return max(room, 0)


NOT_YET_APPROVED = (PeriodStatus.OPEN, PeriodStatus.SCORING, PeriodStatus.SUBMITTED)


async def _bonus_period(
    session: AsyncSession, village_id: uuid.UUID, activity_on: date
) -> tuple[uuid.UUID, int] | None:
    """(id, year) of the period a bonus is posted into: the one the activity fell in while it
    is not yet approved, else the one covering today while that is not, else none. The caller
    holds the chain lock, so the status read here holds until it commits."""
    today = clock.today()
    found = (
        await session.execute(
            select(col(ScoringPeriod.id), col(ScoringPeriod.year))
            .where(
                col(ScoringPeriod.village_id) == village_id,
                col(ScoringPeriod.status).in_(NOT_YET_APPROVED),
                or_(
                    (col(ScoringPeriod.starts_on) <= activity_on)
                    & (col(ScoringPeriod.ends_on) >= activity_on),
                    (col(ScoringPeriod.starts_on) <= today) & (col(ScoringPeriod.ends_on) >= today),
                ),
            )
            # The activity's period first: it starts no later than today's.
            .order_by(col(ScoringPeriod.starts_on))
            .limit(1)
        )
    ).first()
    return (found.id, found.year) if found is not None else None


async def _year_closed(session: AsyncSession, village_id: uuid.UUID, year: int) -> bool:
    closed = await session.execute(
        select(col(YearEndClose.year)).where(
            col(YearEndClose.village_id) == village_id, col(YearEndClose.year) == year
        )
    )
    return closed.first() is not None


async def claimable_item(
    session: AsyncSession, village_id: uuid.UUID, item_id: uuid.UUID, on: date
) -> tuple[RuleItem, Policy]:
    """The version of the item in force on `on`, if it is a claimable bonus there."""
    rule_set = await rule_set_in_force(session, village_id, on)
    item = None
    if rule_set is not None:
        lineage = select(col(RuleItem.lineage_id)).where(
            col(RuleItem.id) == item_id, col(RuleItem.village_id) == village_id
        )
        item = (
            await session.execute(
                select(RuleItem).where(
                    col(RuleItem.rule_set_id) == rule_set.id,
                    col(RuleItem.lineage_id).in_(lineage.scalar_subquery()),
                )
            )
        ).scalar_one_or_none()
    if rule_set is None or item is None or item.kind is not ItemKind.BONUS or not item.claimable:
        raise Unprocessable(
            "The item is not a claimable bonus item of the rules in force on that day.",
            code="claim.item_not_claimable",
            title="该项目不能自主申报",
        )
    return item, Policy.model_validate(rule_set.policy)


# Submitting


async def submit(session: AsyncSession, principal: Principal, data: ClaimCreate) -> Claim:
    """A villager's claim for their own household."""
    if principal.household_id is None:
        raise Forbidden("Only a member of a household can claim for it.", code="claim.no_household")
    household = await get_household(session, principal, principal.household_id)
    return await _create(session, principal, household, data, on_behalf=False)


async def submit_on_behalf(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, data: ClaimCreate
) -> Claim:
    """线下登记: a scorer records a claim for a household of their village, marked as such."""
    household = (
        await session.execute(
            select(Household).where(
                col(Household.id) == household_id, scorer_household_scope(principal)
            )
        )
    ).scalar_one_or_none()
    if household is None:
        raise NotFound("No such household.", code="household.not_found")
    if principal.household_id == household.id:
        raise own_household()
    return await _create(session, principal, household, data, on_behalf=True)


def own_household() -> Forbidden:
    return Forbidden(
        "Nobody records or reviews a claim of their own household.",
        code="claim.own_household",
        title="不能处理本户的申报",
    )


async def _create(
    session: AsyncSession,
    principal: Principal,
    household: Household,
    data: ClaimCreate,
    *,
    on_behalf: bool,
) -> Claim:
    if household.participation is not Participation.ACTIVE:
        raise not_participating()
    if data.activity_on > clock.today():
        raise Unprocessable(
            "The activity's day is in the future.",
            code="claim.date_in_future",
            title="活动日期不能晚于今天",
        )
    if await _year_closed(session, household.village_id, data.activity_on.year):
        raise Conflict(
            "That year's points are closed.", code="claim.year_closed", title="该年度积分已结算"
        )
    item, policy = await claimable_item(
        session, household.village_id, data.rule_item_id, data.activity_on
    )
    if item.evidence_required and not data.photo_ids:
        raise Unprocessable(
            "This item needs at least one photo.",
            code="claim.photos_required",
            title="该项目需要上传照片",
        )
    await _refuse_if_vetoed(session, household, policy, data.activity_on)
    if await _live_claim_exists(session, household.id, item.lineage_id, data.activity_on):
        raise duplicate()
    if item.period_cap is not None:
        await _check_cap_left(session, household.id, item, policy, data.activity_on)
    claim = Claim(
        village_id=household.village_id,
        household_id=household.id,
        village_group_id=household.village_group_id,
        rule_item_id=item.id,
        item_lineage_id=item.lineage_id,
        activity_on=data.activity_on,
        description=data.description,
        status=ClaimStatus.PENDING,
        submitted_by=principal.person_id,
        on_behalf=on_behalf,
    )
    try:
        async with session.begin_nested():
            session.add(claim)
    except IntegrityError as exc:
        # The same claim submitted twice at once: the partial unique index let one through.
        raise duplicate() from exc
    await photos.attach(session, principal, data.photo_ids, claim)
    return claim


def not_participating() -> Conflict:
    return Conflict(
        "The household does not take part in the points scheme.",
        code="claim.household_not_participating",
        title="本户未参加积分制，不能申报",
    )


async def _refuse_if_vetoed(
    session: AsyncSession, household: Household, policy: Policy, activity_on: date
) -> None:
    if policy.veto_scope is VetoScope.YEAR and await vetoed_in_year(
        session,
        household.village_id,
        [household.id],
        calendar_of(policy).year_of(activity_on),
    ):
        raise Conflict(
            "The household was vetoed (一票否决) for the year.",
            code="claim.household_vetoed",
            title="本户本年度已被一票否决，不能申报",
        )


async def _refuse_if_not_earning(session: AsyncSession, claim: Claim, policy: Policy) -> None:
    """An approval asks what submission asked: a claim pending when its household left the
    scheme or was vetoed for the year is not approved (it may still be rejected)."""
    household = await session.get(Household, claim.household_id)
    assert household is not None
    if household.participation is not Participation.ACTIVE:
        raise not_participating()
    await _refuse_if_vetoed(session, household, policy, claim.activity_on)


def duplicate() -> Conflict:
    return Conflict(
        "The household already claimed this item for that day.",
        code="claim.duplicate",
        title="本户已就该项目申报过当天的活动",
    )


async def _live_claim_exists(
    session: AsyncSession, household_id: uuid.UUID, lineage_id: uuid.UUID, on: date
) -> bool:
    found = await session.execute(
        select(col(Claim.id)).where(
            col(Claim.household_id) == household_id,
            col(Claim.item_lineage_id) == lineage_id,
            col(Claim.activity_on) == on,
            col(Claim.status).in_(LIVE),
        )
    )
    return found.first() is not None


async def _check_cap_left(
    session: AsyncSession, household_id: uuid.UUID, item: RuleItem, policy: Policy, on: date
) -> None:
    assert item.period_cap is not None
    used = (
        await session.execute(
            select(func.coalesce(func.sum(col(BonusAward.points)), 0)).where(
                col(BonusAward.household_id) == household_id,
                col(BonusAward.item_lineage_id) == item.lineage_id,
                col(BonusAward.cap_starts_on) == calendar_of(policy).period_start(on),
            )
        )
    ).scalar_one()
    if int(used) >= item.period_cap:
        raise Conflict(
            f"The household already has the item's {item.period_cap} points for that period.",
            code="claim.over_cap",
            title="本期该项目加分已达上限",
        )


# Reviewing


async def item_and_policy(
    session: AsyncSession, rule_item_id: uuid.UUID
) -> tuple[RuleItem, Policy]:
    """A bonus item and the policy of the rule set it belongs to (claims and activities)."""
    item = await session.get(RuleItem, rule_item_id)
    assert item is not None
    rule_set = await session.get(RuleSet, item.rule_set_id)
    assert rule_set is not None
    return item, Policy.model_validate(rule_set.policy)


async def _claim_for_review(
    session: AsyncSession, principal: Principal, claim_id: uuid.UUID
) -> Claim:
    claim = (
        await session.execute(
            select(Claim)
            .join(Household, col(Household.id) == col(Claim.household_id))
            .where(col(Claim.id) == claim_id, scorer_household_scope(principal))
            # Reviews of one claim take turns: the one that reaches the quorum decides, and
            # the others then find it decided.
            .with_for_update(of=Claim)
        )
    ).scalar_one_or_none()
    if claim is None:
        raise not_found()
    return claim


def not_found() -> NotFound:
    return NotFound("No such claim.", code="claim.not_found")


def already_decided(claim: Claim) -> Conflict:
    return Conflict(
        f"The claim is already {claim.status.value}.",
        code="claim.already_decided",
        title="该申报已处理",
        status_now=claim.status.value,
    )


async def review(
    session: AsyncSession, principal: Principal, claim_id: uuid.UUID, data: ReviewCreate
) -> Claim:
    """One scorer's approve or reject; the claim is decided at the policy's quorum, or at once
    by the group leader where the policy lets the leader decide alone."""
    if data.decision is ReviewDecision.REJECT and not data.comment:
        raise Unprocessable(
            "A rejection needs a reason.", code="claim.reason_required", title="驳回须填写理由"
        )
    claim = await _claim_for_review(session, principal, claim_id)
    if principal.household_id == claim.household_id:
        raise own_household()
    if claim.submitted_by == principal.person_id:
        # Whoever recorded a claim (线下登记) does not also judge it: a leader deciding alone
        # would otherwise award points with nobody else involved.
        raise Forbidden(
            "Whoever recorded a claim does not review it.",
            code="claim.own_record",
            title="不能审核自己登记的申报",
        )
    if claim.status is not ClaimStatus.PENDING:
        raise already_decided(claim)
    reviewed = await session.execute(
        select(col(ClaimReview.id)).where(
            col(ClaimReview.claim_id) == claim.id,
            col(ClaimReview.reviewer_id) == principal.person_id,
        )
    )
    if reviewed.first() is not None:
        raise Conflict(
            "You already reviewed this claim.",
            code="claim.already_reviewed",
            title="您已审核过该申报",
        )
    item, policy = await item_and_policy(session, claim.rule_item_id)
    if data.decision is ReviewDecision.APPROVE:
        await _refuse_if_not_earning(session, claim, policy)
    as_leader = policy.claims.leader_decides_alone and claim.village_id in principal.village_ids(
        Role.SCORING_LEADER
    )
    session.add(
        ClaimReview(
            claim_id=claim.id,
            village_id=claim.village_id,
            reviewer_id=principal.person_id,
            decision=data.decision,
            comment=data.comment,
            as_leader=as_leader,
        )
    )
    await session.flush()
    counts = dict(
        (
            await session.execute(
                select(col(ClaimReview.decision), func.count())
                .where(col(ClaimReview.claim_id) == claim.id)
                .group_by(col(ClaimReview.decision))
            )
        ).all()
    )
    if claim.on_behalf:
        # 线下登记 is the scoring group's own record (张堰: 也可由积分制工作小组考评登记): the
        # recorder's record counts as one approval, so a group of two can decide it. It never
        # decides alone: the recorder does not review, and this review is someone else's.
        counts[ReviewDecision.APPROVE] = counts.get(ReviewDecision.APPROVE, 0) + 1
    quorum = policy.claims.review_quorum
    if as_leader or counts.get(data.decision, 0) >= quorum:
        await _decide(session, principal, claim, data.decision, data.comment, item, policy)
    return claim


async def _decide(
    session: AsyncSession,
    principal: Principal,
    claim: Claim,
    decision: ReviewDecision,
    reason: str,
    item: RuleItem,
    policy: Policy,
) -> None:
    """The one place a claim gets decided (approved or rejected).

    The status moves only from pending, in the database, so a claim is decided once however
    many reviewers reach the quorum together; an approval then posts its bonus (once more
    guarded by the award's unique source). The household is told in the same transaction.
    """
    status = ClaimStatus.APPROVED if decision is ReviewDecision.APPROVE else ClaimStatus.REJECTED
    now = clock.now()
    moved = await session.execute(
        update(Claim)
        .where(col(Claim.id) == claim.id, col(Claim.status) == ClaimStatus.PENDING)
        .values(
            status=status,
            decided_at=now,
            decided_by=principal.person_id,
            decision_reason=reason or None,
        )
        .returning(col(Claim.id))
    )
    if moved.first() is None:
        await session.refresh(claim)
        raise already_decided(claim)
    if status is ClaimStatus.APPROVED:
        award = await post_bonus(
            session,
            village_id=claim.village_id,
            household_id=claim.household_id,
            item=item,
            policy=policy,
            activity_on=claim.activity_on,
            source_type="claim",
            source_id=claim.id,
            actor_id=principal.person_id,
            memo=f"自主申报 {claim.activity_on.isoformat()}",
        )
        await session.execute(
            update(Claim)
            .where(col(Claim.id) == claim.id)
            .values(points_awarded=award.points, ledger_entry_id=award.ledger_entry_id)
        )
    await session.refresh(claim)
    audit.record(
        session,
        principal,
        "claim.decide",
        "claim",
        claim.id,
        before={"status": ClaimStatus.PENDING.value},
        after={"status": status.value, "reason": reason, "points": claim.points_awarded},
        village_id=claim.village_id,
    )
    await _tell_household(session, claim, item, now)


def decided_message(title: str, approved: bool, detail: str, at: datetime) -> dict[str, str]:
    """The claim_decided template (thing1 what was claimed, phrase2 the decision, thing3 the
    points or the reason, time4 when), shared by claims and activity attendance."""
    return {
        "thing1": title,
        "phrase2": "已通过" if approved else "未通过",
        "thing3": detail,
        "time4": wechat_time(at),
    }


def points_detail(points: int) -> str:
    return f"获得{points}分" if points else "本期该项加分已达上限"


async def _tell_household(
    session: AsyncSession, claim: Claim, item: RuleItem, decided_at: datetime
) -> None:
    """The claim_decided subscribe message: to the villager who claimed, or, for a claim a
    scorer recorded on the household's behalf, to every bound member of the household."""
    approved = claim.status is ClaimStatus.APPROVED
    detail = (
        points_detail(claim.points_awarded or 0)
        if approved
        else claim.decision_reason or "未通过审核"
    )
    data = decided_message(item.title, approved, detail, decided_at)
    if claim.on_behalf:
        await notifications.notify_household(
            session,
            village_id=claim.village_id,
            household_id=claim.household_id,
            kind=NotificationKind.CLAIM_DECIDED,
            data=data,
        )
    else:
        await notifications.notify_person(
            session,
            village_id=claim.village_id,
            person_id=claim.submitted_by,
            kind=NotificationKind.CLAIM_DECIDED,
            data=data,
        )


async def withdraw(session: AsyncSession, principal: Principal, claim_id: uuid.UUID) -> Claim:
    """The household takes back a claim still pending."""
    claim = (
        await session.execute(
            select(Claim).where(
                col(Claim.id) == claim_id, col(Claim.household_id) == principal.household_id
            )
        )
    ).scalar_one_or_none()
    if claim is None:
        raise not_found()
    moved = await session.execute(
        update(Claim)
        .where(col(Claim.id) == claim.id, col(Claim.status) == ClaimStatus.PENDING)
        .values(
            status=ClaimStatus.WITHDRAWN,
            decided_at=clock.now(),
            decided_by=principal.person_id,
        )
        .returning(col(Claim.id))
    )
    await session.refresh(claim)
    if moved.first() is None:
        raise already_decided(claim)
    return claim


# Reading


async def get_claim(session: AsyncSession, principal: Principal, claim_id: uuid.UUID) -> Claim:
    """Seen by the household, the scorers who see the household, its admin and its town."""
    claim = (
        await session.execute(
            select(Claim)
            .join(Household, col(Household.id) == col(Claim.household_id))
            .where(col(Claim.id) == claim_id, household_scope(principal))
        )
    ).scalar_one_or_none()
    if claim is None:
        raise not_found()
    return claim


@dataclass
class Listing:
    claims: list[ClaimRead]
    next_cursor: str | None


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _page(session: AsyncSession, statement: Select[Any], params: PageParams) -> Listing:
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(Claim.created_at), col(Claim.id)],
        params=params,
        parse=[_parse_time, uuid.UUID],
    )
    return Listing(await claims_read(session, [r[0] for r in rows]), cursor)


async def review_queue(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    params: PageParams,
    *,
    group_id: uuid.UUID | None,
    item_id: uuid.UUID | None,
) -> Listing:
    """Pending claims the caller may still review, oldest first; never their own household's."""
    if not (principal.is_district_admin or village_id in principal.village_ids(*REVIEWERS)):
        raise NotFound("No such village.", code="village.not_found")
    mine = select(col(ClaimReview.claim_id)).where(
        col(ClaimReview.reviewer_id) == principal.person_id
    )
    statement = (
        select(Claim)
        .join(Household, col(Household.id) == col(Claim.household_id))
        .where(
            col(Claim.village_id) == village_id,
            col(Claim.status) == ClaimStatus.PENDING,
            scorer_household_scope(principal),
            col(Claim.id).not_in(mine),
            col(Claim.submitted_by) != principal.person_id,
        )
    )
    if principal.household_id is not None:
        statement = statement.where(col(Claim.household_id) != principal.household_id)
    if group_id is not None:
        statement = statement.where(col(Claim.village_group_id) == group_id)
    if item_id is not None:
        lineage = select(col(RuleItem.lineage_id)).where(col(RuleItem.id) == item_id)
        statement = statement.where(col(Claim.item_lineage_id).in_(lineage.scalar_subquery()))
    return await _page(session, statement, params)


async def household_claims(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, params: PageParams
) -> Listing:
    household = await get_household(session, principal, household_id)
    statement = select(Claim).where(col(Claim.household_id) == household.id)
    return await _page(session, statement, params)


async def village_claims(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    params: PageParams,
    *,
    status: ClaimStatus | None,
) -> Listing:
    """The village admin's (and the town's) overview: every claim with its age."""
    in_scope = await session.execute(
        select(col(Village.id)).where(
            col(Village.id) == village_id,
            village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,)),
        )
    )
    if in_scope.first() is None:
        raise NotFound("No such village.", code="village.not_found")
    statement = select(Claim).where(col(Claim.village_id) == village_id)
    if status is not None:
        statement = statement.where(col(Claim.status) == status)
    return await _page(session, statement, params)


async def claims_read(session: AsyncSession, claims: list[Claim]) -> list[ClaimRead]:
    if not claims:
        return []
    ids = [c.id for c in claims]
    items = {
        i.id: i
        for i in (
            await session.execute(
                select(RuleItem).where(col(RuleItem.id).in_({c.rule_item_id for c in claims}))
            )
        ).scalars()
    }
    numbers = dict(
        (
            await session.execute(
                select(col(Household.id), col(Household.number)).where(
                    col(Household.id).in_({c.household_id for c in claims})
                )
            )
        ).all()
    )
    reviews: dict[uuid.UUID, list[ReviewRead]] = defaultdict(list)
    for row in (
        await session.execute(
            select(ClaimReview)
            .where(col(ClaimReview.claim_id).in_(ids))
            .order_by(col(ClaimReview.created_at), col(ClaimReview.id))
        )
    ).scalars():
        reviews[row.claim_id].append(ReviewRead.model_validate(row))
    photo_ids = await photos.photos_of(session, ids)
    today = clock.today()
    return [
        ClaimRead(
            id=c.id,
            village_id=c.village_id,
            household_id=c.household_id,
            household_number=numbers[c.household_id],
            village_group_id=c.village_group_id,
            rule_item_id=c.rule_item_id,
            item_code=items[c.rule_item_id].code,
            item_title=items[c.rule_item_id].title,
            item_points=items[c.rule_item_id].points,
            activity_on=c.activity_on,
            description=c.description,
            status=c.status,
            on_behalf=c.on_behalf,
            submitted_by=c.submitted_by,
            created_at=c.created_at,
            age_days=(today - c.created_at.astimezone(SHANGHAI).date()).days,
            decided_at=c.decided_at,
            decision_reason=c.decision_reason,
            points_awarded=c.points_awarded,
            photo_ids=photo_ids[c.id],
            thumbnail_urls=[f"/api/v1/photos/{p}?thumbnail=true" for p in photo_ids[c.id]],
            reviews=reviews[c.id],
        )
        for c in claims
    ]
