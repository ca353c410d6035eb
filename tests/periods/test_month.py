"""A 张堰 village's whole month through the API, as the phones and the committee would do it."""

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import HouseholdPeriodScore, LedgerEntry, Role
from tests import factories as f
from tests.ledger.conftest import assert_ledger_consistent
from tests.periods.test_periods import API, YEAR, approved_rules


def full_card(items: list[dict[str, Any]], finding: str | None = None) -> dict[str, Any]:
    lines = [
        {
            "id": str(uuid.uuid4()),
            "rule_item_id": item["id"],
            "outcome": "finding" if item["code"] == finding else "compliant",
        }
        for item in items
    ]
    return {"id": str(uuid.uuid4()), "lines": lines}


async def test_open_score_with_retried_offline_batches_approve_publish(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    town = await f.create_town(db)
    village = await f.create_village(db, town)
    group = await f.create_group(db, village)
    admin, supervisor, scorer = [await f.create_person(db, village) for _ in range(3)]
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    await f.grant(db, supervisor, Role.TOWN_SUPERVISOR, town=town)
    await f.grant(db, scorer, Role.SCORER, village=village, groups=[group])
    households = [await f.create_household(db, village, group) for _ in range(6)]
    for household in households:
        await f.add_member(db, household, is_head=True)
    admin_h = await f.login_headers(db, settings, admin)
    scorer_h = await f.login_headers(db, settings, scorer)
    await approved_rules(
        client, village, admin_h, await f.login_headers(db, settings, supervisor), YEAR
    )

    period = (
        await client.post(
            f"{API}/villages/{village.id}/periods",
            json={"starts_on": f"{YEAR}-05-01"},
            headers=admin_h,
        )
    ).json()
    worklist = (await client.get(f"{API}/periods/{period['id']}/worklist", headers=scorer_h)).json()
    assert len(worklist["households"]) == 6
    items = worklist["items"]

    # Two cards saved one by one at the door, one of them saved twice (a retry with its key).
    for household in households[:2]:
        body, key = full_card(items, finding="1.2"), str(uuid.uuid4())
        url = f"{API}/periods/{period['id']}/households/{household.id}/scorecard"
        first = await client.put(url, json=body, headers={**scorer_h, "Idempotency-Key": key})
        again = await client.put(url, json=body, headers={**scorer_h, "Idempotency-Key": key})
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
    # The rest came back from a phone that was offline, uploaded twice over a bad line.
    batch = {
        "cards": [
            {
                "household_id": str(h.id),
                **full_card(items, finding="V1" if h is households[-1] else None),
            }
            for h in households[2:]
        ]
    }
    key = str(uuid.uuid4())
    for _ in range(2):
        uploaded = await client.post(
            f"{API}/periods/{period['id']}/scorecards/batch",
            json=batch,
            headers={**scorer_h, "Idempotency-Key": key},
        )
        assert uploaded.status_code == 200, uploaded.text

    assert (
        await client.post(f"{API}/periods/{period['id']}/submit", headers=admin_h)
    ).status_code == 200
    assert (
        await client.post(f"{API}/periods/{period['id']}/approve", headers=admin_h)
    ).status_code == 200
    assert (
        await client.post(f"{API}/periods/{period['id']}/publish", headers=admin_h)
    ).status_code == 200

    scores = dict(
        (
            await db.execute(
                select(HouseholdPeriodScore.household_id, HouseholdPeriodScore.score).where(
                    HouseholdPeriodScore.period_id == period["id"]
                )
            )
        ).all()
    )
    # 115 inspection points; item 1.2 (宅前屋后保持干净, 10) was a finding for the first two;
    # the last household's veto cancels its month.
    assert [scores[h.id] for h in households] == [105, 105, 115, 115, 115, 0]
    await assert_ledger_consistent(db, village.id)
    posted = (
        await db.execute(
            select(func.sum(LedgerEntry.points)).where(
                LedgerEntry.period_id == period["id"], LedgerEntry.counts_score
            )
        )
    ).scalar_one()
    assert posted == sum(scores.values())
    verification = await client.get(
        f"{API}/villages/{village.id}/ledger/verification", headers=admin_h
    )
    assert verification.json()["ok"] is True
    balance = await client.get(
        f"{API}/households/{households[0].id}/balance", params={"year": YEAR}, headers=admin_h
    )
    assert balance.json() == {
        "household_id": str(households[0].id),
        "year": YEAR,
        "balance": 105,
        "year_score": 105,
    }
    # The 积分明细 reads in the rule sheet's order.
    sheet = (await client.get(f"{API}/rule-sets/{period['rule_set_id']}", headers=admin_h)).json()
    sheet_codes = [
        item["code"]
        for root in sheet["categories"]
        for category in [root, *root["children"]]
        for item in category["items"]
        if item["kind"] == "inspection"
    ]
    entries = await client.get(
        f"{API}/households/{households[2].id}/ledger",
        params={"period_id": period["id"], "kind": "inspection"},
        headers=admin_h,
    )
    assert [e["item_code"] for e in entries.json()["items"] if e["item_code"]] == sheet_codes
    # A correction after publication moves the period's score with the ledger.
    finding = entries.json()["items"][0]
    corrected = await client.post(
        f"{API}/ledger-entries/{finding['id']}/correction",
        json={"reason": "复核更正"},
        headers=admin_h,
    )
    assert corrected.status_code == 201
    after = await db.execute(
        select(HouseholdPeriodScore.score).where(
            HouseholdPeriodScore.household_id == households[2].id,
            HouseholdPeriodScore.period_id == period["id"],
        )
    )
    assert after.scalar_one() == 115 - finding["points"]
    await assert_ledger_consistent(db, village.id)
    late = await client.put(
        f"{API}/periods/{period['id']}/households/{households[0].id}/scorecard",
        json=full_card(items),
        headers=scorer_h,
    )
    assert late.status_code == 409
    assert late.json()["code"] == "period.not_open"
