"""Which scoring period an approved claim's bonus belongs to, and how the period's approval
counts it: the activity's period while not yet approved, else today's, else none."""

import calendar
import uuid
from datetime import date, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    LedgerEntry,
    Outcome,
    Participation,
    PeriodKind,
    PeriodStatus,
    RuleItem,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
)
from app.schemas.rules import Policy
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.claims.conftest import (
    API,
    TODAY,
    Scene,
    add_items,
    build_scene,
    claim_body,
    review,
    submit,
)
from tests.ledger.conftest import assert_ledger_consistent
from tests.photos import images
from tests.photos.conftest import upload

LAST_MONTH = TODAY.replace(day=1) - timedelta(days=1)


async def add_period(
    db: AsyncSession, scene: Scene, on: date, status: PeriodStatus, item: RuleItem | None = None
) -> ScoringPeriod:
    """The village's month covering `on`, scored by the rules `item` belongs to."""
    starts_on = on.replace(day=1)
    period = ScoringPeriod(
        village_id=scene.village.id,
        town_id=scene.village.town_id,
        rule_set_id=(item or scene.items.volunteer).rule_set_id,
        year=on.year,
        kind=PeriodKind.MONTH,
        number=on.month,
        starts_on=starts_on,
        ends_on=on.replace(day=calendar.monthrange(on.year, on.month)[1]),
        status=status,
    )
    db.add(period)
    await db.flush()
    return period


async def add_card(
    db: AsyncSession,
    scene: Scene,
    period: ScoringPeriod,
    household: Household,
    points: int,
    *,
    vetoed: bool = False,
) -> None:
    """A card earning `points` on the scene's inspection item (worth 10, category cap 10), with
    the veto item found where `vetoed`."""
    scorer = await f.create_person(db, scene.village)
    card = Scorecard(
        id=uuid.uuid4(),
        period_id=period.id,
        household_id=household.id,
        village_id=scene.village.id,
        scorer_id=scorer.id,
    )
    db.add(card)
    await db.flush()
    db.add(
        ScorecardLine(
            id=uuid.uuid4(),
            scorecard_id=card.id,
            village_id=scene.village.id,
            rule_item_id=scene.items.inspection.id,
            outcome=Outcome.COMPLIANT,
            points=points,
        )
    )
    db.add(
        ScorecardLine(
            id=uuid.uuid4(),
            scorecard_id=card.id,
            village_id=scene.village.id,
            rule_item_id=scene.items.veto.id,
            outcome=Outcome.FINDING if vetoed else Outcome.COMPLIANT,
            points=0,
        )
    )
    await db.flush()


async def approve_claim(
    client: httpx.AsyncClient, scene: Scene, item: RuleItem, on: date, **extra: object
) -> dict[str, object]:
    claim = await submit(client, scene.villager, item, on=on, **extra)
    assert claim.status_code == 201, claim.text
    decided = await review(client, scene.leader, claim.json()["id"])
    assert decided.json()["status"] == "approved", decided.text
    body: dict[str, object] = decided.json()
    return body


async def entry_of(db: AsyncSession, claim: dict[str, object]) -> LedgerEntry:
    entry = (
        await db.execute(
            select(LedgerEntry).where(LedgerEntry.source_id == uuid.UUID(str(claim["id"])))
        )
    ).scalar_one()
    return entry


async def approve_period(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene, period: ScoringPeriod
) -> dict[uuid.UUID, tuple[int, bool]]:
    """Submit (as the admin would once every card is in) and approve; the scores written."""
    period.status = PeriodStatus.SUBMITTED
    await db.flush()
    approved = await client.post(f"{API}/periods/{period.id}/approve", headers=scene.admin)
    assert approved.status_code == 200, approved.text
    rows = await db.execute(
        select(HouseholdPeriodScore).where(HouseholdPeriodScore.period_id == period.id)
    )
    return {r.household_id: (r.score, r.vetoed) for r in rows.scalars()}


