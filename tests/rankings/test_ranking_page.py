"""The village ranking's JSON, written by PostgreSQL on the hot-read path, is byte for byte what
RankingPage wrote when the page was put together from the stored ranks through the ORM
(`rankings.board` and `rankings.ranked_rows`, which the XLSX forms still read)."""

import uuid
from dataclasses import replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import Participation, RankingSummary, RankSpan, Role, Village
from app.pagination import MAX_LIMIT, PageParams
from app.schemas.rankings import RankingPage, RankScope, TownRanking, VillageComparison
from app.schemas.rules import VetoedInRankings
from app.security import ACCESS, Principal, decode_token, load_principal
from app.services import rankings
from tests import factories as f
from tests.rankings.conftest import (
    API,
    YEAR,
    Scene,
    approved_period,
    households,
    published_period,
    scene,
    seed_policy,
    villager_of,
)


async def model_page(
    db: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    *,
    span: RankSpan,
    number: int | None,
    scope: RankScope | None,
    group_id: uuid.UUID | None,
    params: PageParams,
) -> str:
    """The page as the ORM read and pydantic wrote it before the read was one statement."""
    village, found = await rankings.board(db, principal, village_id, span, YEAR, number)
    if group_id is not None:
        scope = RankScope.VILLAGE_GROUP
    if found is None:
        page = RankingPage(
            village_id=village.id,
            span=span,
            year=YEAR,
            number=0 if number is None else rankings.span_key(span, number),
            scope=scope or RankScope.VILLAGE,
            group_id=group_id,
            published=False,
            ranked=0,
            items=[],
        )
        return page.model_dump_json()
    if scope is None:
        scope = RankScope.VILLAGE_GROUP if found.summary.ranks_by_group else RankScope.VILLAGE
    items, cursor = await rankings.ranked_rows(
        db, found, scope=scope, group_id=group_id, params=params
    )
    own = None
    if principal.household_village_id == village.id:
        # The caller's own row: in full, vetoed or not, wherever it falls.
        everyone, _ = await rankings.ranked_rows(
            db,
            replace(found, staff=True),
            scope=scope,
            group_id=None,
            params=PageParams(limit=MAX_LIMIT),
        )
        own = next((r for r in everyone if r.household_id == principal.household_id), None)
    page = RankingPage(
        village_id=village.id,
        span=span,
        year=YEAR,
        number=found.number,
        scope=scope,
        group_id=group_id,
        published=found.summary.published,
        ranked=found.summary.ranked,
        items=items,
        next_cursor=cursor,
        own=own,
    )
    return page.model_dump_json()


async def principal_of(db: AsyncSession, settings: Settings, headers: dict[str, str]) -> Principal:
    claims = decode_token(settings, headers["Authorization"].removeprefix("Bearer "), kind=ACCESS)
    return await load_principal(db, uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]))


async def callers(db: AsyncSession, settings: Settings, s: Scene, home: Any) -> dict[str, Any]:
    """A villager of the village, its admin, the town's supervisor, the district's admin and
    a scorer of the second group only (包片)."""
    district = await f.create_person(db)
    await f.grant(db, district, Role.DISTRICT_ADMIN)
    scorer = await f.create_person(db, s.village)
    await f.grant(db, scorer, Role.SCORER, village=s.village, groups=[s.groups[1]])
    return {
        "villager": await villager_of(db, settings, home),
        "village admin": s.admin,
        "town supervisor": s.supervisor,
        "district admin": await f.login_headers(db, settings, district),
        "group scorer": await f.login_headers(db, settings, scorer),
    }


