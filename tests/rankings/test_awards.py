"""Year-end awards: 30% of each group's resident households, 20/30/50%, ties at boundaries."""

from datetime import date
from decimal import Decimal
from io import BytesIO

import httpx
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import AuditEntry, AwardEntry, Notification, NotificationKind
from app.services.awards import plan
from tests import factories as f
from tests.notifications.conftest import bound_villager
from tests.rankings.conftest import (
    API,
    YEAR,
    approved_period,
    households,
    published_period,
    scene,
    seed_policy,
    villager_of,
)

AWARDS = seed_policy("wengyuan-governance-2023").year_end_awards
assert AWARDS is not None


def test_21_households_give_6_places_and_a_tie_at_the_last_place_awards_both() -> None:
    # Ranks 1..5, then two share 6th: 6.3 places round to 6, split 1/2/3 (1.2 → 1, 3.0 → 3).
    scores = [100, 99, 98, 97, 96, 95, 95, *range(80, 66, -1)]
    assert len(scores) == 21
    result = plan(scores, AWARDS)
    assert (result.places_exact, result.places, result.level_places) == (
        Decimal("6.30"),
        6,
        [1, 2, 3],
    )
    assert result.levels[:8] == [0, 1, 1, 2, 2, 2, 2, None]
    # Database order never decides: the same scores in another order give the same levels.
    assert plan(list(reversed(scores)), AWARDS).levels[::-1] == result.levels


def test_20_households_with_a_tie_for_first() -> None:
    scores = [100, 100, *range(90, 72, -1)]
    assert len(scores) == 20
    result = plan(scores, AWARDS)
    assert (result.places_exact, result.places, result.level_places) == (
        Decimal("6.00"),
        6,
        [1, 2, 3],
    )
    # Both firsts take the first prize; the second prize starts after them (rank 3), and the
    # third prize keeps its three places: six households in all.
    assert result.levels[:7] == [0, 0, 1, 2, 2, 2, None]


def test_7_households_give_2_places_and_no_first_prize() -> None:
    scores = [90, 85, 85, 80, 70, 60, 50]
    result = plan(scores, AWARDS)
    assert (result.places_exact, result.places, result.level_places) == (
        Decimal("2.10"),
        2,
        [0, 1, 1],
    )
    # The tie at 2nd (the last place) awards both tied households.
    assert result.levels == [1, 2, 2, None, None, None, None]


async def test_draft_approve_publish_and_export(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    s = await scene(db, settings, seed_policy("wengyuan-governance-2023"), groups=2)
    east, west = s.groups
    homes = await households(db, s, 7, east)
    away = await households(db, s, 1, east, has_resident=False)
    others = await households(db, s, 4, west)
    scores = [(h, 90 - i) for i, h in enumerate(homes)] + [(away[0], 100)]
    scores += [(h, 80) for h in others]
    await published_period(client, db, s, date(YEAR, 1, 1), scores)
    pending = await approved_period(db, s, date(YEAR, 2, 1), scores)

    url = f"{API}/villages/{s.village.id}/awards/{YEAR}"
    early = await client.post(f"{url}/draft", headers=s.admin)
    assert (early.status_code, early.json()["code"], early.json()["periods"]) == (
        409,
        "award.periods_pending",
        [2],
    )
    assert (await client.post(f"{url}/approve", headers=s.admin)).json()["code"] == (
        "award.not_computed"
    )
    await client.post(f"{API}/periods/{pending.id}/publish", headers=s.admin)

    draft = await client.post(f"{url}/draft", headers=s.admin)
    assert draft.status_code == 200, draft.text
    body = draft.json()
    scopes = {c["village_group_id"]: c for c in body["scopes"]}
    # East: 7 resident households (the one living away is not counted): 2.1 → 2 places.
    assert (scopes[str(east.id)]["eligible"], scopes[str(east.id)]["places"]) == (7, 2)
    # West: four tie; 1.2 → 1 place, a second prize (1 × (20% + 30%) = 0.5 → 1), and the
    # tie at it awards all four.
    assert [lv["places"] for lv in scopes[str(west.id)]["levels"]] == [0, 1, 0]
    assert [lv["awarded"] for lv in scopes[str(west.id)]["levels"]] == [0, 4, 0]
    assert body["rounding"]
    assert body["tie_rule"]
    east_rows = [r for r in body["rows"] if r["village_group_id"] == str(east.id)]
    assert [(r["household_id"], r["level_name"]) for r in east_rows] == [
        (str(homes[0].id), "二等奖"),
        (str(homes[1].id), "三等奖"),
    ]
    assert str(away[0].id) not in str(body["rows"])

    person = await bound_villager(db, s.village)
    await f.add_member(db, homes[3], person)
    villager = await villager_of(db, settings, homes[2])
    assert (
        await client.get(f"{API}/villages/{s.village.id}/awards", headers=villager)
    ).json() == []
    assert (await client.post(f"{url}/publish", headers=s.admin)).json()[
        "code"
    ] == "award.wrong_status"
    approved = await client.post(f"{url}/approve", headers=s.admin)
    assert approved.json()["status"] == "approved"
    again = await client.post(f"{url}/draft", headers=s.admin)
    assert (again.status_code, again.json()["code"]) == (409, "award.wrong_status")
    published = await client.post(f"{url}/publish", headers=s.admin)
    assert published.json()["status"] == "published"

    actions = (
        await db.execute(
            select(AuditEntry.action).where(AuditEntry.object_id == published.json()["id"])
        )
    ).scalars()
    assert sorted(actions) == ["award_list.approve", "award_list.publish"]
    [message] = (await db.execute(select(Notification))).scalars()
    assert (message.kind, message.person_id) == (NotificationKind.AWARD_PUBLISHED, person.id)
    seen = (await client.get(f"{API}/villages/{s.village.id}/awards", headers=villager)).json()
    assert seen[0]["rows"][0]["head_name"] == "张**"
    stored = (await db.execute(select(AwardEntry))).scalars().all()
    assert len(stored) == 6

    sheet = await client.get(f"{url}/xlsx", headers=s.admin)
    assert sheet.status_code == 200
    rows = list(load_workbook(BytesIO(sheet.content)).active.iter_rows(values_only=True))
    assert rows[1] == ("序号", "村小组", "户号", "户主", "全年累计积分", "组内名次", "奖项")
    awarded = {row[3:] for row in rows[2:8]}
    assert awarded == {
        ("张三丰", 180, 1, "二等奖"),
        ("张三丰", 178, 2, "三等奖"),
        ("张三丰", 160, 1, "二等奖"),
    }
    assert rows[8][0] is None  # a blank row, then how each scope's places were counted
