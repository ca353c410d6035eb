"""The quarterly forms 旧县 asks of its villages, and the town's own summary, as .xlsx.

附件7 推进情况第X季度报表: month by month, households scored, scoring and publication on time,
redemptions. 附件6 资金拨付申请表: the quarter's redemptions household by household, as the
ledger (个案台账) and the passbook (积分存折) each record them, which must agree (确保两项数据
真实、准确、一致); the form states both totals and whether they agree.
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from app import clock
from app.models import Household, HouseholdMember, LedgerEntry, LedgerKind, Person
from app.schemas.supervision import VillageDashboard
from app.security import Principal
from app.services.passbook import KIND_LABELS, household_passbook
from app.services.points_year import quarter_number
from app.services.supervision import dashboard
from app.services.supervision.scope import overseen_village, supervised_town
from app.timeutil import SHANGHAI
from app.xlsx import safe, title_and_header

SPENDING = (LedgerKind.REDEMPTION, LedgerKind.REFUND)
SPENDING_LABELS = tuple(KIND_LABELS[k] for k in SPENDING)
FILING_LABELS = {None: "未报备", "filed": "已报备", "acknowledged": "已确认", "queried": "退回查询"}


def _instant(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), SHANGHAI)


def _yes(flag: bool | None) -> str:
    return "" if flag is None else ("是" if flag else "否")


def _save(workbook: Workbook) -> bytes:
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _bold_last(sheet: Worksheet) -> None:
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)


async def _redeemed_by_household(
    session: AsyncSession, village_id: uuid.UUID, start: date, end: date
) -> dict[uuid.UUID, tuple[int, date]]:
    """Net points each household spent between the days (inclusive), per the ledger, and
    the day of its last redemption."""
    day = func.date(func.timezone("Asia/Shanghai", col(LedgerEntry.created_at)))
    rows = await session.execute(
        select(col(LedgerEntry.household_id), func.sum(col(LedgerEntry.points)), func.max(day))
        .where(
            col(LedgerEntry.village_id) == village_id,
            col(LedgerEntry.kind).in_(SPENDING),
            col(LedgerEntry.created_at) >= _instant(start),
            col(LedgerEntry.created_at) < _instant(end + timedelta(days=1)),
        )
        .group_by(col(LedgerEntry.household_id))
    )
    return {h: (-int(p), last) for h, p, last in rows if p}


async def _monthly_redemptions(
    session: AsyncSession, village_id: uuid.UUID, start: date, end: date
) -> dict[int, tuple[int, int]]:
    """Month → (households that redeemed, net points), per the ledger."""
    local = func.timezone("Asia/Shanghai", col(LedgerEntry.created_at))
    month = func.extract("month", local)
    rows = await session.execute(
        select(
            month,
            func.count(func.distinct(col(LedgerEntry.household_id))),
            func.sum(col(LedgerEntry.points)),
        )
        .where(
            col(LedgerEntry.village_id) == village_id,
            col(LedgerEntry.kind).in_(SPENDING),
            col(LedgerEntry.created_at) >= _instant(start),
            col(LedgerEntry.created_at) < _instant(end + timedelta(days=1)),
        )
        .group_by(month)
    )
    return {int(m): (n, -int(p)) for m, n, p in rows}


def _money(rate: Decimal | None, points: int) -> Decimal | None:
    return rate * points if rate is not None else None


async def quarterly_progress(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int, quarter: int
) -> tuple[str, bytes]:
    """附件7: a village's 推进情况第X季度报表."""
    village = await overseen_village(session, principal, village_id)
    w = dashboard.window(year, quarter, None)
    figures = await dashboard.village_dashboard(session, principal, village.id, year, quarter, None)
    redeemed = await _monthly_redemptions(session, village.id, w.starts_on, w.ends_on)
    by_month = {p.starts_on.month: p for p in figures.periods}
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = f"第{quarter}季度报表"
    header = [
        "月份", "参与农户（户）", "已评分（户）", "评分是否按时", "评分逾期（天）",
        "亮分是否按时", "亮分逾期（天）", "平均分", "满分户占比", "兑换户数", "兑换积分",
        "折合金额（元）", "备案情况",
    ]  # fmt: skip
    title_and_header(
        sheet,
        f"旧县街道{village.name}农村人居环境整治积分制推进情况第{quarter}季度报表（{year}年）",
        header,
    )
    total_households = total_points = 0
    for month in range(w.starts_on.month, w.ends_on.month + 1):
        period = by_month.get(month)
        households, points = redeemed.get(month, (0, 0))
        total_households += households
        total_points += points
        sheet.append(
            [
                f"{month}月",
                figures.participation.participating,
                period.households_scored if period else None,
                _yes(period.scoring_days_late == 0) if period and period.scoring_due_on else "",
                period.scoring_days_late if period else None,
                _yes(period.publication_days_late == 0)
                if period and period.publication_due_on
                else "",
                period.publication_days_late if period else None,
                period.mean if period else None,
                period.share_full if period else None,
                households,
                points,
                _money(figures.yuan_per_point, points),
                FILING_LABELS[period.filing.status.value if period.filing.status else None]
                if period
                else "未开展",
            ]
        )
    sheet.append(
        ["合计", None, None, None, None, None, None, None, None, total_households, total_points,
         _money(figures.yuan_per_point, total_points), None]
    )  # fmt: skip
    _bold_last(sheet)
    sheet.append([])
    sheet.append(["未兑换积分（结转）", figures.liability.outstanding_points])
    sheet.append(["待审核申报（件）", figures.claims_pending.total])
    sheet.freeze_panes = "A3"
    return f"progress-{year}-q{quarter}.xlsx", _save(workbook)


