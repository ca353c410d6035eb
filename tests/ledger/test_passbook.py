"""The household's 积分存折 as XLSX: the ledger's entries of a year, in order, with a running
结余 carried in from the years before that ends at the household's balance."""

from datetime import datetime
from io import BytesIO
from typing import Any

import httpx
from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.config import Settings
from app.models import (
    Household,
    HouseholdMember,
    LedgerKind,
    Person,
    Role,
    RuleItem,
    YearEndClose,
)
from app.services import ledger
from tests import factories as f
from tests.auth.conftest import assert_problem
from tests.ledger.conftest import API, THIS_YEAR, Scene, balance_of, post_entry, score_of

LAST_YEAR = THIS_YEAR - 1
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ("日期", "摘要", "序号", "积分变动", "计入排名", "结余")
Rows = list[tuple[Any, ...]]


async def post_item(
    db: AsyncSession, household: Household, item: RuleItem, *, year: int = THIS_YEAR
) -> dict[str, Any]:
    """An inspection entry scored against a rule item, so it carries the item's code and title."""
    [row] = await ledger.post(
        db,
        household.village_id,
        [
            ledger.NewEntry(
                household_id=household.id,
                kind=LedgerKind.INSPECTION,
                points=item.points,
                counts_score=True,
                counts_balance=True,
                year=year,
                source_type="test",
                rule_item=item,
            )
        ],
    )
    return row


async def post_memo(
    db: AsyncSession, household: Household, points: int, memo: str, kind: LedgerKind
) -> None:
    await ledger.post(
        db,
        household.village_id,
        [
            ledger.NewEntry(
                household_id=household.id,
                kind=kind,
                points=points,
                counts_score=kind is not LedgerKind.REDEMPTION,
                counts_balance=True,
                year=THIS_YEAR,
                source_type="test",
                memo=memo,
            )
        ],
    )


async def passbook(
    client: httpx.AsyncClient, household: Household, headers: dict[str, str], **query: object
) -> httpx.Response:
    return await client.get(
        f"{API}/households/{household.id}/passbook", params=query, headers=headers
    )


def sheet_rows(response: httpx.Response) -> Rows:
    assert response.status_code == 200, response.text
    workbook = load_workbook(BytesIO(response.content))
    assert workbook.sheetnames == ["积分存折"]
    rows: Rows = list(workbook["积分存折"].iter_rows(values_only=True))
    assert rows[1] == HEADER
    return rows


def lines(rows: Rows) -> list[tuple[Any, ...]]:
    """The entry rows, without the date (checked apart): 摘要, 序号, 积分变动, 计入排名, 结余."""
    return [row[1:] for row in rows[3:-1]]


async def head_name(db: AsyncSession, household: Household) -> str:
    name = await db.scalar(
        select(col(Person.name))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(col(HouseholdMember.household_id) == household.id, col(HouseholdMember.is_head))
    )
    assert name is not None
    return name


async def seed(db: AsyncSession, scene: Scene) -> dict[str, Any]:
    """Two years of the villager's household among the neighbour's entries.

    Last year: +10 and +5 that count for both, +4 for the score only, a -3 redemption: a
    balance of 12 carried in. This year: an inspection of item 1.1 (+10), a score-only bonus
    (+6), a redemption (-2), and later the inspection corrected (-10).
    """
    _, _, item = await f.create_rule_set(db, scene.village, year=THIS_YEAR)
    await post_entry(db, scene.neighbour, 50, year=LAST_YEAR)
    await post_entry(db, scene.household, 10, kind=LedgerKind.INSPECTION, year=LAST_YEAR)
    await post_entry(db, scene.household, 5, year=LAST_YEAR)
    await post_entry(db, scene.household, 4, year=LAST_YEAR, counts_balance=False)
    await post_entry(
        db, scene.household, -3, kind=LedgerKind.REDEMPTION, year=LAST_YEAR, counts_score=False
    )
    # Last year closed with its points carried over, so this year's spend is this year's.
    db.add(
        YearEndClose(
            village_id=scene.village.id, year=LAST_YEAR, carried_over=True,
            households_expired=0, points_expired=0,
        )
    )  # fmt: skip
    await db.flush()
    inspection = await post_item(db, scene.household, item)
    await post_entry(db, scene.neighbour, 7)
    await post_entry(db, scene.household, 6, counts_balance=False)
    await post_entry(db, scene.household, -2, kind=LedgerKind.REDEMPTION, counts_score=False)
    return inspection


