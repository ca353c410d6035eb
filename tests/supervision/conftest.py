"""A town with villages whose answers are known: a fair one scored on time, and one scored late
by a scorer who gives their households full marks (人情分)."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    Outcome,
    Person,
    Role,
    RuleItem,
    Scorecard,
    ScorecardLine,
    Town,
    Village,
)
from app.schemas.rules import Deadline, Deadlines, Policy
from app.timeutil import SHANGHAI
from tests import factories as f

API = "/api/v1"
YEAR = 2031
MARCH = date(YEAR, 3, 1)
# 旧县: scoring by the 20th, publication by the 25th.
POLICY = Policy(
    period_cap=10,
    deadlines=Deadlines(scoring_due=Deadline(day=20), publication_due=Deadline(day=25)),
)


def at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), SHANGHAI)


@dataclass
class Village_:
    village: Village
    item: RuleItem
    admin: dict[str, str]
    admin_person: Person
    households: list[Household]
    scorers: list[Person]
    period_id: str = ""


@dataclass
class Scene:
    town: Town
    supervisor: dict[str, str]
    supervisor_person: Person
    villages: dict[str, Village_] = field(default_factory=dict)


async def add_village(
    db: AsyncSession,
    settings: Settings,
    town: Town,
    name: str,
    cards: dict[int, list[int]],
    policy: Policy = POLICY,
) -> Village_:
    """A village whose scorer n saved the cards scoring `cards[n]` (one household each)."""
    village = await f.create_village(db, town, name=name)
    _, _, item = await f.create_rule_set(db, village, year=YEAR, policy=policy)
    admin = await f.create_person(db, village, name=f"{name}管理员")
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    scorers = []
    for n in cards:
        scorer = await f.create_person(db, village, name=f"{name}评分员{n}")
        await f.grant(db, scorer, Role.SCORER, village=village)
        scorers.append(scorer)
    households = []
    for scores in cards.values():
        for _ in scores:
            household = await f.create_household(db, village)
            await f.add_member(db, household, is_head=True)
            households.append(household)
    return Village_(
        village, item, await f.login_headers(db, settings, admin), admin, households, scorers
    )


async def save_cards(
    db: AsyncSession, v: Village_, period_id: str, cards: dict[int, list[int]]
) -> None:
    households = iter(v.households)
    for n, scores in cards.items():
        for points in scores:
            household = next(households)
            card = Scorecard(
                id=uuid.uuid4(),
                period_id=uuid.UUID(period_id),
                household_id=household.id,
                village_id=v.village.id,
                scorer_id=v.scorers[list(cards).index(n)].id,
            )
            db.add(card)
            await db.flush()
            db.add(
                ScorecardLine(
                    id=uuid.uuid4(),
                    scorecard_id=card.id,
                    village_id=v.village.id,
                    rule_item_id=v.item.id,
                    outcome=Outcome.COMPLIANT,
                    points=points,
                )
            )
    await db.flush()


async def run_period(
    client: httpx.AsyncClient,
    db: AsyncSession,
    set_clock: Callable[[datetime], None],
    v: Village_,
    cards: dict[int, list[int]],
    *,
    submitted: date,
    published: date | None,
) -> str:
    """Open March, save the cards, submit and approve on `submitted`, publish on `published`."""
    set_clock(at(MARCH))
    opened = await client.post(
        f"{API}/villages/{v.village.id}/periods", json={"starts_on": str(MARCH)}, headers=v.admin
    )
    assert opened.status_code == 201, opened.text
    period_id: str = opened.json()["id"]
    await save_cards(db, v, period_id, cards)
    set_clock(at(submitted))
    for step in ("submit", "approve"):
        done = await client.post(f"{API}/periods/{period_id}/{step}", headers=v.admin)
        assert done.status_code == 200, done.text
    if published:
        set_clock(at(published))
        done = await client.post(f"{API}/periods/{period_id}/publish", headers=v.admin)
        assert done.status_code == 200, done.text
    v.period_id = period_id
    return period_id


FAIR = {1: [10, 6], 2: [8, 4]}
# Scorer 1 gives each of their three households full marks; the village's other card is a 5.
FAVOUR = {1: [10, 10, 10], 2: [5]}


async def build_scene(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    set_clock: Callable[[datetime], None],
) -> Scene:
    town = await f.create_town(db)
    supervisor = await f.create_person(db, name="镇督导")
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    scene = Scene(town, await f.login_headers(db, settings, supervisor), supervisor)
    fair = await add_village(db, settings, town, "和美村", FAIR)
    favour = await add_village(db, settings, town, "人情村", FAVOUR)
    scene.villages = {"fair": fair, "favour": favour}
    # On time: submitted the 19th, published the 24th. Late: the 23rd (3 days) and the 30th (5).
    await run_period(
        client, db, set_clock, fair, FAIR, submitted=date(YEAR, 3, 19), published=date(YEAR, 3, 24)
    )
    await run_period(
        client,
        db,
        set_clock,
        favour,
        FAVOUR,
        submitted=date(YEAR, 3, 23),
        published=date(YEAR, 3, 30),
    )
    return scene