@dataclass
class FundLine:
    household_id: uuid.UUID
    number: str
    head: str
    ledger_points: int
    passbook_points: int
    last_day: date


async def fund_request(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int, quarter: int
) -> tuple[str, bytes]:
    """附件6: the quarter's redemption funds a village requests from the street."""
    village = await overseen_village(session, principal, village_id)
    w = dashboard.window(year, quarter, None)
    figures = await dashboard.village_dashboard(session, principal, village.id, year, quarter, None)
    redeemed = await _redeemed_by_household(session, village.id, w.starts_on, w.ends_on)
    head_member, head = aliased(HouseholdMember), aliased(Person)
    households = {
        h: (number, name or "")
        for h, number, name in (
            await session.execute(
                select(col(Household.id), col(Household.number), col(head.name))
                .outerjoin(
                    head_member,
                    and_(
                        col(head_member.household_id) == col(Household.id),
                        col(head_member.is_head),
                    ),
                )
                .outerjoin(head, col(head.id) == col(head_member.person_id))
                .where(col(Household.id).in_(list(redeemed)))
            )
        ).all()
    }
    lines = []
    for household_id, (points, last_day) in redeemed.items():
        # The passbook as the household holds it: its redemption and refund lines in the quarter
        # (a January spend may draw on last year's points, so both years' books are read).
        passbook_points = 0
        for book_year in {w.starts_on.year - 1, w.starts_on.year}:
            book = await household_passbook(session, principal, household_id, book_year)
            passbook_points -= sum(
                line.points
                for line in book.lines
                if w.starts_on <= line.day <= w.ends_on
                and line.summary.split("：")[0] in SPENDING_LABELS
            )
        number, name = households[household_id]
        lines.append(FundLine(household_id, number, name, points, passbook_points, last_day))
    lines.sort(key=lambda line: (line.number, str(line.household_id)))
    rate = figures.yuan_per_point
    ledger_total = sum(line.ledger_points for line in lines)
    passbook_total = sum(line.passbook_points for line in lines)

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "资金拨付申请表"
    header = ["序号", "户号", "户主", "兑换积分（个案台账）", "兑换积分（积分存折）",
              "折合金额（元）", "最后兑换日期", "台账与存折一致"]  # fmt: skip
    title_and_header(
        sheet, f"旧县街道积分制资金拨付申请表（{village.name} {year}年第{quarter}季度）", header
    )
    for n, line in enumerate(lines, start=1):
        sheet.append(
            [n, safe(line.number), safe(line.head), line.ledger_points, line.passbook_points,
             _money(rate, line.ledger_points), line.last_day,
             _yes(line.ledger_points == line.passbook_points)]
        )  # fmt: skip
        sheet.cell(row=sheet.max_row, column=7).number_format = "yyyy-mm-dd"
    sheet.append(
        ["合计", f"{len(lines)}户", None, ledger_total, passbook_total,
         _money(rate, ledger_total), None, _yes(ledger_total == passbook_total)]
    )  # fmt: skip
    _bold_last(sheet)
    sheet.append([])
    sheet.append(["申请单位", safe(village.name)])
    sheet.append(["申请事项", f"{year}年第{quarter}季度积分兑换资金"])
    sheet.append(["兑换标准", f"1分折合{rate}元物品（不兑现金）" if rate is not None else "未设定"])
    sheet.append(["申请金额（元）", _money(rate, ledger_total)])
    sheet.append(["村（社区）意见", None, None, "街道审核意见"])
    sheet.freeze_panes = "A3"
    return f"fund-request-{year}-q{quarter}.xlsx", _save(workbook)


