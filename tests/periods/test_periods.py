"""A month of a 张堰 village: open, score, submit, approve (posting to the ledger), publish."""

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.models import (
    Household,
    HouseholdPeriodScore,
    ItemKind,
    LedgerEntry,
    Outcome,
    Participation,
    Role,
    RuleItem,
    Scorecard,
    ScorecardLine,
    Village,
)
from tests import factories as f
from tests.ledger.conftest import assert_ledger_consistent

YEAR = 2031
API = "/api/v1"


@dataclass
class Month:
    village: Village
    admin: dict[str, str]
    villager: dict[str, str]
    households: list[Household]
    rule_set_id: str


async def approved_rules(
    client: httpx.AsyncClient,
    village: Village,
    admin: dict[str, str],
    supervisor: dict[str, str],
    year: int,
    policy: dict[str, Any] | None = None,
) -> str:
    created = await client.post(
        f"{API}/villages/{village.id}/rule-sets",
        json={"year": year, "template_code": "zhangyan-governance-2024"},
        headers=admin,
    )
    rule_set = created.json()
    if policy is not None:
        patched = await client.patch(
            f"{API}/rule-sets/{rule_set['id']}",
            json={"policy": {**rule_set["policy"], **policy}},
            headers=admin,
        )
        assert patched.status_code == 200, patched.text
    assert (
        await client.post(f"{API}/rule-sets/{rule_set['id']}/submit", headers=admin)
    ).status_code == 200
    assert (
        await client.post(f"{API}/rule-sets/{rule_set['id']}/approve", headers=supervisor)
    ).status_code == 200
    rule_set_id: str = rule_set["id"]
    return rule_set_id


@pytest.fixture
async def month(client: httpx.AsyncClient, db: AsyncSession, settings: Settings) -> Month:
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    households = [await f.create_household(db, village, number=f"0{n}") for n in range(1, 4)]
    for n, household in enumerate(households):
        await f.add_member(
            db, household, await f.create_person(db, village, name=f"张{n}{n}"), is_head=True
        )
    await f.create_household(db, village, participation=Participation.PENDING)
    villager = await db.get(f.Person, (await f.add_member(db, households[0])).person_id)
    assert villager is not None
    admin_headers = await f.login_headers(db, settings, admin)
    rule_set_id = await approved_rules(
        client, village, admin_headers, await f.login_headers(db, settings, supervisor), YEAR
    )
    return Month(
        village,
        admin_headers,
        await f.login_headers(db, settings, villager),
        households,
        rule_set_id,
    )


async def fill_card(
    db: AsyncSession,
    period_id: str,
    household: Household,
    rule_set_id: str,
    *,
    veto: bool = False,
    skip: int = 0,
) -> None:
    items = (
        (
            await db.execute(
                select(RuleItem).where(
                    RuleItem.rule_set_id == rule_set_id,
                    RuleItem.kind.in_([ItemKind.INSPECTION, ItemKind.VETO]),
                )  # type: ignore[attr-defined]
            )
        )
        .scalars()
        .all()
    )
    card = Scorecard(
        id=uuid.uuid4(),
        period_id=uuid.UUID(period_id),
        household_id=household.id,
        village_id=household.village_id,
        scorer_id=(await f.create_person(db)).id,
    )
    db.add(card)
    await db.flush()
    for item in items[skip:]:
        finding = item.kind is ItemKind.VETO and veto and item.code == "V1"
        points = item.points if item.kind is ItemKind.INSPECTION else 0
        db.add(
            ScorecardLine(
                id=uuid.uuid4(),
                scorecard_id=card.id,
                village_id=household.village_id,
                rule_item_id=item.id,
                outcome=Outcome.FINDING if finding else Outcome.COMPLIANT,
                points=points,
            )
        )
    await db.flush()


