"""A household's 积分存折 for one year, as an XLSX workbook laid out like the paper passbook.

The passbook must match the 个案台账 (the ledger): every line is a ledger entry of the year, in
seq order, and its running 结余 starts from the balance carried in from the years before, so the
last line's 结余 is the household's balance (when nothing was posted for a later year).
"""

import uuid
from dataclasses import dataclass, field
from datetime import date
from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app import clock
from app.authz import household_scope
from app.errors import NotFound
from app.models import Household, HouseholdMember, LedgerEntry, LedgerKind, Person, Village
from app.security import Principal
from app.timeutil import SHANGHAI
from app.xlsx import safe, title_and_header

KIND_LABELS = {
    LedgerKind.INSPECTION: "考评",
    LedgerKind.BONUS: "加分",
    LedgerKind.VETO: "一票否决",
    LedgerKind.AWARD: "奖励",
    LedgerKind.ADJUSTMENT: "调整",
    LedgerKind.CORRECTION: "更正",
    LedgerKind.REDEMPTION: "兑换",
    LedgerKind.REFUND: "退还",
    LedgerKind.EXPIRY: "清零",
}
HEADER = ["日期", "摘要", "序号", "积分变动", "计入排名", "结余"]
OPENING_LABEL = "上年结转"
CLOSING_LABEL = "本年合计（年度积分）"


@dataclass
class PassbookLine:
    day: date  # Asia/Shanghai date of the entry
    summary: str
    code: str | None
    points: int
    counts_score: bool
    balance: int  # the spendable balance after this line


@dataclass
class Passbook:
    household_id: uuid.UUID
    village_name: str
    number: str
    head_name: str | None
    year: int
    opening_balance: int
    lines: list[PassbookLine] = field(default_factory=list)

    @property
    def year_score(self) -> int:
        return sum(line.points for line in self.lines if line.counts_score)

    @property
    def closing_balance(self) -> int:
        return self.lines[-1].balance if self.lines else self.opening_balance

    @property
    def title(self) -> str:
        head = f" 户主{self.head_name}" if self.head_name else ""
        return f"{self.village_name} 户号{self.number}{head} {self.year}年度积分存折"


def _summary(kind: LedgerKind, subject: str | None, reason: str = "") -> str:
    label = KIND_LABELS[kind]
    text = subject or reason
    if subject and reason:
        text = f"{subject}（{reason}）"
    return f"{label}：{text}" if text else label


async def household_passbook(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID, year: int | None
) -> Passbook:
    """The passbook of a household the principal may read (404 otherwise)."""
    year = year or clock.today().year
    head_member = aliased(HouseholdMember)
    head = aliased(Person)
    found = (
        await session.execute(
            select(col(Household.id), col(Household.number), col(Village.name), col(head.name))
            .join(Village, col(Village.id) == col(Household.village_id))
            .outerjoin(
                head_member,
                and_(col(head_member.household_id) == col(Household.id), col(head_member.is_head)),
            )
            .outerjoin(head, col(head.id) == col(head_member.person_id))
            .where(col(Household.id) == household_id, household_scope(principal))
        )
    ).first()
    if found is None:
        raise NotFound("No such household.", code="household.not_found")

    carried_in = select(func.coalesce(func.sum(col(LedgerEntry.points)), 0)).where(
        col(LedgerEntry.household_id) == household_id,
        col(LedgerEntry.counts_balance),
        col(LedgerEntry.year) < year,
    )
    # The opening balance rides along with the year's entries, so both come from one snapshot.
    original = aliased(LedgerEntry)
    rows = (
        await session.execute(
            select(
                LedgerEntry,
                col(original.item_code),
                col(original.item_title),
                col(original.memo),
                carried_in.scalar_subquery(),
            )
            .outerjoin(original, col(original.id) == col(LedgerEntry.reverses_id))
            .where(col(LedgerEntry.household_id) == household_id, col(LedgerEntry.year) == year)
            .order_by(col(LedgerEntry.seq))
        )
    ).all()
    opening = int(rows[0][4]) if rows else int(await session.scalar(carried_in) or 0)

    passbook = Passbook(
        household_id=found[0],
        village_name=found[2],
        number=found[1],
        head_name=found[3],
        year=year,
        opening_balance=opening,
    )
    balance = opening
    for entry, original_code, original_title, original_memo, _ in rows:
        if entry.counts_balance:
            balance += entry.points
        if entry.kind is LedgerKind.CORRECTION:
            # Name what was reversed (its item, else its memo), then the correction's reason.
            code = entry.item_code or original_code
            summary = _summary(entry.kind, original_title or original_memo, entry.memo)
        else:
            code = entry.item_code
            summary = _summary(entry.kind, entry.item_title or entry.memo)
        passbook.lines.append(
            PassbookLine(
                day=entry.created_at.astimezone(SHANGHAI).date(),
                summary=summary,
                code=code,
                points=entry.points,
                counts_score=entry.counts_score,
                balance=balance,
            )
        )
    return passbook


def passbook_workbook(passbook: Passbook) -> bytes:
    """Title, header, the carried-in balance, one row per entry, and the year's closing line."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "积分存折"
    title_and_header(sheet, passbook.title, HEADER)
    for cell in sheet[2]:
        cell.alignment = Alignment(horizontal="center")
    sheet.append([None, OPENING_LABEL, None, None, None, passbook.opening_balance])
    for line in passbook.lines:
        sheet.append(
            [
                line.day,
                safe(line.summary),
                safe(line.code),
                line.points,
                "是" if line.counts_score else "否",
                line.balance,
            ]
        )
        sheet.cell(row=sheet.max_row, column=1).number_format = "yyyy-mm-dd"
    sheet.append([None, CLOSING_LABEL, None, passbook.year_score, None, passbook.closing_balance])
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    for column, width in zip("ABCDEF", (12, 44, 8, 10, 9, 10), strict=True):
        sheet.column_dimensions[column].width = width
    for row in sheet.iter_rows(min_row=3):
        row[1].alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "A3"
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