async def town_summary(
    session: AsyncSession, principal: Principal, town_id: uuid.UUID, year: int, quarter: int
) -> tuple[str, bytes]:
    """The town's quarter across its villages, from the same figures as its dashboard."""
    town = await supervised_town(session, principal, town_id)
    board = await dashboard.town_dashboard(session, principal, town.id, year, quarter, None)
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = f"第{quarter}季度汇总"
    header = [
        "序号", "村", "参与农户（户）", "符合条件（户）", "考核期数", "已公示", "逾期期数",
        "平均分", "标准差（各期加权）", "满分户占比", "异常评分员", "已报备", "退回查询",
        "抽查平均偏差", "待审申报（件）", "兑换积分", "折合金额（元）", "未兑换积分",
    ]  # fmt: skip
    title_and_header(sheet, f"{town.name}积分制推进情况汇总表（{year}年第{quarter}季度）", header)
    for n, village in enumerate(board.villages, start=1):
        sheet.append(_summary_row(n, village))
    sheet.append(
        ["合计", None,
         sum(v.participation.participating for v in board.villages),
         sum(v.participation.eligible for v in board.villages),
         sum(len(v.periods) for v in board.villages), None,
         sum(v.periods_late for v in board.villages), None, None, None, None,
         sum(v.periods_filed for v in board.villages),
         sum(v.periods_queried for v in board.villages), None,
         sum(v.claims_pending.total for v in board.villages),
         sum(v.redemptions.points for v in board.villages), None,
         sum(v.liability.outstanding_points for v in board.villages)]
    )  # fmt: skip
    _bold_last(sheet)
    sheet.freeze_panes = "C3"
    return f"town-summary-{year}-q{quarter}.xlsx", _save(workbook)


def _summary_row(n: int, village: VillageDashboard) -> list[object]:
    scored = [p for p in village.periods if p.mean is not None]
    weights = sum(p.households_scored or 0 for p in scored)

    def weighted(field: str) -> float | None:
        if not weights:
            return None
        total = sum((getattr(p, field) or 0) * (p.households_scored or 0) for p in scored)
        return round(total / weights, 2)

    standouts = sorted({s.name for p in village.periods for s in p.standout_scorers})
    checks = [p.inspection.mean_abs_difference for p in village.periods if p.inspection]
    deviations = [d for d in checks if d is not None]
    published = sum(p.published_at is not None for p in village.periods)
    return [
        n, safe(village.name), village.participation.participating,
        village.participation.eligible, len(village.periods), published, village.periods_late,
        weighted("mean"), weighted("std_dev"), weighted("share_full"), safe("、".join(standouts)),
        village.periods_filed, village.periods_queried,
        round(sum(deviations) / len(deviations), 2) if deviations else None,
        village.claims_pending.total, village.redemptions.points, village.redemptions.yuan,
        village.liability.outstanding_points,
    ]  # fmt: skip


def quarter_or_now(year: int | None, quarter: int | None) -> tuple[int, int]:
    today = clock.today()
    return year or today.year, quarter or quarter_number(today.month)
