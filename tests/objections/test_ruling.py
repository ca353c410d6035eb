"""Ruling: an uphold corrects through the ledger and re-scores the card as approval does, then
republishes with a mark; a dismissal gives the household a reason; either way audited and told;
a dismissal can be escalated once to the town, whose ruling is final."""

import uuid
from collections.abc import Callable
from datetime import date, datetime

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import (
    AuditEntry,
    HouseholdPeriodScore,
    LedgerEntry,
    LedgerKind,
    Notification,
    NotificationKind,
    Objection,
    ObjectionStatus,
    Person,
    Role,
    RoleGrant,
)
from app.schemas.rules import Policy
from app.services import ledger
from app.timeutil import SHANGHAI
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import assert_ledger_consistent, balance_of
from tests.objections.conftest import (
    API,
    Scene,
    approve_and_publish,
    build_scene,
    entry_of,
    file,
    published_february,
    rule,
    scored_period,
)

Clock = Callable[[datetime], None]


def full_marks(scene: Scene, points: int | None = None) -> list[dict[str, object]]:
    return [
        {"rule_item_id": str(scene.items.inspection.id), "outcome": "compliant", "points": points}
    ]


async def period_score(
    db: AsyncSession, household_id: uuid.UUID, period_id: uuid.UUID
) -> tuple[int, bool]:
    row = (
        await db.execute(
            select(HouseholdPeriodScore.score, HouseholdPeriodScore.vetoed).where(
                HouseholdPeriodScore.household_id == household_id,
                HouseholdPeriodScore.period_id == period_id,
            )
        )
    ).one()
    return row.score, row.vetoed


async def messages(db: AsyncSession, person: Person) -> list[dict[str, object]]:
    rows = await db.execute(
        select(Notification.data).where(
            Notification.person_id == person.id,
            Notification.kind == NotificationKind.OBJECTION_RULED,
        )
    )
    return list(rows.scalars())


async def audit_actions(db: AsyncSession, object_id: uuid.UUID) -> list[str]:
    rows = await db.execute(
        select(AuditEntry.action).where(AuditEntry.object_id == object_id).order_by(AuditEntry.at)
    )
    return list(rows.scalars())


async def results_row(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    period_id: uuid.UUID,
    household_id: uuid.UUID,
) -> dict[str, object]:
    response = await client.get(f"{API}/periods/{period_id}/results", headers=headers)
    assert response.status_code == 200, response.text
    [row] = [r for r in response.json()["rows"] if r["household_id"] == str(household_id)]
    return row  # type: ignore[no-any-return]


