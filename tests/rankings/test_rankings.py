"""Rankings as each seed ranks: stored at publication, read by key and page."""

from datetime import date
from io import BytesIO

import httpx
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models import HouseholdPeriodScore, HouseholdRank, Participation, RankingSummary, RankSpan
from app.schemas.rules import VetoScope
from app.services.rankings import refresh_period_ranks
from tests import factories as f
from tests.rankings.conftest import (
    API,
    YEAR,
    approved_period,
    households,
    publish,
    published_period,
    scene,
    seed_policy,
    villager_of,
)


def ranks(body: dict[str, object], key: str = "rows") -> list[tuple[str, int, int | None]]:
    rows = body[key]
    assert isinstance(rows, list)
    return [(r["household_id"], r["score"], r["rank"]) for r in rows]


async def test_wengyuan_ranks_within_the_village_group_with_a_tie_at_15th(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    s = await scene(db, settings, seed_policy("wengyuan-governance-2023"), groups=2)
    east, west = s.groups
    homes = await households(db, s, 18, east)
    # 100, 99, ... 87 for the first 14; then two share 86 (15th), then 85 and 84.
    scores = [100 - i for i in range(14)] + [86, 86, 85, 84]
    strong = await households(db, s, 10, west)
    period = await published_period(
        client,
        db,
        s,
        date(YEAR, 3, 1),
        [*zip(homes, scores, strict=True), *((h, 99) for h in strong)],
    )

    # The notice board of the east group: ranks in the group, not in the village.
    first = await client.get(
        f"{API}/periods/{period.id}/results",
        params={"group_id": str(east.id), "limit": 10},
        headers=s.admin,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["rank_within"] == "village_group"
    assert [r["rank"] for r in body["rows"]] == list(range(1, 11))
    second = await client.get(
        f"{API}/periods/{period.id}/results",
        params={"group_id": str(east.id), "limit": 10, "cursor": body["next_cursor"]},
        headers=s.admin,
    )
    rest = second.json()
    assert second.json()["next_cursor"] is None
    assert [(r["score"], r["rank"]) for r in rest["rows"]] == [
        (90, 11), (89, 12), (88, 13), (87, 14), (86, 15), (86, 15), (85, 17), (84, 18)
    ]  # fmt: skip
    # The tied pair is listed by 户号, and their rank in the village counts the west group.
    tied = [r for r in rest["rows"] if r["score"] == 86]
    assert [r["number"] for r in tied] == sorted(h.number for h in homes[14:16])
    assert {r["rank_in_village"] for r in tied} == {25}
    assert all(r["village_group_id"] == str(east.id) for r in body["rows"] + rest["rows"])

    # Without a group filter: group after group, each ranked within itself.
    whole = await client.get(
        f"{API}/periods/{period.id}/results", params={"limit": 200}, headers=s.admin
    )
    groups = [r["village_group_id"] for r in whole.json()["rows"]]
    assert len(groups) == 28
    assert groups == sorted(groups, key=groups.index)
    assert {r["rank"] for r in whole.json()["rows"] if r["village_group_id"] == str(west.id)} == {1}

    # 光荣榜 top 15 of the east group shows the tie whole: sixteen households.
    roll = await client.get(
        f"{API}/villages/{s.village.id}/honour-roll",
        params={"span": "month", "year": YEAR, "number": 3, "top": 15},
        headers=await villager_of(db, settings, homes[0]),
    )
    assert roll.status_code == 200, roll.text
    boards = {b["village_group_id"]: b for b in roll.json()["boards"]}
    assert len(boards[str(east.id)]["rows"]) == 16
    assert boards[str(east.id)]["rows"][-1]["rank"] == 15
    assert boards[str(east.id)]["rows"][0]["head_name"] == "张**"

    # The shop's top-15 rule reads the same stored group rank.
    row = await db.get(HouseholdRank, (homes[15].id, YEAR, RankSpan.MONTH, 3))
    assert row is not None
    assert (row.group_rank, row.group_ranked) == (15, 18)


async def test_zhangyan_year_ranking_leaves_out_a_household_vetoed_for_the_year(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    policy = seed_policy("zhangyan-governance-2024")
    assert policy.veto_scope is VetoScope.YEAR
    s = await scene(db, settings, policy)
    a, b, c, vetoed = await households(db, s, 4, s.groups[0])
    await published_period(
        client, db, s, date(YEAR, 1, 1), [(a, 50), (b, 60), (c, 40), (vetoed, 90)]
    )
    # February: the veto (approval marks every later month of the year vetoed too).
    await published_period(
        client, db, s, date(YEAR, 2, 1), [(a, 50), (b, 30), (c, 40), (vetoed, (0, True))]
    )
    villager = await villager_of(db, settings, a)
    year = await client.get(
        f"{API}/villages/{s.village.id}/rankings",
        params={"span": "year", "year": YEAR},
        headers=villager,
    )
    assert year.status_code == 200, year.text
    body = year.json()
    assert ranks(body, "items") == [
        (str(a.id), 100, 1), (str(b.id), 90, 2), (str(c.id), 80, 3)
    ]  # fmt: skip
    assert body["ranked"] == 3
    assert (body["own"]["rank"], body["own"]["of"]) == (1, 3)
    # Staff see the vetoed household, marked and unranked, after the ranked ones.
    staff = await client.get(
        f"{API}/villages/{s.village.id}/rankings",
        params={"span": "year", "year": YEAR},
        headers=s.admin,
    )
    assert ranks(staff.json(), "items")[-1] == (str(vetoed.id), 90, None)
    assert staff.json()["items"][-1]["vetoed"] is True
    # January alone still ranks it: the veto came in February.
    january = await client.get(
        f"{API}/villages/{s.village.id}/rankings",
        params={"span": "month", "year": YEAR, "number": 1},
        headers=villager,
    )
    assert ranks(january.json(), "items")[0] == (str(vetoed.id), 90, 1)
    standing = await client.get(
        f"{API}/households/{vetoed.id}/standing", params={"year": YEAR}, headers=s.admin
    )
    assert (standing.json()["rank_in_village"], standing.json()["ranked_households"]) == (None, 3)


async def test_jiuxian_month_veto_leaves_the_household_out_of_that_month_only(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    policy = seed_policy("jiuxian-living-environment-2022")
    assert policy.veto_scope is VetoScope.PERIOD
    s = await scene(db, settings, policy)
    a, b, vetoed = await households(db, s, 3, s.groups[0])
    await published_period(client, db, s, date(YEAR, 1, 1), [(a, 10), (b, 8), (vetoed, (3, True))])
    await published_period(client, db, s, date(YEAR, 2, 1), [(a, 5), (b, 8), (vetoed, 12)])
    villager = await villager_of(db, settings, a)

    async def board(span: str, number: int | None = None) -> list[tuple[str, int, int | None]]:
        params: dict[str, object] = {"span": span, "year": YEAR}
        if number:
            params["number"] = number
        response = await client.get(
            f"{API}/villages/{s.village.id}/rankings", params=params, headers=villager
        )
        assert response.status_code == 200, response.text
        return ranks(response.json(), "items")

    assert await board("month", 1) == [(str(a.id), 10, 1), (str(b.id), 8, 2)]
    assert await board("month", 2) == [
        (str(vetoed.id), 12, 1),
        (str(b.id), 8, 2),
        (str(a.id), 5, 3),
    ]
    # The quarter and the year sum published months; the January veto costs January only.
    assert await board("quarter", 1) == [
        (str(b.id), 16, 1),
        (str(a.id), 15, 2),
        (str(vetoed.id), 15, 2),
    ]  # fmt: skip  (a tie is listed by 户号)
    assert await board("year") == await board("quarter", 1)


async def test_pages_names_and_the_callers_own_row(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    s = await scene(db, settings, seed_policy("jiuxian-living-environment-2022"))
    homes = await households(db, s, 7, s.groups[0])
    left = await households(db, s, 1, s.groups[0], participation=Participation.SUSPENDED)
    period = await approved_period(
        db, s, date(YEAR, 5, 1), [*((h, 10 + i) for i, h in enumerate(homes)), (left[0], 99)]
    )
    villager = await villager_of(db, settings, homes[1])
    params = {"span": "month", "year": YEAR, "number": 5, "limit": 3}
    url = f"{API}/villages/{s.village.id}/rankings"
    # Approved, not yet published: staff preview it, villagers do not see it.
    hidden = await client.get(url, params=params, headers=villager)
    assert hidden.status_code == 200
    assert (hidden.json()["items"], hidden.json()["own"], hidden.json()["published"]) == (
        [],
        None,
        False,
    )
    preview = await client.get(url, params=params, headers=s.admin)
    assert (len(preview.json()["items"]), preview.json()["published"]) == (3, False)
    await publish(client, s, period)

    seen: list[dict[str, object]] = []
    cursor = None
    for _ in range(3):
        page = await client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=villager
        )
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        own = page.json()["own"]
        assert (own["household_id"], own["rank"], own["of"]) == (str(homes[1].id), 6, 7)
    assert cursor is None
    assert [r["rank"] for r in seen] == list(range(1, 8))  # the suspended household is left out
    assert {r["head_name"] for r in seen} == {"张**"}
    staff = await client.get(url, params=params, headers=s.admin)
    assert staff.json()["items"][0]["head_name"] == "张三丰"
    bad = await client.get(url, params={**params, "cursor": "bm90LWEtbnVtYmVy"}, headers=villager)
    assert (bad.status_code, bad.json()["code"]) == (400, "pagination.bad_cursor")
    wrong = await client.get(url, params={"span": "quarter", "number": 5}, headers=villager)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "ranking.bad_span")


async def test_town_compares_villages_not_their_households(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    s = await scene(db, settings, seed_policy("jiuxian-living-environment-2022"))
    town = await db.get(f.Town, s.village.town_id)
    assert town is not None
    homes = await households(db, s, 4, s.groups[0])
    await households(db, s, 1, s.groups[0], participation=Participation.PENDING)
    await published_period(
        client, db, s, date(YEAR, 1, 1), list(zip(homes, (10, 20, 30, 5), strict=True))
    )
    other = await scene(db, settings, seed_policy("jiuxian-living-environment-2022"), town=town)
    neighbour_village = other.village
    other_homes = await households(db, other, 2)
    await published_period(
        client, db, other, date(YEAR, 1, 1), [(other_homes[0], 40), (other_homes[1], 40)]
    )

    villager = await villager_of(db, settings, homes[0])
    response = await client.get(
        f"{API}/towns/{town.id}/rankings",
        params={"span": "month", "year": YEAR, "number": 1},
        headers=villager,
    )
    assert response.status_code == 200, response.text
    villages = response.json()["villages"]
    assert [(v["village_id"], v["rank"], v["average"], v["median"]) for v in villages] == [
        (str(neighbour_village.id), 1, "40.00", "40.00"),
        (str(s.village.id), 2, "16.25", "15.00"),
    ]
    mine = villages[1]
    assert (mine["households"], mine["participating"], mine["ranked"]) == (5, 4, 4)
    assert mine["participation"] == "0.80"
    assert "items" not in response.json()
    assert "household_id" not in str(response.json())
    stranger = await client.get(
        f"{API}/towns/{f.random_id()}/rankings", params={"span": "year"}, headers=villager
    )
    assert (stranger.status_code, stranger.json()["code"]) == (404, "town.not_found")
    stored = await db.execute(
        select(func.count()).select_from(RankingSummary).where(RankingSummary.town_id == town.id)
    )
    assert stored.scalar_one() == 6  # month, quarter and year for each village


async def test_the_seeds_forms(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    s = await scene(db, settings, seed_policy("wengyuan-governance-2023"), groups=2)
    east, west = s.groups
    a, b = await households(db, s, 2, east)
    c = (await households(db, s, 1, west))[0]
    await published_period(client, db, s, date(YEAR, 1, 1), [(a, 90), (b, 95), (c, 99)])
    await published_period(client, db, s, date(YEAR, 2, 1), [(a, 100), (b, 80), (c, 70)])
    url = f"{API}/villages/{s.village.id}/ranking-forms"

    def table(response: httpx.Response) -> list[tuple[object, ...]]:
        assert response.status_code == 200, response.text
        sheet = load_workbook(BytesIO(response.content)).active
        assert sheet is not None
        return list(sheet.iter_rows(values_only=True))

    group = table(
        await client.get(
            url,
            params={"form": "group_summary", "year": YEAR, "number": 2, "group_id": str(east.id)},
            headers=s.admin,
        )
    )
    # February's score and rank in the group, and the year so far with its rank.
    assert [r[1:7] for r in group[2:]] == [
        (a.number, "张三丰", 100, 1, 190, 1),
        (b.number, "张三丰", 80, 2, 175, 2),
    ]
    ledger = table(await client.get(url, params={"year": YEAR, "number": 1}, headers=s.supervisor))
    assert [r[1] for r in ledger[2:]] == [c.number, b.number, a.number]
    quarter = table(
        await client.get(
            url, params={"form": "quarterly_summary", "year": YEAR, "number": 1}, headers=s.admin
        )
    )
    assert quarter[1][3:7] == ("1月", "2月", "3月", "季度合计")
    assert [r[3:8] for r in quarter[2:]] == [
        (90, 100, None, 190, 1),
        (95, 80, None, 175, 2),
        (99, 70, None, 169, 3),
    ]
    missing = await client.get(url, params={"form": "group_summary"}, headers=s.admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "village_group.not_found")


async def test_an_amended_published_result_is_ranked_again(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """What an upheld objection does after its correction: refresh_period_ranks again."""
    s = await scene(db, settings, seed_policy("jiuxian-living-environment-2022"))
    a, b = await households(db, s, 2, s.groups[0])
    period = await published_period(client, db, s, date(YEAR, 6, 1), [(a, 10), (b, 12)])
    score = await db.get(HouseholdPeriodScore, (a.id, period.id))
    assert score is not None
    score.score = 15
    await db.flush()
    await refresh_period_ranks(db, period.id)
    for span, number in ((RankSpan.MONTH, 6), (RankSpan.QUARTER, 2), (RankSpan.YEAR, 0)):
        row = await db.get(HouseholdRank, (a.id, YEAR, span, number), populate_existing=True)
        assert row is not None
        assert (row.score, row.village_rank) == (15, 1)
    summary = await db.get(RankingSummary, (s.village.id, YEAR, RankSpan.YEAR, 0))
    assert summary is not None
    assert (summary.published, summary.top_score, summary.ranked) == (True, 15, 2)


async def test_a_month_asked_without_its_number_is_the_latest_the_caller_may_see(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """As a phone opens the rankings: the latest published month for villagers, the latest
    approved one for staff; before anything is published, an empty list, not a refusal."""
    s = await scene(db, settings, seed_policy("jiuxian-living-environment-2022"))
    a, b = await households(db, s, 2, s.groups[0])
    villager = await villager_of(db, settings, a)
    url = f"{API}/villages/{s.village.id}/rankings"
    params = {"span": "month", "year": YEAR}

    nothing = await client.get(url, params=params, headers=villager)
    assert nothing.status_code == 200, nothing.text
    assert (nothing.json()["number"], nothing.json()["items"]) == (0, [])

    await published_period(client, db, s, date(YEAR, 1, 1), [(a, 10), (b, 8)])
    await published_period(client, db, s, date(YEAR, 2, 1), [(a, 5), (b, 8)])
    await approved_period(db, s, date(YEAR, 3, 1), [(a, 9), (b, 1)])

    seen = (await client.get(url, params=params, headers=villager)).json()
    assert seen["number"] == 2
    assert ranks(seen, "items") == [(str(b.id), 8, 1), (str(a.id), 5, 2)]
    staff = (await client.get(url, params=params, headers=s.admin)).json()
    assert (staff["number"], staff["published"]) == (3, False)
