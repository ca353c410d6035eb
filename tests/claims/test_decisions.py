"""Deciding a claim asks what submitting asked (participation, a year's veto), and a claim the
scoring group recorded itself (线下登记) can be decided by a group of two."""

import uuid
from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    BonusAward,
    Claim,
    ClaimReview,
    ClaimStatus,
    HouseholdPeriodScore,
    Participation,
    PeriodKind,
    PeriodStatus,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    ScoringPeriod,
)
from app.rule_templates import templates
from app.schemas.rules import ClaimPolicy, Policy, VetoScope
from app.timeutil import SHANGHAI
from tests.auth.conftest import assert_problem
from tests.claims.conftest import (
    API,
    TODAY,
    Scene,
    bonus_entries,
    build_scene,
    claim_body,
    review,
    submit,
)

ZHANGYAN = Policy(veto_scope=VetoScope.YEAR, claims=ClaimPolicy(review_quorum=2))


async def veto_this_year(db: AsyncSession, scene: Scene) -> None:
    """January of this year published with the household vetoed (张堰: the whole year)."""
    period = ScoringPeriod(
        village_id=scene.village.id, town_id=scene.village.town_id,
        rule_set_id=scene.items.volunteer.rule_set_id, year=TODAY.year, kind=PeriodKind.MONTH,
        number=1, starts_on=TODAY.replace(month=1, day=1), ends_on=TODAY.replace(month=1, day=31),
        status=PeriodStatus.PUBLISHED,
    )  # fmt: skip
    db.add(period)
    await db.flush()
    db.add(
        HouseholdPeriodScore(
            household_id=scene.household.id, period_id=period.id, village_id=scene.village.id,
            score=0, vetoed=True,
        )
    )  # fmt: skip
    await db.flush()


async def reviews_of(db: AsyncSession, claim_id: str) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(ClaimReview)
        .where(col(ClaimReview.claim_id) == uuid.UUID(claim_id))
    )
    return int(count or 0)


async def test_a_claim_pending_when_the_household_is_vetoed_is_not_approved(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Item 8."""
    scene = await build_scene(db, settings, policy=ZHANGYAN)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    await veto_this_year(db, scene)

    for headers in (scene.scorers[0], scene.leader):
        refused = await review(client, headers, claim["id"])
        assert_problem(refused, 409, "claim.household_vetoed")
    assert await reviews_of(db, claim["id"]) == 0
    assert await bonus_entries(db, scene.household) == []
    stored = await db.get(Claim, uuid.UUID(claim["id"]))
    assert stored is not None
    assert stored.status is ClaimStatus.PENDING

    rejected = await review(client, scene.leader, claim["id"], "reject", "本年度已一票否决")
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"


async def test_a_claim_pending_when_the_household_left_is_not_approved(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    claim = (await submit(client, scene.villager, scene.items.volunteer)).json()
    scene.household.participation = Participation.LEFT
    await db.flush()

    refused = await review(client, scene.leader, claim["id"])

    assert_problem(refused, 409, "claim.household_not_participating")
    assert await reviews_of(db, claim["id"]) == 0
    assert await bonus_entries(db, scene.household) == []


async def test_a_claim_the_group_recorded_is_decided_by_one_more_approval(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """Item 12: quorum 2, the leader recorded the claim (so does not review it) and one other
    member approves: the record counts as the group's first approval."""
    scene = await build_scene(db, settings, policy=Policy(claims=ClaimPolicy(review_quorum=2)))
    recorded = await client.post(
        f"{API}/households/{scene.household.id}/claims",
        headers=scene.leader,
        json=claim_body(scene.items.volunteer),
    )
    assert recorded.status_code == 201, recorded.text
    claim = recorded.json()

    own = await review(client, scene.leader, claim["id"])
    assert_problem(own, 403, "claim.own_record")
    rejected_once = await review(client, scene.scorers[1], claim["id"], "reject", "照片不清")
    assert rejected_once.json()["status"] == "pending"
    approved = await review(client, scene.scorers[0], claim["id"])

    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    [entry] = await bonus_entries(db, scene.household)
    assert entry.points == scene.items.volunteer.points


async def test_an_aspect_cap_binds_the_bonuses_of_its_claims(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """Item 6: 张堰's 志愿服务 aspect is worth 5 points; four approved claims of 2+2+1+2 in
    one month post 5, not 7."""
    set_clock(datetime(2031, 5, 20, 10, tzinfo=SHANGHAI))
    zhangyan = templates()["zhangyan-governance-2024"]
    scene = await build_scene(db, settings)
    created = await client.post(
        f"{API}/villages/{scene.village.id}/rule-sets",
        json={"year": 2031, "template_code": zhangyan.code},
        headers=scene.admin,
    )
    assert created.status_code == 201, created.text
    rule_set = await db.get(RuleSet, uuid.UUID(created.json()["id"]))
    assert rule_set is not None
    rule_set.status = RuleSetStatus.APPROVED
    await db.flush()
    items = {
        i.code: i
        for i in (
            await db.execute(select(RuleItem).where(col(RuleItem.rule_set_id) == rule_set.id))
        ).scalars()
    }
    claims = [("3.2", 10), ("3.3", 10), ("3.1", 11), ("3.2", 11)]
    for code, day in claims:
        submitted = await submit(client, scene.villager, items[code], on=date(2031, 5, day))
        assert submitted.status_code == 201, submitted.text
        decided = await review(client, scene.leader, submitted.json()["id"])
        assert decided.json()["status"] == "approved", decided.text

    entries = await bonus_entries(db, scene.household)
    assert sum(e.points for e in entries) == 5
    awards = (
        await db.execute(
            select(col(BonusAward.points))
            .where(col(BonusAward.household_id) == scene.household.id)
            .order_by(col(BonusAward.created_at))
        )
    ).scalars()
    assert list(awards) == [2, 2, 1, 0]
