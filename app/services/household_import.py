"""Households and their members from a village roster (CSV or XLSX, one row per member).

The whole file is checked before anything is written, and every problem is reported with the
line the admin sees in their spreadsheet, so one upload either imports everything or tells them
all they need to fix.
"""

import csv
import functools
import hashlib
import io
import re
import uuid
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal

import anyio.to_thread
from openpyxl import load_workbook
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.errors import AppError, Unprocessable
from app.models import Household, HouseholdMember, Participation, Person, Village, VillageGroup
from app.schemas.household_import import ImportReport, ImportRowError, RowErrorCode
from app.security import Principal
from app.services import audit
from app.services.organisation import get_village_for_admin

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
# Rosters often carry a title row or two ("XX村农户花名册") above the header.
HEADER_SEARCH_ROWS = 5
XLSX_MAGIC = b"PK\x03\x04"
PHONE = re.compile(r"^1[0-9]{10}$")
# People write phone numbers in groups ("139 1234 5678"); the digits are what count.
PHONE_SEPARATORS = re.compile(r"[\s\-]")
# Reasons quote the offending cell; a pasted paragraph should not bloat the report.
QUOTE_LIMIT = 30

Format = Literal["csv", "xlsx"]


@dataclass(frozen=True)
class Column:
    field: str
    label: str  # the Chinese header, named in messages about a missing column
    aliases: tuple[str, ...]
    max_length: int | None = None


COLUMNS = (
    Column("number", "户号", ("户号", "household_number"), 32),
    Column("group", "村小组", ("村小组", "group", "village_group")),
    Column("address", "地址", ("地址", "address"), 200),
    Column("local_hukou", "本地户籍", ("本地户籍", "local_hukou")),
    Column("homestead_house", "宅基地房屋", ("宅基地房屋", "homestead_house")),
    Column("has_resident", "常住", ("常住", "has_resident")),
    Column("renter", "租户", ("租户", "renter")),
    Column("participation", "参与状态", ("参与状态", "participation")),
    Column("name", "姓名", ("姓名", "name"), 50),
    Column("phone", "手机号", ("手机号", "phone")),
    Column("is_head", "户主", ("户主", "is_head")),
    Column("relation", "与户主关系", ("与户主关系", "relation"), 20),
)
COLUMN_BY_FIELD = {c.field: c for c in COLUMNS}
HOUSEHOLD_FIELDS = (
    "group",
    "address",
    "local_hukou",
    "homestead_house",
    "has_resident",
    "renter",
    "participation",
)
BOOLEAN_FIELDS = frozenset({"local_hukou", "homestead_house", "has_resident", "renter", "is_head"})
HOUSEHOLD_DEFAULTS: dict[str, Any] = {
    "group": None,
    "address": "",
    "local_hukou": True,
    "homestead_house": True,
    "has_resident": True,
    "renter": False,
    "participation": Participation.PENDING,
}
TRUE_WORDS = frozenset({"是", "y", "yes", "true", "1"})
FALSE_WORDS = frozenset({"否", "n", "no", "false", "0"})
PARTICIPATION_WORDS: dict[str, Participation] = {
    "已参与": Participation.ACTIVE,
    "待确认": Participation.PENDING,
    "暂停": Participation.SUSPENDED,
    "退出": Participation.LEFT,
    **{p.value: p for p in Participation},
}
# Without a 户主 column the head is read from the relation column, as on a 户口簿.
HEAD_RELATIONS = frozenset({"户主", "本人"})


def _header_key(text: str) -> str:
    # Templates mark required columns with an asterisk; English headers vary in case and spacing.
    return re.sub(r"[\s\-]+", "_", text.strip().rstrip("*＊").strip()).casefold()


ALIASES = {_header_key(alias): c.field for c in COLUMNS for alias in c.aliases}


@dataclass
class Table:
    format: Format
    headers: dict[str, str]  # field -> the header as written in the file
    positions: dict[str, int]  # field -> column index
    ignored: list[str]
    rows: list[tuple[int, list[str]]]  # (line, cells), blank rows left out

    def cell(self, cells: list[str], name: str) -> str:
        position = self.positions.get(name)
        if position is None or position >= len(cells):
            return ""
        return cells[position]


@dataclass
class MemberDraft:
    line: int
    name: str
    phone: str | None
    is_head: bool
    relation: str
    # False when a cell of the row was refused; such a member is never written, but it still
    # counts as a head or not so the household's own checks stay meaningful.
    valid: bool = True