@pytest.mark.parametrize(
    ("code", "changes"),
    [
        ("wengyuan-governance-2023", {}),  # ranks by village group
        ("zhangyan-governance-2024", {}),  # a veto costs the year
        ("jiuxian-living-environment-2022", {"vetoed_in_rankings": VetoedInRankings.MARK}),
    ],
)
async def test_each_page_is_what_the_model_wrote(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    code: str,
    changes: dict[str, object],
) -> None:
    s = await scene(db, settings, seed_policy(code, **changes), groups=2)
    east, west = s.groups
    homes = [*await households(db, s, 5, east), *await households(db, s, 4, west)]
    # Heads whose names the notice board marks differently: one character, none at all.
    one = await f.create_household(db, s.village, west)
    await f.add_member(db, one, await f.create_person(db, s.village, name="李"), is_head=True)
    headless = await f.create_household(db, s.village, east)
    homes += [one, headless]
    for month in (1, 2, 3):
        scores: list[tuple[Any, int | tuple[int, bool]]] = [
            (h, (10 * (i % 4) + month, i == 3 and month == 2)) for i, h in enumerate(homes)
        ]
        await published_period(client, db, s, date(YEAR, month, 1), scores)
    # April approved, not published: the staff's preview.
    await approved_period(db, s, date(YEAR, 4, 1), [(h, 7) for h in homes])
    asks: list[dict[str, Any]] = [
        {"span": "year"},
        {"span": "year", "scope": "village"},
        {"span": "year", "scope": "village_group"},
        {"span": "year", "group_id": str(east.id)},
        {"span": "quarter", "number": 1},
        {"span": "quarter"},
        {"span": "quarter", "number": 2},
        {"span": "month", "number": 2, "group_id": str(west.id), "scope": "village"},
        {"span": "month"},
        {"span": "month", "number": 4},
        {"span": "month", "number": 9, "group_id": str(east.id)},
    ]
    compared = 0
    for name, headers in (await callers(db, settings, s, homes[3])).items():
        principal = await principal_of(db, settings, headers)
        for ask in asks:
            cursor = None
            while True:
                params = {**ask, "year": YEAR, "limit": 4, **({"cursor": cursor} if cursor else {})}
                response = await client.get(
                    f"{API}/villages/{s.village.id}/rankings", params=params, headers=headers
                )
                assert response.status_code == 200, (name, params, response.text)
                expected = await model_page(
                    db,
                    principal,
                    s.village.id,
                    span=RankSpan(ask["span"]),
                    number=ask.get("number"),
                    scope=RankScope(ask["scope"]) if "scope" in ask else None,
                    group_id=uuid.UUID(ask["group_id"]) if "group_id" in ask else None,
                    params=PageParams(cursor=cursor, limit=4),
                )
                assert response.text == expected, (name, params)
                compared += 1
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    break
    # Pages walked, quarters with their months, the caller's own row, vetoed rows, previews.
    assert compared > 5 * len(asks)


