"""Household import: all rows are checked before anything is written."""

import csv
import io
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    AuditEntry,
    Household,
    HouseholdMember,
    Participation,
    Person,
    Role,
    Village,
    VillageGroup,
)
from app.services import household_import
from tests import factories as f

CN = ["户号", "村小组", "地址", "本地户籍", "宅基地房屋", "常住", "租户", "参与状态"]
CN += ["姓名", "手机号", "户主", "与户主关系"]
EN = ["household_number", "group", "address", "local_hukou", "homestead_house"]
EN += ["has_resident", "renter", "participation", "name", "phone", "is_head", "relation"]


def row(number: str, name: str, phone: str = "", head: str = "否", **household: str) -> list[str]:
    """One member row in the CN/EN column order; household-level cells default to blank."""
    return [
        number,
        household.get("group", ""),
        household.get("address", ""),
        household.get("local_hukou", ""),
        household.get("homestead_house", ""),
        household.get("has_resident", ""),
        household.get("renter", ""),
        household.get("participation", ""),
        name,
        phone,
        head,
        household.get("relation", ""),
    ]


def csv_bytes(rows: list[list[Any]], encoding: str = "utf-8-sig") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for values in rows:
        sheet.append(values)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@dataclass
class Setting:
    village: Village
    groups: dict[str, VillageGroup]
    admin: dict[str, str]


@pytest.fixture
async def setting(db: AsyncSession, settings: Settings) -> Setting:
    village = await f.create_village(db)
    groups = {name: await f.create_group(db, village, name=name) for name in ("第一组", "第二组")}
    admin = await f.create_person(db, village)
    await f.grant(db, admin, Role.VILLAGE_ADMIN, village=village)
    return Setting(village, groups, await f.login_headers(db, settings, admin))


async def upload(
    client: httpx.AsyncClient,
    village: Village,
    content: bytes,
    headers: dict[str, str],
    *,
    filename: str = "花名册.csv",
    dry_run: bool = False,
) -> httpx.Response:
    return await client.post(
        f"/api/v1/villages/{village.id}/households/import",
        files={"file": (filename, content, "application/octet-stream")},
        params={"dry_run": "true"} if dry_run else {},
        headers=headers,
    )


async def counts(db: AsyncSession) -> dict[str, int]:
    tables = {"household": Household, "person": Person, "member": HouseholdMember}
    result = {
        name: (await db.execute(select(func.count()).select_from(table))).scalar_one()
        for name, table in tables.items()
    }
    result["audit"] = (
        await db.execute(select(func.count()).where(col(AuditEntry.action) == "household.import"))
    ).scalar_one()
    return result


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["title"]
    return body


async def members_of(db: AsyncSession, village: Village) -> dict[str, list[tuple[Any, ...]]]:
    """number -> [(name, phone, is_head, relation, person's village)] in name order."""
    rows = await db.execute(
        select(
            col(Household.number),
            col(Person.name),
            col(Person.phone),
            col(HouseholdMember.is_head),
            col(HouseholdMember.relation),
            col(Person.village_id),
            col(HouseholdMember.village_id),
        )
        .join(HouseholdMember, col(HouseholdMember.household_id) == col(Household.id))
        .join(Person, col(Person.id) == col(HouseholdMember.person_id))
        .where(col(Household.village_id) == village.id)
        .order_by(col(Household.number), col(Person.name))
    )
    result: dict[str, list[tuple[Any, ...]]] = {}
    for number, name, phone, is_head, relation, person_village, member_village in rows:
        assert person_village == village.id
        assert member_village == village.id
        result.setdefault(number, []).append((name, phone, is_head, relation))
    return result


async def households_of(db: AsyncSession, village: Village) -> dict[str, Household]:
    found = await db.execute(select(Household).where(col(Household.village_id) == village.id))
    return {h.number: h for h in found.scalars()}


VALID_CSV = [
    [*CN, "备注"],
    [*row("A001", "张三", "13900000001", "是", group="第一组", address="幸福路1号",
          local_hukou="是", homestead_house="是", has_resident="是", renter="否",
          participation="已参与", relation="户主"), "村委委员"],
    # Later rows may leave household cells blank, or repeat them in another spelling.
    row("A001", "李四", "13900000002", "否", relation="配偶"),
    row("A001", "张小三", "", "", group="第一组", local_hukou="Y", homestead_house="yes",
        has_resident="true", renter="N", participation="active", relation="子女"),
    row("A002", "王五", "139 0000 0003", "是", group="第二组", address="幸福路2号",
        local_hukou="否", homestead_house="1", has_resident="0", renter="yes",
        participation="待确认", relation="户主"),
]  # fmt: skip