@dataclass
class HouseholdDraft:
    number: str
    first_line: int
    # field -> (value, cell text, line) as first given; later rows must agree with it.
    given: dict[str, tuple[Any, str, int]] = field(default_factory=dict)
    members: list[MemberDraft] = field(default_factory=list)
    # A refused 户主 cell leaves the count of heads unknown; "no head" would then be noise.
    head_unknown: bool = False

    def value(self, name: str) -> Any:
        return self.given[name][0] if name in self.given else HOUSEHOLD_DEFAULTS[name]


# --- reading the file -------------------------------------------------------------------------


def _unreadable(detail: str) -> Unprocessable:
    return Unprocessable(
        detail, code="household_import.unreadable", title="无法读取文件，请上传 CSV 或 XLSX 文件"
    )


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # Spreadsheets keep phone numbers and household numbers as numbers: 13912345678.0 → digits.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Excel on a Chinese Windows saves "CSV" in the ANSI code page, which GB18030 covers.
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise _unreadable("The CSV is neither UTF-8 nor GB18030 text.") from exc


def _csv_lines(data: bytes) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    try:
        # Records, not physical lines, are numbered: a cell with a line break is still one row
        # in Excel or WPS, which is where the admin looks for it.
        for line, cells in enumerate(reader, start=1):
            yield line, [c.strip() for c in cells]
    except csv.Error as exc:
        raise _unreadable(f"The CSV is malformed near record {reader.line_num}: {exc}.") from exc


def _xlsx_lines(data: bytes) -> Generator[tuple[int, list[str]]]:
    # A damaged workbook can fail in zipfile, the XML parser or openpyxl itself, at load time or
    # halfway through the sheet; to the admin all of these mean the same thing.
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise _unreadable("The file is not a readable XLSX workbook.") from exc
    try:
        sheet = workbook.worksheets[0]
        # The declared dimension can be wrong in files written by other tools; without this a
        # read-only sheet silently stops at it.
        sheet.reset_dimensions()
        for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield line, [_cell_text(v) for v in values]
    except Exception as exc:
        raise _unreadable("The XLSX workbook could not be read to the end.") from exc
    finally:
        workbook.close()


def _map_header(cells: list[str]) -> tuple[dict[str, str], dict[str, int], list[str]]:
    headers: dict[str, str] = {}
    positions: dict[str, int] = {}
    ignored: list[str] = []
    duplicates: list[str] = []
    for position, text in enumerate(cells):
        if not text:
            continue
        name = ALIASES.get(_header_key(text))
        if name is None:
            ignored.append(text)
        elif name in headers:
            duplicates.append(text)
        else:
            headers[name] = text
            positions[name] = position
    if duplicates:
        raise Unprocessable(
            f"Columns given twice: {', '.join(duplicates)}.",
            code="household_import.duplicate_columns",
            title="文件中有重复的列",
            columns=duplicates,
        )
    missing = [COLUMN_BY_FIELD[name].label for name in ("number", "name") if name not in headers]
    if "is_head" not in headers and "relation" not in headers:
        missing.append(COLUMN_BY_FIELD["is_head"].label)
    if missing:
        raise Unprocessable(
            f"Required columns are missing: {', '.join(missing)}.",
            code="household_import.missing_columns",
            title="缺少必填列：" + "、".join(missing),
            missing_columns=missing,
        )
    return headers, positions, ignored


def _too_many_rows() -> AppError:
    return AppError(
        f"The file has more than {MAX_ROWS} data rows.",
        status=413,
        code="household_import.too_many_rows",
        title=f"文件行数过多，每次最多导入 {MAX_ROWS} 行",
        max_rows=MAX_ROWS,
    )


def _tabulate(file_format: Format, lines: Iterable[tuple[int, list[str]]]) -> Table:
    candidates: list[list[str]] = []
    header: tuple[dict[str, str], dict[str, int], list[str]] | None = None
    rows: list[tuple[int, list[str]]] = []
    for line, cells in lines:
        # Every row read counts, blank or not: a sheet of a million empty rows costs as much to
        # read as a full one.
        if line > MAX_ROWS + HEADER_SEARCH_ROWS:
            raise _too_many_rows()
        if not any(cells):
            continue
        if header is not None:
            if len(rows) == MAX_ROWS:
                raise _too_many_rows()
            rows.append((line, cells))
            continue
        candidates.append(cells)
        if any(ALIASES.get(_header_key(c)) == "number" for c in cells):
            header = _map_header(cells)
        elif len(candidates) == HEADER_SEARCH_ROWS:
            break
    if header is None:
        if candidates:
            # No recognisable header near the top: judge the first row as the header, so the
            # admin is told which columns it lacks.
            _map_header(candidates[0])
        raise Unprocessable(
            "The file has no header row and no data.",
            code="household_import.empty",
            title="文件是空的",
        )
    if not rows:
        raise Unprocessable(
            "The file has a header but no data rows.",
            code="household_import.empty",
            title="文件中没有数据行",
        )
    headers, positions, ignored = header
    return Table(file_format, headers, positions, ignored, rows)