async def test_a_whole_month_from_opening_to_publication(
    client: httpx.AsyncClient, db: AsyncSession, month: Month
) -> None:
    opened = await client.post(
        f"{API}/villages/{month.village.id}/periods",
        json={"starts_on": f"{YEAR}-03-01"},
        headers=month.admin,
    )
    assert opened.status_code == 201, opened.text
    period = opened.json()
    assert (period["status"], period["kind"], period["number"], period["ends_on"]) == (
        "open",
        "month",
        3,
        f"{YEAR}-03-31",
    )
    assert period["rule_set_id"] == month.rule_set_id
    pid = period["id"]

    await fill_card(db, pid, month.households[0], month.rule_set_id)
    await fill_card(db, pid, month.households[1], month.rule_set_id)
    await fill_card(db, pid, month.households[2], month.rule_set_id, skip=3)
    incomplete = await client.post(f"{API}/periods/{pid}/submit", headers=month.admin)
    assert incomplete.status_code == 409
    assert incomplete.json()["code"] == "period.cards_incomplete"
    assert incomplete.json()["count"] == 1
    card = (
        await db.execute(select(Scorecard).where(Scorecard.household_id == month.households[2].id))
    ).scalar_one()
    await db.delete(card)
    await db.flush()
    await fill_card(db, pid, month.households[2], month.rule_set_id, veto=True)

    assert (await client.post(f"{API}/periods/{pid}/submit", headers=month.admin)).json()[
        "status"
    ] == "submitted"
    approved = await client.post(f"{API}/periods/{pid}/approve", headers=month.admin)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"

    scores = dict(
        (
            await db.execute(
                select(HouseholdPeriodScore.household_id, HouseholdPeriodScore.score).where(
                    HouseholdPeriodScore.period_id == pid
                )
            )
        ).all()
    )
    # 张堰: 115 of the 120 points are inspection items (志愿服务's 5 come by claims).
    assert scores == {
        month.households[0].id: 115,
        month.households[1].id: 115,
        month.households[2].id: 0,
    }
    vetoed = (
        await db.execute(
            select(HouseholdPeriodScore.vetoed).where(
                HouseholdPeriodScore.household_id == month.households[2].id
            )
        )
    ).scalar_one()
    assert vetoed
    entries = (
        await db.execute(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.period_id == pid)
        )
    ).scalar_one()
    assert entries > 40
    await assert_ledger_consistent(db, month.village.id)
    score_sum = (
        await db.execute(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.period_id == pid, LedgerEntry.counts_score
            )
        )
    ).scalar_one()
    assert score_sum == sum(scores.values())

    again = await client.post(f"{API}/periods/{pid}/approve", headers=month.admin)
    assert again.status_code == 409
    assert again.json()["code"] == "period.wrong_status"

    hidden = await client.get(f"{API}/periods/{pid}/results", headers=month.villager)
    assert hidden.status_code == 404
    # Until 公示 the villager's own ledger and balance don't show the month either.
    home = month.households[0].id
    own = await client.get(
        f"{API}/households/{home}/ledger", params={"period_id": pid}, headers=month.villager
    )
    assert own.json()["items"] == []
    early_balance = await client.get(
        f"{API}/households/{home}/balance", params={"year": YEAR}, headers=month.villager
    )
    assert (early_balance.json()["balance"], early_balance.json()["year_score"]) == (0, 0)
    staff_view = await client.get(
        f"{API}/households/{home}/balance", params={"year": YEAR}, headers=month.admin
    )
    assert staff_view.json()["balance"] == 115
    board = await client.get(f"{API}/periods/{pid}/results", headers=month.admin)
    rows = board.json()["rows"]
    assert [(r["number"], r["rank"], r["vetoed"]) for r in rows] == [
        ("01", 1, False),
        ("02", 1, False),
        ("03", None, True),
    ]
    assert rows[0]["head_name"] == "张00"

    published = await client.post(f"{API}/periods/{pid}/publish", headers=month.admin)
    assert (
        published.json()["objection_closes_on"] == (clock.today() + timedelta(days=7)).isoformat()
    )
    published_balance = await client.get(
        f"{API}/households/{home}/balance", params={"year": YEAR}, headers=month.villager
    )
    assert (published_balance.json()["balance"], published_balance.json()["year_score"]) == (
        115,
        115,
    )
    own = await client.get(
        f"{API}/households/{home}/ledger", params={"period_id": pid}, headers=month.villager
    )
    assert own.json()["items"]
    seen = await client.get(f"{API}/periods/{pid}/results", headers=month.villager)
    assert seen.status_code == 200
    assert seen.json()["rows"][0]["head_name"] == "张**"
    early = await client.post(f"{API}/periods/{pid}/close", headers=month.admin)
    assert early.status_code == 409
    assert early.json()["code"] == "period.objection_window_open"

    # 张堰's veto cancels the household's whole year: April's clean card still scores nothing.
    april = (
        await client.post(
            f"{API}/villages/{month.village.id}/periods",
            json={"starts_on": f"{YEAR}-04-01"},
            headers=month.admin,
        )
    ).json()
    for household in month.households:
        await fill_card(db, april["id"], household, month.rule_set_id)
    assert (
        await client.post(f"{API}/periods/{april['id']}/submit", headers=month.admin)
    ).status_code == 200
    assert (
        await client.post(f"{API}/periods/{april['id']}/approve", headers=month.admin)
    ).status_code == 200
    april_scores = dict(
        (
            await db.execute(
                select(HouseholdPeriodScore.household_id, HouseholdPeriodScore.vetoed).where(
                    HouseholdPeriodScore.period_id == april["id"]
                )
            )
        ).all()
    )
    assert [april_scores[h.id] for h in month.households] == [False, False, True]
    await assert_ledger_consistent(db, month.village.id)