async def test_csv_import_writes_households_members_and_persons(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    before = await counts(db)
    response = await upload(client, setting.village, csv_bytes(VALID_CSV), setting.admin)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "dry_run": False,
        "format": "csv",
        "households": 2,
        "members": 4,
        "ignored_columns": ["备注"],
    }
    after = await counts(db)
    assert after["household"] - before["household"] == 2
    assert after["person"] - before["person"] == 4
    assert after["member"] - before["member"] == 4
    assert after["audit"] - before["audit"] == 1

    households = await households_of(db, setting.village)
    first, second = households["A001"], households["A002"]
    assert first.village_group_id == setting.groups["第一组"].id
    assert (first.address, first.participation) == ("幸福路1号", Participation.ACTIVE)
    assert (first.local_hukou, first.homestead_house, first.has_resident, first.renter) == (
        True,
        True,
        True,
        False,
    )
    assert second.village_group_id == setting.groups["第二组"].id
    assert second.participation == Participation.PENDING
    assert (second.local_hukou, second.homestead_house, second.has_resident, second.renter) == (
        False,
        True,
        False,
        True,
    )
    assert await members_of(db, setting.village) == {
        "A001": [
            ("张三", "13900000001", True, "户主"),
            ("张小三", None, False, "子女"),
            ("李四", "13900000002", False, "配偶"),
        ],
        "A002": [("王五", "13900000003", True, "户主")],
    }
    entry = (
        await db.execute(
            select(AuditEntry).where(
                col(AuditEntry.action) == "household.import",
                col(AuditEntry.village_id) == setting.village.id,
            )
        )
    ).scalar_one()
    assert entry.after is not None
    assert entry.after["households"] == 2
    assert entry.after["members"] == 4
    assert entry.after["filename"] == "花名册.csv"