def read_table(data: bytes) -> Table:
    """The file's header and non-blank rows; raises for problems with the file as a whole."""
    if len(data) > MAX_FILE_BYTES:
        raise AppError(
            f"The file is larger than {MAX_FILE_BYTES} bytes.",
            status=413,
            code="household_import.file_too_large",
            title=f"文件过大，不能超过 {MAX_FILE_BYTES // (1024 * 1024)}MB",
            max_bytes=MAX_FILE_BYTES,
        )
    if data.startswith(XLSX_MAGIC):
        with closing(_xlsx_lines(data)) as lines:
            return _tabulate("xlsx", lines)
    return _tabulate("csv", _csv_lines(data))


# --- checking the rows ------------------------------------------------------------------------


def _quote(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…"


@dataclass
class Checker:
    table: Table
    groups: dict[str, uuid.UUID]
    taken_numbers: set[str]
    # (name, phone) of people already in a household of this village.
    housed_people: set[tuple[str, str]]
    # (line, column index, error), so the report can follow the file's own order.
    found: list[tuple[int, int, ImportRowError]] = field(default_factory=list)

    def report(self, line: int, name: str, code: RowErrorCode, reason: str) -> None:
        error = ImportRowError(
            line=line, column=self.table.headers.get(name), code=code, reason=reason
        )
        self.found.append((line, self.table.positions.get(name, -1), error))

    def errors(self) -> list[ImportRowError]:
        return [error for _, _, error in sorted(self.found, key=lambda f: (f[0], f[1]))]

    def header(self, name: str) -> str:
        return self.table.headers.get(name, COLUMN_BY_FIELD[name].label)

    def text(self, line: int, cells: list[str], name: str) -> str | None:
        """The cell's text, or None (reported) when it is longer than the column allows."""
        value = self.table.cell(cells, name)
        limit = COLUMN_BY_FIELD[name].max_length
        if limit is not None and len(value) > limit:
            self.report(
                line,
                name,
                RowErrorCode.TOO_LONG,
                f"{self.header(name)}不能超过 {limit} 个字（现有 {len(value)} 个）",
            )
            return None
        return value

    def parse(self, line: int, name: str, value: str) -> tuple[bool, Any]:
        """(ok, value) for a non-empty cell of a household-level or yes/no column."""
        if name in BOOLEAN_FIELDS:
            word = value.casefold()
            if word in TRUE_WORDS:
                return True, True
            if word in FALSE_WORDS:
                return True, False
            self.report(
                line,
                name,
                RowErrorCode.INVALID_BOOLEAN,
                f"{self.header(name)}应填“是”或“否”，不能是“{_quote(value)}”",
            )
            return False, None
        if name == "participation":
            participation = PARTICIPATION_WORDS.get(value.casefold())
            if participation is None:
                self.report(
                    line,
                    name,
                    RowErrorCode.INVALID_PARTICIPATION,
                    f"{self.header(name)}应为 已参与、待确认、暂停 或 退出，"
                    f"不能是“{_quote(value)}”",
                )
                return False, None
            return True, participation
        if name == "group" and value not in self.groups:
            self.report(
                line, name, RowErrorCode.UNKNOWN_GROUP, f"本村没有名为“{_quote(value)}”的村小组"
            )
            return False, None
        return True, value

    def phone(self, line: int, cells: list[str]) -> tuple[bool, str | None]:
        raw = self.table.cell(cells, "phone")
        if not raw:
            return True, None
        phone = PHONE_SEPARATORS.sub("", raw)
        if not PHONE.match(phone):
            self.report(
                line,
                "phone",
                RowErrorCode.INVALID_PHONE,
                f"{self.header('phone')}应为 1 开头的 11 位数字，不能是“{_quote(raw)}”",
            )
            return False, None
        return True, phone

    def head(self, line: int, cells: list[str], relation: str | None) -> bool | None:
        """Whether the row is the head; None when its 户主 cell was refused."""
        if "is_head" not in self.table.positions:
            return relation in HEAD_RELATIONS
        value = self.table.cell(cells, "is_head")
        if not value:
            return False
        ok, parsed = self.parse(line, "is_head", value)
        return bool(parsed) if ok else None

    def row(self, drafts: dict[str, HouseholdDraft], line: int, cells: list[str]) -> None:
        number = self.text(line, cells, "number")
        if number == "":
            self.report(line, "number", RowErrorCode.REQUIRED, f"缺少{self.header('number')}")
        name = self.text(line, cells, "name")
        if name == "":
            self.report(line, "name", RowErrorCode.REQUIRED, f"缺少{self.header('name')}")
        phone_ok, phone = self.phone(line, cells)
        relation = self.text(line, cells, "relation")
        head = self.head(line, cells, relation)

        draft = drafts.get(number) if number else None
        if number and draft is None:
            draft = drafts[number] = HouseholdDraft(number=number, first_line=line)
        for key in HOUSEHOLD_FIELDS:
            value = self.text(line, cells, key)
            if not value:
                continue
            ok, parsed = self.parse(line, key, value)
            if not ok or draft is None:
                continue
            if key not in draft.given:
                draft.given[key] = (parsed, value, line)
                continue
            earlier, earlier_text, earlier_line = draft.given[key]
            if parsed != earlier:
                self.report(
                    line,
                    key,
                    RowErrorCode.INCONSISTENT_HOUSEHOLD,
                    f"同一户（户号 {_quote(draft.number)}）的{self.header(key)}应一致："
                    f"第 {earlier_line} 行是“{_quote(earlier_text)}”，"
                    f"这里是“{_quote(value)}”",
                )
        if draft is None:
            return
        if head is None:
            draft.head_unknown = True
        draft.members.append(
            MemberDraft(
                line=line,
                name=name or "",
                phone=phone,
                is_head=bool(head),
                relation=relation or "",
                valid=bool(name) and phone_ok and relation is not None and head is not None,
            )
        )

    def household(self, draft: HouseholdDraft) -> None:
        if draft.number in self.taken_numbers:
            self.report(
                draft.first_line,
                "number",
                RowErrorCode.NUMBER_TAKEN,
                f"户号 {_quote(draft.number)} 在本村已经存在",
            )
        head_column = "is_head" if "is_head" in self.table.positions else "relation"
        heads = [m for m in draft.members if m.is_head]
        if not heads and not draft.head_unknown:
            self.report(
                draft.first_line,
                head_column,
                RowErrorCode.NO_HEAD,
                f"户号 {_quote(draft.number)} 没有户主，每户须有且只有一位户主",
            )
        for extra in heads[1:]:
            self.report(
                extra.line,
                head_column,
                RowErrorCode.MULTIPLE_HEADS,
                f"户号 {_quote(draft.number)} 已在第 {heads[0].line} 行指定户主，"
                "每户只能有一位户主",
            )

    def people(self, drafts: list[HouseholdDraft]) -> None:
        anywhere: dict[tuple[str, str], int] = {}
        for draft in drafts:
            here: dict[tuple[str, str], int] = {}
            for member in draft.members:
                if not member.valid:
                    continue
                key = (member.name, member.phone or "")
                if key in here:
                    self.report(
                        member.line,
                        "name",
                        RowErrorCode.DUPLICATE_PERSON,
                        f"与第 {here[key]} 行是同一人（同一户中姓名和手机号都相同）",
                    )
                    continue
                here[key] = member.line
                # Without a phone, people of the same name in different households are more
                # likely namesakes than one person entered twice.
                if member.phone is None:
                    continue
                if key in anywhere:
                    self.report(
                        member.line,
                        "name",
                        RowErrorCode.DUPLICATE_PERSON,
                        f"与第 {anywhere[key]} 行是同一人（姓名和手机号都相同），"
                        "一个人只能属于一户",
                    )
                    continue
                anywhere[key] = member.line
                if key in self.housed_people:
                    self.report(
                        member.line,
                        "name",
                        RowErrorCode.PERSON_IN_HOUSEHOLD,
                        f"{_quote(member.name)}（{member.phone}）已是本村另一户的成员",
                    )


def check(
    table: Table,
    *,
    groups: dict[str, uuid.UUID],
    taken_numbers: set[str],
    housed_people: set[tuple[str, str]],
) -> tuple[list[HouseholdDraft], list[ImportRowError]]:
    """The households the file describes and every problem found in it, in file order."""
    checker = Checker(table, groups, taken_numbers, housed_people)
    drafts: dict[str, HouseholdDraft] = {}
    for line, cells in table.rows:
        checker.row(drafts, line, cells)
    for draft in drafts.values():
        checker.household(draft)
    checker.people(list(drafts.values()))
    return list(drafts.values()), checker.errors()


# --- writing ----------------------------------------------------------------------------------


async def _village_facts(
    session: AsyncSession, village: Village
) -> tuple[dict[str, uuid.UUID], set[str], set[tuple[str, str]]]:
    # A village holds at most a few thousand households, so reading its numbers and members
    # whole is cheaper than sending thousands of values as query parameters.
    group_rows = await session.execute(
        select(col(VillageGroup.name), col(VillageGroup.id)).where(
            col(VillageGroup.village_id) == village.id
        )
    )
    number_rows = await session.execute(
        select(col(Household.number)).where(col(Household.village_id) == village.id)
    )
    housed_rows = await session.execute(
        select(col(Person.name), col(Person.phone))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(col(HouseholdMember.village_id) == village.id, col(Person.phone).is_not(None))
    )
    groups = {name: group_id for name, group_id in group_rows}
    numbers = set(number_rows.scalars())
    housed = {(name, phone) for name, phone in housed_rows if phone is not None}
    return groups, numbers, housed


async def _insert(
    session: AsyncSession,
    village: Village,
    groups: dict[str, uuid.UUID],
    drafts: list[HouseholdDraft],
) -> None:
    households: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    for draft in drafts:
        household_id = uuid.uuid4()
        group = draft.value("group")
        households.append(
            {
                "id": household_id,
                "village_id": village.id,
                "village_group_id": groups[group] if group is not None else None,
                "number": draft.number,
                "address": draft.value("address"),
                "local_hukou": draft.value("local_hukou"),
                "homestead_house": draft.value("homestead_house"),
                "has_resident": draft.value("has_resident"),
                "renter": draft.value("renter"),
                "participation": draft.value("participation"),
            }
        )
        for member in draft.members:
            person_id = uuid.uuid4()
            people.append(
                {
                    "id": person_id,
                    "name": member.name,
                    "phone": member.phone,
                    "village_id": village.id,
                }
            )
            members.append(
                {
                    "id": uuid.uuid4(),
                    "household_id": household_id,
                    "person_id": person_id,
                    "village_id": village.id,
                    "is_head": member.is_head,
                    "relation": member.relation,
                }
            )
    # Executemany batches the rows into a few statements instead of one round trip per row.
    await session.execute(insert(Household), households)
    await session.execute(insert(Person), people)
    await session.execute(insert(HouseholdMember), members)


async def import_households(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    data: bytes,
    *,
    filename: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    village = await get_village_for_admin(session, principal, village_id)
    # Parsing and checking ten thousand rows takes seconds: in a worker thread, so that the
    # process's other requests go on meanwhile.
    table = await anyio.to_thread.run_sync(read_table, data)
    groups, numbers, housed = await _village_facts(session, village)
    drafts, errors = await anyio.to_thread.run_sync(
        functools.partial(check, table, groups=groups, taken_numbers=numbers, housed_people=housed)
    )
    if errors:
        bad_lines = len({e.line for e in errors})
        raise Unprocessable(
            f"{bad_lines} row(s) have problems; nothing was imported.",
            code="household_import.invalid_rows",
            title=f"导入文件中有 {bad_lines} 行有误，未导入任何数据",
            error_count=len(errors),
            errors=[e.model_dump(mode="json") for e in errors],
        )
    report = ImportReport(
        dry_run=dry_run,
        format=table.format,
        households=len(drafts),
        members=sum(len(d.members) for d in drafts),
        ignored_columns=table.ignored,
    )
    if dry_run:
        return report
    await _insert(session, village, groups, drafts)
    audit.record(
        session,
        principal,
        "household.import",
        "village",
        village.id,
        after={
            "households": report.households,
            "members": report.members,
            "persons": report.members,
            "format": table.format,
            "filename": (filename or "")[:200],
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        town_id=village.town_id,
        village_id=village.id,
    )
    await session.flush()
    return report
