"""A period records its scoring group; approval refuses a group below the policy's minimum
unless the town has waived it for that period."""

from collections.abc import Callable
from datetime import date, datetime

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    AuditEntry,
    HouseholdPeriodScore,
    LedgerEntry,
    PeriodFigures,
    PeriodScorer,
    Role,
    ScoringGroupWaiver,
    ScoringPeriod,
)
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.supervision.conftest import (
    API,
    MARCH,
    POLICY,
    YEAR,
    Village_,
    add_village,
    at,
    save_cards,
)

# 翁源: 每组不少于3人.
WENGYUAN_SIZE = POLICY.model_copy(update={"scoring_group_min_size": 3})
CARDS = {1: [10, 7], 2: [9]}


async def _submitted(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> tuple[dict[str, str], str, Village_]:
    town = await f.create_town(db)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    v = await add_village(db, settings, town, "小组村", CARDS, policy=WENGYUAN_SIZE)
    set_clock(at(MARCH))
    opened = await client.post(
        f"{API}/villages/{v.village.id}/periods", json={"starts_on": str(MARCH)}, headers=v.admin
    )
    period_id = opened.json()["id"]
    await save_cards(db, v, period_id, CARDS)
    set_clock(at(date(YEAR, 3, 18)))
    assert (await client.post(f"{API}/periods/{period_id}/submit", headers=v.admin)).is_success
    return await f.login_headers(db, settings, supervisor), period_id, v


async def _count(db: AsyncSession, model: type, **where: object) -> int:
    statement = select(func.count()).select_from(model)
    for name, value in where.items():
        statement = statement.where(getattr(model, name) == value)
    return int((await db.execute(statement)).scalar_one())


async def test_too_small_a_group_is_refused_then_waived(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    supervisor, period_id, v = await _submitted(client, db, settings, set_clock)
    refused = await client.post(f"{API}/periods/{period_id}/approve", headers=v.admin)
    body = assert_problem(refused, 409, "period.scoring_group_too_small")
    assert (body["group_size"], body["min_size"]) == (2, 3)
    period = await db.get(ScoringPeriod, period_id)
    assert period is not None
    await db.refresh(period)
    assert period.status == "submitted"
    assert await _count(db, LedgerEntry, period_id=period.id) == 0
    assert await _count(db, HouseholdPeriodScore, period_id=period.id) == 0
    assert await _count(db, PeriodFigures, period_id=period.id) == 0

    # The village cannot waive its own rule; the town can, once, with a reason.
    own = await client.post(
        f"{API}/periods/{period_id}/scoring-group-waiver",
        json={"reason": "自己批准"},
        headers=v.admin,
    )
    assert_problem(own, 403, "auth.forbidden")
    waived = await client.post(
        f"{API}/periods/{period_id}/scoring-group-waiver",
        json={"reason": "评分员一人病休，本月由两人完成"},
        headers=supervisor,
    )
    assert waived.status_code == 201, waived.text
    again = await client.post(
        f"{API}/periods/{period_id}/scoring-group-waiver",
        json={"reason": "再次"},
        headers=supervisor,
    )
    assert_problem(again, 409, "scoring_group.waiver_exists")
    assert await _count(db, ScoringGroupWaiver, period_id=period.id) == 1
    assert await _count(db, AuditEntry, action="scoring_group.waive", object_id=period.id) == 1

    approved = await client.post(f"{API}/periods/{period_id}/approve", headers=v.admin)
    assert approved.status_code == 200, approved.text
    figures = await db.get(PeriodFigures, period.id)
    assert figures is not None
    assert (figures.group_size, figures.group_min_size, figures.waived) == (2, 3, True)

    group = await client.get(f"{API}/periods/{period_id}/scoring-group", headers=supervisor)
    assert group.status_code == 200, group.text
    assert [(m["name"], m["role"], m["cards_saved"]) for m in group.json()] == [
        ("小组村评分员1", "scorer", 2),
        ("小组村评分员2", "scorer", 1),
    ]
    assert await _count(db, PeriodScorer, period_id=period.id) == 2


async def test_a_full_group_is_approved_and_recorded(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> None:
    """A leader counts towards the group; a revoked grant does not."""
    _, period_id, v = await _submitted(client, db, settings, set_clock)
    leader = await f.create_person(db, v.village, name="组长")
    await f.grant(db, leader, Role.SCORING_LEADER, village=v.village)
    gone = await f.create_person(db, v.village, name="已离任")
    revoked = await f.grant(db, gone, Role.SCORER, village=v.village)
    revoked.revoked_at = datetime(YEAR, 3, 1, tzinfo=at(MARCH).tzinfo)
    await db.flush()
    approved = await client.post(f"{API}/periods/{period_id}/approve", headers=v.admin)
    assert approved.status_code == 200, approved.text
    rows = {
        name: (role, cards)
        for name, role, cards in (
            await db.execute(
                select(f.Person.name, PeriodScorer.role, PeriodScorer.cards_saved)
                .join(PeriodScorer, col(PeriodScorer.person_id) == col(f.Person.id))
                .where(col(PeriodScorer.period_id) == period_id)
            )
        ).all()
    }
    assert rows == {
        "组长": ("scoring_leader", 0),
        "小组村评分员1": ("scorer", 2),
        "小组村评分员2": ("scorer", 1),
    }