async def test_xlsx_import_with_title_row_and_numeric_cells(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    # Excel keeps numbers as numbers, and rosters often carry a title above the header.
    sheet = [
        ["某村农户花名册"],
        EN,
        [101, "第二组", "东街3号", True, False, "Y", "N", "suspended",
         "赵大", 13900000011, "yes", "户主"],
        [101, None, None, None, None, None, None, None, "赵二", None, None, "子女"],
        [],
        [102, None, None, None, None, None, None, "退出", "钱三", "13900000012", 1, None],
    ]  # fmt: skip
    before = await counts(db)
    response = await upload(
        client, setting.village, xlsx_bytes(sheet), setting.admin, filename="roster.bin"
    )

    assert response.status_code == 200, response.text
    assert response.json()["format"] == "xlsx"
    assert (response.json()["households"], response.json()["members"]) == (2, 3)
    after = await counts(db)
    assert (after["household"] - before["household"], after["person"] - before["person"]) == (2, 3)
    households = await households_of(db, setting.village)
    assert households["101"].village_group_id == setting.groups["第二组"].id
    assert households["101"].participation == Participation.SUSPENDED
    assert (households["101"].local_hukou, households["101"].homestead_house) == (True, False)
    assert households["102"].participation == Participation.LEFT
    assert households["102"].village_group_id is None
    assert await members_of(db, setting.village) == {
        "101": [("赵二", None, False, "子女"), ("赵大", "13900000011", True, "户主")],
        "102": [("钱三", "13900000012", True, "")],
    }


async def test_xlsx_lines_are_the_sheet_rows(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    sheet: list[list[Any]] = [["标题"], CN, row("X1", "甲", head="是"), [], row("X1", "乙", "42")]
    before = await counts(db)
    response = await upload(client, setting.village, xlsx_bytes(sheet), setting.admin)

    body = problem(response, 422, "household_import.invalid_rows")
    assert [(e["line"], e["column"], e["code"]) for e in body["errors"]] == [
        (5, "手机号", "invalid_phone")
    ]
    assert await counts(db) == before


def thousand_rows() -> list[list[str]]:
    """500 households of two members: data on lines 2..1001."""
    rows = [CN]
    for n in range(500):
        number = f"T{n:04d}"
        rows.append(row(number, f"户主{n}", f"138{n:08d}", "是", group="第一组"))
        rows.append(row(number, f"成员{n}", f"137{n:08d}", "否", relation="子女"))
    return rows


async def test_one_bad_row_in_a_thousand_writes_nothing_and_names_it(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = thousand_rows()
    assert len(rows) == 1001
    rows[636][9] = "1380000"  # line 637: the header is line 1
    before = await counts(db)

    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)

    body = problem(response, 422, "household_import.invalid_rows")
    assert body["error_count"] == 1
    [error] = body["errors"]
    assert (error["line"], error["column"], error["code"]) == (637, "手机号", "invalid_phone")
    assert "1380000" in error["reason"]
    assert await counts(db) == before

    rows[636][9] = ""  # fixed: the same file now imports whole
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)
    assert response.status_code == 200, response.text
    after = await counts(db)
    assert after["household"] - before["household"] == 500
    assert after["person"] - before["person"] == 1000
    assert after["member"] - before["member"] == 1000
    heads = await db.execute(
        select(func.count())
        .select_from(HouseholdMember)
        .where(
            col(HouseholdMember.village_id) == setting.village.id,
            col(HouseholdMember.is_head),
        )
    )
    assert heads.scalar_one() == 500


async def test_every_bad_row_is_reported_with_its_own_code(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    existing = await f.create_household(db, setting.village, number="B009")
    await f.add_member(
        db,
        existing,
        await f.create_person(db, setting.village, name="老赵", phone="13911112222"),
        is_head=True,
    )
    rows = [
        CN,
        row("B001", "赵一", "13900001001", "是", group="第一组"),  # 2 fine
        row("B001", "钱二", "13900001002", group="第九组"),  # 3
        row("B002", "孙三", "13900001003", "是", local_hukou="也许"),  # 4
        row("B002", "李四", "13900001004", participation="参加"),  # 5
        row("B003", "周五", "12345", "是"),  # 6
        row("B003", "", "13900001007"),  # 7
        row("B004", "吴六", "13900001008", "是", address="东街1号"),  # 8
        row("B004", "郑七", "13900001009", address="西街2号"),  # 9
        row("B005", "王八", "13900001010"),  # 10
        row("B006", "冯九", "13900001011", "是"),  # 11
        row("B006", "陈十", "13900001012", "是"),  # 12
        row("B007", "褚一", "13900001013", "是"),  # 13
        row("B007", "褚一", "13900001013"),  # 14
        row("B009", "卫二", "13900001015", "是"),  # 15
        row("B010", "老赵", "13911112222", "是"),  # 16
        row("", "蒋三", "13900001017", "是"),  # 17
        row("B011", "沈四", "13900001018", "是", address="长" * 201),  # 18
        row("B012", "韩五", "13900001019", "可能"),  # 19
        row("B012", "杨六", "13900001020", "是"),  # 20
        row("B013", "朱七", "13900001021", "是"),  # 21
        row("B014", "朱七", "13900001021", "是"),  # 22
    ]
    before = await counts(db)

    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)

    body = problem(response, 422, "household_import.invalid_rows")
    found = [(e["line"], e["column"], e["code"]) for e in body["errors"]]
    assert found == [
        (3, "村小组", "unknown_group"),
        (4, "本地户籍", "invalid_boolean"),
        (5, "参与状态", "invalid_participation"),
        (6, "手机号", "invalid_phone"),
        (7, "姓名", "required"),
        (9, "地址", "inconsistent_household"),
        (10, "户主", "no_head"),
        (12, "户主", "multiple_heads"),
        (14, "姓名", "duplicate_person"),
        (15, "户号", "number_taken"),
        (16, "姓名", "person_in_household"),
        (17, "户号", "required"),
        (18, "地址", "too_long"),
        (19, "户主", "invalid_boolean"),
        (22, "姓名", "duplicate_person"),
    ]
    assert body["error_count"] == len(found)
    assert all(e["reason"] for e in body["errors"])
    assert "第 8 行" in body["errors"][5]["reason"]
    assert await counts(db) == before


async def test_dry_run_reports_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    before = await counts(db)
    response = await upload(
        client, setting.village, csv_bytes(VALID_CSV), setting.admin, dry_run=True
    )

    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True
    assert (response.json()["households"], response.json()["members"]) == (2, 4)
    assert await counts(db) == before


async def test_dry_run_still_lists_bad_rows(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = [CN, row("C1", "甲", "123", "是")]
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin, dry_run=True)
    body = problem(response, 422, "household_import.invalid_rows")
    assert [e["line"] for e in body["errors"]] == [2]


@pytest.mark.parametrize("content", [csv_bytes([CN]), b"", xlsx_bytes([CN, [], []])])
async def test_file_without_data_rows(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting, content: bytes
) -> None:
    before = await counts(db)
    response = await upload(client, setting.village, content, setting.admin)
    problem(response, 422, "household_import.empty")
    assert await counts(db) == before


async def test_missing_required_column(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    header = [c for c in CN if c != "姓名"]
    rows = [header, ["D1", "", "", "", "", "", "", "", "13900000001", "是", "户主"]]
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)
    body = problem(response, 422, "household_import.missing_columns")
    assert body["missing_columns"] == ["姓名"]


async def test_head_read_from_relation_when_no_head_column(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = [["户号", "姓名", "与户主关系"], ["E1", "甲", "户主"], ["E1", "乙", "配偶"]]
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)
    assert response.status_code == 200, response.text
    assert await members_of(db, setting.village) == {
        "E1": [("乙", None, False, "配偶"), ("甲", None, True, "户主")]
    }


async def test_columns_given_twice(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = [["户号", "姓名", "name", "户主"], ["F1", "甲", "甲", "是"]]
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)
    assert problem(response, 422, "household_import.duplicate_columns")["columns"] == ["name"]


async def test_gb18030_csv_is_decoded(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = [CN, row("G1", "欧阳娜", "13900000031", "是", group="第一组", address="龍潭村")]
    content = csv_bytes(rows, encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")

    response = await upload(client, setting.village, content, setting.admin)

    assert response.status_code == 200, response.text
    assert (await households_of(db, setting.village))["G1"].address == "龍潭村"
    assert await members_of(db, setting.village) == {"G1": [("欧阳娜", "13900000031", True, "")]}


async def test_unreadable_workbook(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    response = await upload(client, setting.village, b"PK\x03\x04not a zip", setting.admin)
    problem(response, 422, "household_import.unreadable")


async def test_file_over_the_size_limit(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    content = csv_bytes([CN]) + b"x" * household_import.MAX_FILE_BYTES
    response = await upload(client, setting.village, content, setting.admin)
    assert problem(response, 413, "household_import.file_too_large")["max_bytes"] == (
        household_import.MAX_FILE_BYTES
    )


async def test_file_over_the_row_limit(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    rows = [["户号", "姓名", "户主"]]
    rows += [[f"R{n}", "甲", "是"] for n in range(household_import.MAX_ROWS + 1)]
    before = await counts(db)
    response = await upload(client, setting.village, csv_bytes(rows), setting.admin)
    problem(response, 413, "household_import.too_many_rows")
    assert await counts(db) == before


async def test_blank_rows_count_toward_the_row_limit(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    # Read to the end, a sheet of empty rows costs as much as a full one.
    rows: list[list[Any]] = [["户号", "姓名", "户主"]]
    rows += [
        ["", "", ""] for _ in range(household_import.MAX_ROWS + household_import.HEADER_SEARCH_ROWS)
    ]
    rows += [["R1", "甲", "是"]]
    before = await counts(db)
    response = await upload(client, setting.village, xlsx_bytes(rows), setting.admin)
    problem(response, 413, "household_import.too_many_rows")
    assert await counts(db) == before


async def test_the_file_is_parsed_and_checked_off_the_event_loop(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def recorded(name: str, function: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            threads[name] = threading.get_ident()
            return function(*args, **kwargs)

        return run

    for name in ("read_table", "check"):
        monkeypatch.setattr(household_import, name, recorded(name, getattr(household_import, name)))
    response = await upload(client, setting.village, csv_bytes(VALID_CSV), setting.admin)
    assert response.status_code == 200, response.text
    assert set(threads) == {"read_table", "check"}
    assert loop_thread not in threads.values()


async def test_district_admin_may_import(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, setting: Setting
) -> None:
    district = await f.create_person(db)
    await f.grant(db, district, Role.DISTRICT_ADMIN)
    headers = await f.login_headers(db, settings, district)
    response = await upload(client, setting.village, csv_bytes(VALID_CSV), headers)
    assert response.status_code == 200, response.text


async def test_admin_of_another_village_gets_404(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, setting: Setting
) -> None:
    other_village = await f.create_village(db)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)
    headers = await f.login_headers(db, settings, other_admin)
    before = await counts(db)

    response = await upload(client, setting.village, csv_bytes(VALID_CSV), headers)

    problem(response, 404, "village.not_found")
    assert await counts(db) == before


async def test_villager_gets_403(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, setting: Setting
) -> None:
    household = await f.create_household(db, setting.village)
    member = await f.add_member(db, household, is_head=True)
    villager = await db.get(Person, member.person_id)
    assert villager is not None
    before = await counts(db)

    response = await upload(
        client,
        setting.village,
        csv_bytes(VALID_CSV),
        await f.login_headers(db, settings, villager),
    )

    problem(response, 403, "auth.forbidden")
    assert await counts(db) == before


async def test_no_token_gets_401(
    client: httpx.AsyncClient, db: AsyncSession, setting: Setting
) -> None:
    response = await upload(client, setting.village, csv_bytes(VALID_CSV), {})
    problem(response, 401, "auth.token_missing")
    assert response.headers["www-authenticate"].startswith("Bearer")