async def test_upholding_rescores_the_card_and_republishes_it_marked(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    before = await results_row(client, scene.villager_headers, period.id, scene.household.id)
    assert (before["score"], before["rank"], before["amended"]) == (7, 2, False)
    filed = (await file(client, scene.villager_headers, period)).json()

    # A re-score is checked as a card is: an item not on the card, points beyond the item's.
    bonus = {"rule_item_id": str(scene.items.volunteer.id), "outcome": "compliant"}
    assert_problem(
        await rule(client, scene.leader_headers, filed["id"], "uphold", lines=[bonus]),
        422,
        "objection.line_not_on_card",
    )
    assert_problem(
        await rule(
            client, scene.leader_headers, filed["id"], "uphold", lines=full_marks(scene, 11)
        ),
        422,
        "scorecard.points_out_of_range",
    )
    assert_problem(
        await rule(client, scene.leader_headers, filed["id"], "uphold"),
        422,
        "objection.lines_required",
    )
    assert (await db.get(Objection, filed["id"])).status is ObjectionStatus.OPEN  # type: ignore[union-attr]

    upheld = await rule(
        client, scene.leader_headers, filed["id"], "uphold", "复查属实", lines=full_marks(scene)
    )
    assert upheld.status_code == 200, upheld.text
    body = upheld.json()
    assert body["status"] == "upheld"
    assert (body["score_before"], body["score_after"], body["period_score"]) == (7, 10, 10)
    assert body["final"] is True
    assert {line["item_code"]: (line["points"], line["amended"]) for line in body["card"]} == {
        "1.1": (10, True),
        "V1": (0, False),
    }

    assert await period_score(db, scene.household.id, period.id) == (10, False)
    original = await entry_of(db, scene.household, period, LedgerKind.INSPECTION)
    correction = (
        await db.execute(select(LedgerEntry).where(LedgerEntry.reverses_id == original.id))
    ).scalar_one()
    assert (correction.kind, correction.points, correction.source_type) == (
        LedgerKind.CORRECTION,
        -7,
        "objection",
    )
    rescored = (
        await db.execute(
            select(LedgerEntry).where(
                LedgerEntry.source_id == uuid.UUID(filed["id"]),
                LedgerEntry.kind == LedgerKind.INSPECTION,
            )
        )
    ).scalar_one()
    assert (rescored.points, rescored.period_id, rescored.item_code) == (10, period.id, "1.1")
    await assert_ledger_consistent(db, scene.village.id)
    # The period was published: the points are the household's to spend at once.
    assert await balance_of(db, scene.household.id) == 10
    balance = await client.get(
        f"{API}/households/{scene.household.id}/balance",
        headers=scene.villager_headers,
        params={"year": 2031},
    )
    assert balance.json()["balance"] == 10

    # Republished: the notice board and the household's standing show the amended score.
    after = await results_row(client, scene.villager_headers, period.id, scene.household.id)
    assert (after["score"], after["rank"], after["amended"]) == (10, 1, True)
    standing = await client.get(
        f"{API}/households/{scene.household.id}/standing",
        headers=scene.villager_headers,
        params={"year": 2031},
    )
    latest = standing.json()["latest_period"]
    assert (latest["score"], latest["rank_in_village"]) == (10, 1)
    assert standing.json()["year_score"] == 10

    [message] = await messages(db, scene.villager)
    assert message["phrase2"] == {"value": "已采纳"}
    assert message["thing1"] == {"value": "2031年2月积分异议"}
    assert await audit_actions(db, uuid.UUID(filed["id"])) == ["objection.file", "objection.rule"]
    republished = (
        await db.execute(
            select(AuditEntry).where(
                AuditEntry.action == "period.republish", AuditEntry.object_id == period.id
            )
        )
    ).scalar_one()
    assert republished.before is not None
    assert republished.after is not None
    assert (republished.before["score"], republished.after["score"]) == (7, 10)

    # Ruled once: a second ruling changes nothing.
    assert_problem(
        await rule(client, scene.admin_headers, filed["id"], "dismiss"),
        409,
        "objection.already_ruled",
    )
    assert_problem(
        await client.post(
            f"{API}/objections/{filed['id']}/escalation",
            headers=scene.villager_headers,
            json={"reason": "再议"},
        ),
        409,
        "objection.not_escalatable",
    )


async def test_upholding_an_objection_to_a_veto_lifts_it_and_ranks_the_household(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock, vetoed=True)
    before = await results_row(client, scene.admin_headers, period.id, scene.household.id)
    assert (before["vetoed"], before["rank"]) == (True, None)
    assert await balance_of(db, scene.household.id) == 0
    veto = await entry_of(db, scene.household, period, LedgerKind.VETO)
    filed = (await file(client, scene.villager_headers, period, veto)).json()

    upheld = await rule(client, scene.admin_headers, filed["id"], "uphold", "违建已于检查前拆除")
    assert upheld.status_code == 200, upheld.text
    assert (upheld.json()["vetoed_before"], upheld.json()["vetoed_after"]) == (True, False)
    assert await period_score(db, scene.household.id, period.id) == (7, False)
    assert await balance_of(db, scene.household.id) == 7
    await assert_ledger_consistent(db, scene.village.id)
    after = await results_row(client, scene.villager_headers, period.id, scene.household.id)
    assert (after["vetoed"], after["score"], after["rank"], after["amended"]) == (False, 7, 2, True)


async def test_upholding_an_objection_to_a_deduction_takes_it_back(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings, set_clock: Clock
) -> None:
    """翁源 deducts from 100: the disputed deduction is reversed and the card computed again,
    base score included, as approval computes it."""
    scene = await build_scene(db, settings, policy=Policy(scoring_mode="deductive", base_score=100))
    set_clock(datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI))
    period = await scored_period(
        db,
        scene,
        date(2031, 2, 1),
        {scene.household.id: (-10, False), scene.neighbour.id: (0, False)},
    )
    await approve_and_publish(client, scene, period)
    assert await period_score(db, scene.household.id, period.id) == (90, False)
    deduction = await entry_of(db, scene.household, period, LedgerKind.INSPECTION)
    assert deduction.points == -10
    filed = (await file(client, scene.villager_headers, period, deduction)).json()
    upheld = await rule(client, scene.admin_headers, filed["id"], "uphold", "门前杂物系邻居堆放")
    assert upheld.status_code == 200, upheld.text
    assert (upheld.json()["score_before"], upheld.json()["score_after"]) == (90, 100)
    assert await period_score(db, scene.household.id, period.id) == (100, False)
    assert await balance_of(db, scene.household.id) == 100
    await assert_ledger_consistent(db, scene.village.id)
    row = await results_row(client, scene.villager_headers, period.id, scene.household.id)
    assert (row["score"], row["rank"], row["amended"]) == (100, 1, True)