async def test_the_passbook_shows_the_years_entries_with_a_running_balance(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    inspection = await seed(db, scene)
    corrected = await client.post(
        f"{API}/ledger-entries/{inspection['id']}/correction",
        json={"reason": "录入错误"},
        headers=scene.admin_headers,
    )
    assert corrected.status_code == 201, corrected.text

    rows = sheet_rows(await passbook(client, scene.household, scene.admin_headers, year=THIS_YEAR))

    village, number = scene.village.name, scene.household.number
    head = await head_name(db, scene.household)
    assert rows[0] == (f"{village} 户号{number} 户主{head} {THIS_YEAR}年度积分存折",) + (None,) * 5
    assert rows[2] == (None, "上年结转", None, None, None, 12)
    assert lines(rows) == [
        ("考评：宅前屋后保持干净", "1.1", 10, "是", 22),
        ("加分", None, 6, "是", 22),
        ("兑换", None, -2, "否", 20),
        ("更正：宅前屋后保持干净（录入错误）", "1.1", -10, "是", 10),
    ]
    # Every entry was posted today; the date is the Asia/Shanghai day, as a date cell.
    days = [row[0] for row in rows[3:-1]]
    assert all(isinstance(day, datetime) for day in days)
    assert {day.date() for day in days} == {clock.today()}
    assert rows[-1] == (None, "本年合计（年度积分）", None, 6, None, 10)
    assert rows[-1][3] == await score_of(db, scene.household.id, THIS_YEAR)
    assert rows[-1][5] == rows[-2][5] == await balance_of(db, scene.household.id)


async def test_the_carried_in_balance_is_last_years_closing_balance(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await seed(db, scene)

    last = sheet_rows(await passbook(client, scene.household, scene.admin_headers, year=LAST_YEAR))
    this = sheet_rows(await passbook(client, scene.household, scene.admin_headers))

    assert last[0][0].endswith(f"{LAST_YEAR}年度积分存折")
    assert last[2][5] == 0
    assert lines(last) == [
        ("考评", None, 10, "是", 10),
        ("加分", None, 5, "是", 15),
        ("加分", None, 4, "是", 15),
        ("兑换", None, -3, "否", 12),
    ]
    assert last[-1][3:] == (19, None, 12)
    assert last[-1][3] == await score_of(db, scene.household.id, LAST_YEAR)
    # Without a year the passbook is this year's, and it opens where last year's closed.
    assert this[0][0].endswith(f"{THIS_YEAR}年度积分存折")
    assert this[2][5] == last[-1][5] == 12
    assert [line[4] for line in lines(this)] == [22, 22, 20]
    assert this[-1][3:] == (16, None, 20)
    assert this[-1][5] == await balance_of(db, scene.household.id)


async def test_memos_stand_in_for_items_and_stay_text(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_memo(db, scene.household, 3, "参加志愿服务", LedgerKind.BONUS)
    await post_memo(db, scene.household, 2, "=1+1", LedgerKind.ADJUSTMENT)
    response = await client.post(
        f"{API}/households/{scene.household.id}/adjustments",
        json={"points": -1, "reason": '=HYPERLINK("http://x")'},
        headers=scene.admin_headers,
    )
    assert response.status_code == 201, response.text

    rows = sheet_rows(await passbook(client, scene.household, scene.villager_headers))

    assert lines(rows) == [
        ("加分：参加志愿服务", None, 3, "是", 3),
        ("调整：=1+1", None, 2, "是", 5),
        ('调整：=HYPERLINK("http://x")', None, -1, "是", 4),
    ]


async def test_a_title_that_looks_like_a_formula_stays_text(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    village = await f.create_village(db, name='=HYPERLINK("http://x")')
    household = await f.create_household(db, village, number="=1+1")
    await post_entry(db, household, 5)
    district_admin = await f.create_person(db)
    await f.grant(db, district_admin, Role.DISTRICT_ADMIN)
    headers = await f.login_headers(db, settings, district_admin)

    response = await passbook(client, household, headers)

    assert response.status_code == 200, response.text
    title = load_workbook(BytesIO(response.content))["积分存折"]["A1"]
    assert title.data_type == "s"
    assert title.value.startswith("'=HYPERLINK")
    assert 'filename="passbook-_1_1-' in response.headers["content-disposition"]


async def test_a_villager_reads_their_own_passbook_and_not_a_neighbours(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 5)
    await post_entry(db, scene.neighbour, 8)

    own = sheet_rows(await passbook(client, scene.household, scene.villager_headers))
    neighbours = await passbook(client, scene.neighbour, scene.villager_headers)
    unknown = await client.get(
        f"{API}/households/{f.random_id()}/passbook", headers=scene.admin_headers
    )

    assert lines(own) == [("加分", None, 5, "是", 5)]
    assert_problem(neighbours, 404, "household.not_found")
    assert_problem(unknown, 404, "household.not_found")
    # The village's admin reads the neighbour's (and a year out of range is a clear 422).
    assert lines(sheet_rows(await passbook(client, scene.neighbour, scene.admin_headers))) == [
        ("加分", None, 8, "是", 8)
    ]
    too_early = await passbook(client, scene.household, scene.villager_headers, year=1999)
    assert too_early.status_code == 422


async def test_the_download_is_named_and_typed_as_an_xlsx_file(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    response = await passbook(client, scene.household, scene.villager_headers, year=LAST_YEAR)

    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == (
        f'attachment; filename="passbook-{scene.household.number}-{LAST_YEAR}.xlsx"'
    )


async def test_a_household_number_in_chinese_keeps_the_header_ascii(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    household = await f.create_household(db, scene.village, number="三组/12号")

    response = await passbook(client, household, scene.admin_headers, year=THIS_YEAR)

    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    disposition.encode("ascii")  # raises if it is not
    assert f'filename="passbook-_12_-{THIS_YEAR}.xlsx"' in disposition
    assert (
        f"filename*=UTF-8''passbook-%E4%B8%89%E7%BB%84%2F12%E5%8F%B7-{THIS_YEAR}.xlsx"
        in disposition
    )


async def test_an_empty_year_has_the_title_the_opening_and_the_closing_line(
    client: httpx.AsyncClient, db: AsyncSession, scene: Scene
) -> None:
    await post_entry(db, scene.household, 9, year=LAST_YEAR)
    await post_entry(db, scene.household, 3, year=LAST_YEAR, counts_balance=False)
    never = await f.create_household(db, scene.village)

    next_year = sheet_rows(
        await passbook(client, scene.household, scene.villager_headers, year=THIS_YEAR + 1)
    )
    nothing = sheet_rows(await passbook(client, never, scene.admin_headers, year=THIS_YEAR))

    assert len(next_year) == 4
    assert next_year[0][0].endswith(f"{THIS_YEAR + 1}年度积分存折")
    assert next_year[2] == (None, "上年结转", None, None, None, 9)
    assert next_year[3] == (None, "本年合计（年度积分）", None, 0, None, 9)
    # A household without a head leaves the name out of the title.
    assert len(nothing) == 4
    assert nothing[0][0] == f"{scene.village.name} 户号{never.number} {THIS_YEAR}年度积分存折"
    assert nothing[2][5] == 0
    assert nothing[3][3:] == (0, None, 0)