async def test_a_bonus_lands_in_its_open_period_and_counts_in_its_score_at_approval(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    period = await add_period(db, scene, TODAY, PeriodStatus.OPEN)
    await add_card(db, scene, period, scene.household, 7)
    # A neighbour with a bonus recorded on their behalf, who then stops taking part: no card.
    neighbour = await f.create_household(db, scene.village, scene.group)
    recorded = await client.post(
        f"{API}/households/{neighbour.id}/claims",
        headers=scene.scorers[0],
        json=claim_body(scene.items.volunteer),
    )
    assert recorded.status_code == 201, recorded.text
    # Decided while it still takes part: an approval asks what submission asked.
    assert (await review(client, scene.leader, recorded.json()["id"])).status_code == 200
    neighbour.participation = Participation.SUSPENDED
    await db.flush()

    claim = await approve_claim(client, scene, scene.items.volunteer, TODAY)
    entry = await entry_of(db, claim)
    assert (entry.period_id, entry.year, entry.points) == (period.id, TODAY.year, 2)
    # Before approval the period has no score rows, only entries.
    await assert_ledger_consistent(db, scene.village.id)

    scores = await approve_period(client, db, scene, period)
    assert scores == {scene.household.id: (7 + 2, False), neighbour.id: (2, False)}
    await assert_ledger_consistent(db, scene.village.id)
    results = await client.get(f"{API}/periods/{period.id}/results", headers=scene.admin)
    # The neighbour no longer takes part: scored, but neither ranked nor listed.
    assert [(r["household_id"], r["score"], r["rank"]) for r in results.json()["rows"]] == [
        (str(scene.household.id), 9, 1),
    ]
    # Until publication the villager sees the bonus they were told of, not the card's result.
    mine = f"{API}/households/{scene.household.id}"
    balance = (await client.get(f"{mine}/balance", headers=scene.villager)).json()
    assert (balance["balance"], balance["year_score"]) == (2, 2)
    entries = (await client.get(f"{mine}/ledger", headers=scene.villager)).json()["items"]
    assert [(e["kind"], e["points"]) for e in entries] == [("bonus", 2)]
    staff = (await client.get(f"{mine}/balance", headers=scene.admin)).json()
    assert (staff["balance"], staff["year_score"]) == (9, 9)


async def test_a_bonus_for_a_published_month_lands_in_todays_open_period(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    scene = await build_scene(db, settings)
    item = scene.items.volunteer
    if LAST_MONTH.year != TODAY.year:  # in January, last month has last year's rules
        item = (await add_items(db, scene.village, policy=Policy(), year=LAST_MONTH.year)).volunteer
    published = await add_period(db, scene, LAST_MONTH, PeriodStatus.PUBLISHED, item)
    db.add(
        HouseholdPeriodScore(
            household_id=scene.household.id,
            period_id=published.id,
            village_id=scene.village.id,
            score=0,
        )
    )
    current = await add_period(db, scene, TODAY, PeriodStatus.SCORING)

    first = await approve_claim(client, scene, item, LAST_MONTH)
    second = await approve_claim(client, scene, item, LAST_MONTH - timedelta(days=1))
    for claim in (first, second):
        entry = await entry_of(db, claim)
        assert (entry.period_id, entry.year) == (current.id, TODAY.year)
    # The cap (4 a month) is counted by the month of the activity, wherever the bonus lands.
    over = await submit(client, scene.villager, item, on=LAST_MONTH - timedelta(days=2))
    assert_problem(over, 409, "claim.over_cap")
    this_month = await approve_claim(client, scene, scene.items.volunteer, TODAY)
    assert this_month["points_awarded"] == 2

    published_score = await db.get(HouseholdPeriodScore, (scene.household.id, published.id))
    assert published_score is not None
    assert published_score.score == 0  # a published period never changes
    scores = await approve_period(client, db, scene, current)
    assert scores == {scene.household.id: (2 + 2 + 2, False)}
    await assert_ledger_consistent(db, scene.village.id)


async def test_without_a_period_still_open_the_bonus_counts_in_the_year_only(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    claim = await approve_claim(client, scene, scene.items.volunteer, TODAY)
    entry = await entry_of(db, claim)
    assert (entry.period_id, entry.year) == (None, TODAY.year)

    # This month approved but not yet published: it takes no more bonuses either.
    period = await add_period(db, scene, TODAY, PeriodStatus.APPROVED)
    photo = (await upload(client, scene.villager, images.jpeg())).json()
    later = await approve_claim(client, scene, scene.items.blood, TODAY, photo_ids=[photo["id"]])
    assert (await entry_of(db, later)).period_id is None
    assert await db.get(HouseholdPeriodScore, (scene.household.id, period.id)) is None
    await assert_ledger_consistent(db, scene.village.id)


async def test_a_vetoed_household_keeps_its_bonus_in_a_score_left_out_of_the_ranking(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    current = await add_period(db, scene, TODAY, PeriodStatus.OPEN)
    neighbour = await f.create_household(db, scene.village, scene.group)
    await add_card(db, scene, current, neighbour, 3)
    await add_card(db, scene, current, scene.household, 10, vetoed=True)
    await approve_claim(client, scene, scene.items.volunteer, TODAY)

    scores = await approve_period(client, db, scene, current)
    # The card no longer counts; the bonus, decided on its own evidence, still does.
    assert scores == {scene.household.id: (2, True), neighbour.id: (3, False)}
    await assert_ledger_consistent(db, scene.village.id)
    results = await client.get(f"{API}/periods/{current.id}/results", headers=scene.admin)
    assert [(r["household_id"], r["vetoed"], r["rank"]) for r in results.json()["rows"]] == [
        (str(neighbour.id), False, 1),
        (str(scene.household.id), True, None),
    ]