async def test_lifting_a_year_veto_frees_the_later_months_of_the_year(
    db: AsyncSession, client: httpx.AsyncClient, settings: Settings, set_clock: Clock
) -> None:
    scene = await build_scene(db, settings, policy=Policy(veto_scope="year"))
    set_clock(datetime(2031, 2, 5, 10, 0, tzinfo=SHANGHAI))
    january = await scored_period(
        db, scene, date(2031, 1, 1), {scene.household.id: (7, True), scene.neighbour.id: (8, False)}
    )
    await approve_and_publish(client, scene, january)
    veto = await entry_of(db, scene.household, january, LedgerKind.VETO)
    filed = (await file(client, scene.villager_headers, january, veto)).json()
    set_clock(datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI))
    february = await scored_period(
        db,
        scene,
        date(2031, 2, 1),
        {scene.household.id: (9, False), scene.neighbour.id: (8, False)},
    )
    await approve_and_publish(client, scene, february)
    assert await period_score(db, scene.household.id, february.id) == (0, True)
    standing = await client.get(
        f"{API}/households/{scene.household.id}/standing",
        headers=scene.villager_headers,
        params={"year": 2031},
    )
    assert standing.json()["rank_in_village"] is None

    upheld = await rule(client, scene.leader_headers, filed["id"], "uphold", "误判，撤销否决")
    assert upheld.status_code == 200, upheld.text
    assert await period_score(db, scene.household.id, january.id) == (7, False)
    assert await period_score(db, scene.household.id, february.id) == (9, False)
    await assert_ledger_consistent(db, scene.village.id)
    standing = await client.get(
        f"{API}/households/{scene.household.id}/standing",
        headers=scene.villager_headers,
        params={"year": 2031},
    )
    assert standing.json()["year_score"] == 16
    assert standing.json()["rank_in_village"] == 1
    assert standing.json()["latest_period"]["rank_in_village"] == 1