async def test_problems_keep_their_order(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    """404 village, then 422 span, then 404 group, then 400 cursor only where there is a list;
    a village outside the caller's scope is not found."""
    s = await scene(db, settings, seed_policy("wengyuan-governance-2023"))
    [home] = await households(db, s, 1, s.groups[0])
    await published_period(client, db, s, date(YEAR, 1, 1), [(home, 10)])
    url = f"{API}/villages/{s.village.id}/rankings"
    other = await scene(db, settings, seed_policy("wengyuan-governance-2023"))
    stranger = await villager_of(db, settings, (await households(db, other, 1))[0])
    bad = "bm90LWEtbnVtYmVy"

    async def problem(headers: dict[str, str], **params: object) -> tuple[int, str | None]:
        response = await client.get(url, params={"year": YEAR, **params}, headers=headers)
        return response.status_code, response.json().get("code")

    assert await problem(stranger, span="quarter", number=5) == (404, "village.not_found")
    assert await problem(s.admin, span="quarter", number=5, group_id=str(f.random_id())) == (
        422,
        "ranking.bad_span",
    )
    assert await problem(s.admin, group_id=str(f.random_id()), cursor=bad) == (
        404,
        "village_group.not_found",
    )
    assert await problem(s.admin, cursor=bad) == (400, "pagination.bad_cursor")
    # Nothing stored for September: no list, so no cursor to refuse.
    assert await problem(s.admin, span="month", number=9, cursor=bad) == (200, None)


async def model_town(db: AsyncSession, town_id: uuid.UUID, span: RankSpan, number: int) -> str:
    """The town's comparison as the ORM read and pydantic wrote it before it was one
    statement."""
    rows = (
        await db.execute(
            select(RankingSummary, col(Village.name))
            .join(Village, col(Village.id) == col(RankingSummary.village_id))
            .where(
                col(RankingSummary.town_id) == town_id,
                col(RankingSummary.year) == YEAR,
                col(RankingSummary.span) == span,
                col(RankingSummary.number) == number,
                col(RankingSummary.published),
            )
            .order_by(col(RankingSummary.average).desc().nulls_last(), col(Village.name))
        )
    ).all()
    villages: list[VillageComparison] = []
    rank, previous = 0, None
    for position, (summary, name) in enumerate(rows, start=1):
        if summary.average != previous:
            rank, previous = position, summary.average
        villages.append(
            VillageComparison(
                village_id=summary.village_id,
                name=name,
                households=summary.households,
                participating=summary.participating,
                participation=(
                    (Decimal(summary.participating) / summary.households).quantize(
                        Decimal("0.01"), rounding=ROUND_HALF_UP
                    )
                    if summary.households
                    else None
                ),
                ranked=summary.ranked,
                vetoed=summary.vetoed,
                average=summary.average,
                median=summary.median,
                top_score=summary.top_score,
                rank=rank if summary.average is not None else None,
            )
        )
    page = TownRanking(town_id=town_id, span=span, year=YEAR, number=number, villages=villages)
    return page.model_dump_json()


async def test_the_towns_comparison_is_what_the_model_wrote(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    policy = seed_policy("jiuxian-living-environment-2022")
    first = await scene(db, settings, policy)
    town = await db.get(f.Town, first.village.town_id)
    assert town is not None
    tied = await scene(db, settings, policy, town=town)
    vetoed = await scene(db, settings, policy, town=town)
    a = await households(db, first, 3)
    await households(db, first, 3, participation=Participation.PENDING)
    b = await households(db, tied, 2)
    c = await households(db, vetoed, 2)
    # 3 of 6 households take part (0.50), the averages tie at 42.00, and a village whose
    # households are all vetoed in January has no average and no rank for it.
    await published_period(
        client, db, first, date(YEAR, 1, 1), [(a[0], 40), (a[1], 42), (a[2], 44)]
    )
    await published_period(client, db, tied, date(YEAR, 1, 1), [(b[0], 41), (b[1], 43)])
    await published_period(client, db, tied, date(YEAR, 2, 1), [(b[0], 7), (b[1], 8)])
    await published_period(client, db, vetoed, date(YEAR, 1, 1), [(h, (5, True)) for h in c])
    other = await f.create_person(db)
    await f.grant(db, other, Role.DISTRICT_ADMIN)
    callers = [
        await villager_of(db, settings, a[0]),
        first.supervisor,
        first.admin,
        await f.login_headers(db, settings, other),
    ]
    asks = [(RankSpan.MONTH, 1), (RankSpan.MONTH, 2), (RankSpan.QUARTER, 1), (RankSpan.YEAR, 0)]
    for headers in callers:
        for span, number in asks:
            response = await client.get(
                f"{API}/towns/{town.id}/rankings",
                params={"span": span.value, "year": YEAR, **({"number": number} if number else {})},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            assert response.text == await model_town(db, town.id, span, number)
    january = (
        await client.get(
            f"{API}/towns/{town.id}/rankings",
            params={"span": "month", "year": YEAR, "number": 1},
            headers=callers[0],
        )
    ).json()["villages"]
    assert [(v["rank"], v["average"]) for v in january] == [
        (1, "42.00"),
        (1, "42.00"),
        (None, None),
    ]
    assert sorted(v["participation"] for v in january) == ["0.50", "1.00", "1.00"]
    elsewhere = await scene(db, settings, policy)
    stranger = await villager_of(db, settings, (await households(db, elsewhere, 1))[0])
    refused = await client.get(f"{API}/towns/{town.id}/rankings", headers=stranger)
    assert (refused.status_code, refused.json()["code"]) == (404, "town.not_found")