@pytest.mark.parametrize(
    ("starts_on", "status", "code"),
    [
        (f"{YEAR}-03-15", 422, "period.not_period_start"),
        (f"{YEAR - 1}-03-01", 409, "period.no_rules"),
        ("2031-02-30", 422, "request.invalid"),
    ],
)
async def test_refused_openings_write_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    month: Month,
    starts_on: str,
    status: int,
    code: str,
) -> None:
    response = await client.post(
        f"{API}/villages/{month.village.id}/periods",
        json={"starts_on": starts_on},
        headers=month.admin,
    )
    assert response.status_code == status
    assert response.json()["code"] == code
    listing = await client.get(f"{API}/villages/{month.village.id}/periods", headers=month.admin)
    assert listing.json() == []


async def test_a_period_opens_once(client: httpx.AsyncClient, month: Month) -> None:
    first = await client.post(
        f"{API}/villages/{month.village.id}/periods",
        json={"starts_on": f"{YEAR}-04-01"},
        headers=month.admin,
    )
    assert first.status_code == 201
    second = await client.post(
        f"{API}/villages/{month.village.id}/periods",
        json={"starts_on": f"{YEAR}-04-01"},
        headers=month.admin,
    )
    assert second.status_code == 409
    assert second.json()["code"] == "period.exists"


async def test_deadlines_come_from_the_policy_and_lateness_shows(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    supervisor = await f.create_person(db)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    headers = await f.login_headers(db, settings, admin)
    supervisor_headers = await f.login_headers(db, settings, supervisor)
    # Scored by the 20th (旧县); published by the 10th of the next month (翁源).
    deadlines = {
        "deadlines": {
            "scoring_due": {"day": 20},
            "publication_due": {"day": 10, "months_after_period_end": 1},
        }
    }
    await approved_rules(client, village, headers, supervisor_headers, 2025, deadlines)
    opened = await client.post(
        f"{API}/villages/{village.id}/periods", json={"starts_on": "2025-12-01"}, headers=headers
    )
    period = opened.json()
    assert (period["scoring_due_on"], period["publication_due_on"]) == ("2025-12-20", "2026-01-10")
    listing = await client.get(f"{API}/villages/{village.id}/periods", headers=supervisor_headers)
    [seen] = listing.json()
    assert seen["scoring_late"] is (clock.today() > date(2025, 12, 20))
    assert seen["publication_late"] is (clock.today() > date(2026, 1, 10))