async def test_a_dismissal_gives_a_reason_and_the_town_rules_the_escalation_finally(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    filed = (await file(client, scene.villager_headers, period)).json()
    assert_problem(
        await rule(client, scene.admin_headers, filed["id"], "dismiss", ""), 422, "request.invalid"
    )
    assert_problem(
        await rule(client, scene.admin_headers, filed["id"], "dismiss", lines=full_marks(scene)),
        422,
        "objection.lines_not_applicable",
    )
    entries = (await db.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
    dismissed = await rule(
        client, scene.admin_headers, filed["id"], "dismiss", "检查当天确有垃圾堆放"
    )
    assert dismissed.status_code == 200, dismissed.text
    seen = (
        await client.get(f"{API}/objections/{filed['id']}", headers=scene.villager_headers)
    ).json()
    assert (seen["status"], seen["ruling_reason"]) == ("dismissed", "检查当天确有垃圾堆放")
    assert seen["escalation_closes_on"] == "2031-03-12"
    assert seen["final"] is False
    [message] = await messages(db, scene.villager)
    assert message["phrase2"] == {"value": "未采纳"}
    assert (await db.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == entries

    # Only the household escalates, once.
    escalation = f"{API}/objections/{filed['id']}/escalation"
    assert_problem(
        await client.post(escalation, headers=scene.neighbour_headers, json={"reason": "x"}),
        404,
        "objection.not_found",
    )
    # The town rules only escalations.
    assert_problem(
        await rule(client, scene.town_headers, filed["id"], "uphold", town=True),
        409,
        "objection.not_escalated",
    )
    escalated = await client.post(
        escalation, headers=scene.villager_headers, json={"reason": "请镇督导复核"}
    )
    assert escalated.status_code == 200, escalated.text
    assert escalated.json()["status"] == "escalated"
    assert_problem(
        await client.post(escalation, headers=scene.villager_headers, json={"reason": "再次"}),
        409,
        "objection.not_escalatable",
    )
    listing = await client.get(
        f"{API}/towns/{scene.village.town_id}/objection-escalations", headers=scene.town_headers
    )
    assert [o["id"] for o in listing.json()["items"]] == [filed["id"]]
    assert_problem(
        await rule(client, scene.admin_headers, filed["id"], "uphold", lines=full_marks(scene)),
        409,
        "objection.already_ruled",
    )

    ruled = await rule(
        client, scene.town_headers, filed["id"], "uphold", "镇督导复核属实", town=True,
        lines=full_marks(scene, 9),
    )  # fmt: skip
    assert ruled.status_code == 200, ruled.text
    body = ruled.json()
    assert (body["status"], body["final"], body["score_after"]) == ("upheld", True, 9)
    assert body["town_ruling_reason"] == "镇督导复核属实"
    assert await period_score(db, scene.household.id, period.id) == (9, False)
    await assert_ledger_consistent(db, scene.village.id)
    assert len(await messages(db, scene.villager)) == 2
    assert await audit_actions(db, uuid.UUID(filed["id"])) == [
        "objection.file",
        "objection.rule",
        "objection.escalate",
        "objection.rule_escalation",
    ]
    assert_problem(
        await rule(client, scene.town_headers, filed["id"], "dismiss", town=True),
        409,
        "objection.already_ruled",
    )


async def test_escalation_comes_within_the_policys_window(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, set_clock: Clock
) -> None:
    period = await published_february(db, client, scene, set_clock)
    filed = (await file(client, scene.villager_headers, period)).json()
    assert (await rule(client, scene.admin_headers, filed["id"], "dismiss")).status_code == 200
    set_clock(datetime(2031, 3, 13, 8, 0, tzinfo=SHANGHAI))
    assert_problem(
        await client.post(
            f"{API}/objections/{filed['id']}/escalation",
            headers=scene.villager_headers,
            json={"reason": "晚了"},
        ),
        409,
        "objection.escalation_window_closed",
    )
    stored = await db.get(Objection, filed["id"])
    assert stored is not None
    await db.refresh(stored)
    assert stored.status is ObjectionStatus.DISMISSED
    assert stored.escalated_at is None


async def test_nobody_rules_on_their_own_household_or_a_card_they_scored(
    db: AsyncSession, client: httpx.AsyncClient, scene: Scene, settings: Settings, set_clock: Clock
) -> None:
    leader = await f.create_person(db, scene.village)
    await f.grant(db, leader, Role.SCORING_LEADER, village=scene.village)
    leader_headers = await f.login_headers(db, settings, leader)
    set_clock(datetime(2031, 3, 5, 10, 0, tzinfo=SHANGHAI))
    period = await scored_period(
        db, scene, date(2031, 2, 1), {scene.household.id: (7, False)}, scorer=leader
    )
    await approve_and_publish(client, scene, period)
    filed = (await file(client, scene.villager_headers, period)).json()
    assert_problem(
        await rule(client, scene.admin_at_home_headers, filed["id"], "dismiss"),
        403,
        "objection.own_household",
    )
    assert_problem(
        await rule(client, leader_headers, filed["id"], "dismiss"), 403, "objection.scored_by_you"
    )
    stored = await db.get(Objection, filed["id"])
    assert stored is not None
    assert stored.status is ObjectionStatus.OPEN
    # With nobody else in the working group (the other handlers' grants revoked, and the admin
    # at home excluded), the scorer is not left without anyone to answer.
    await db.execute(
        update(RoleGrant)
        .where(
            RoleGrant.village_id == scene.village.id,
            RoleGrant.role.in_([Role.VILLAGE_ADMIN, Role.SCORING_LEADER]),  # type: ignore[attr-defined]
            RoleGrant.person_id != leader.id,
        )
        .values(revoked_at=datetime(2031, 3, 5, tzinfo=SHANGHAI))
    )
    ruled = await rule(client, leader_headers, filed["id"], "dismiss", "检查无误")
    assert ruled.status_code == 200, ruled.text


@pytest.mark.parametrize("carry_over", [False, True])
async def test_a_correction_after_the_year_closed(
    db: AsyncSession,
    client: httpx.AsyncClient,
    settings: Settings,
    set_clock: Clock,
    carry_over: bool,
) -> None:
    """December is published in January and the year closed: without carry-over the score moves
    and what reaches the balance expires at once; with carry-over the balance moves too."""
    # The rules took effect in December, so December is the year's one period to publish.
    scene = await build_scene(
        db, settings, policy=Policy(carry_over=carry_over), effective_from=date(2031, 12, 1)
    )
    set_clock(datetime(2032, 1, 2, 9, 0, tzinfo=SHANGHAI))
    december = await scored_period(
        db,
        scene,
        date(2031, 12, 1),
        {scene.household.id: (7, False), scene.neighbour.id: (10, False)},
    )
    await approve_and_publish(client, scene, december)
    [closed] = (await ledger.close_year(db, 2031, village_ids=[scene.village.id])).closed
    assert closed.carried_over is carry_over
    balance_before = await balance_of(db, scene.household.id)
    assert balance_before == (7 if carry_over else 0)
    filed = (await file(client, scene.villager_headers, december)).json()

    upheld = await rule(
        client, scene.admin_headers, filed["id"], "uphold", "复查属实", lines=full_marks(scene)
    )
    assert upheld.status_code == 200, upheld.text
    assert await period_score(db, scene.household.id, december.id) == (10, False)
    year_score = await client.get(
        f"{API}/households/{scene.household.id}/balance",
        headers=scene.villager_headers,
        params={"year": 2031},
    )
    assert year_score.json()["year_score"] == 10
    assert await balance_of(db, scene.household.id) == (10 if carry_over else 0)
    expiries = (
        (
            await db.execute(
                select(LedgerEntry.points).where(
                    LedgerEntry.household_id == scene.household.id,
                    LedgerEntry.kind == LedgerKind.EXPIRY,
                    LedgerEntry.source_type == "objection",
                )
            )
        )
        .scalars()
        .all()
    )
    assert expiries == ([] if carry_over else [-3])
    await assert_ledger_consistent(db, scene.village.id)
