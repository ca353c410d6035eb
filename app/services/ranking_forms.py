"""The seeds' ranking forms as XLSX, read from the ranks stored at publication.

- 小组家庭积分情况汇总表 (翁源 annex 3): one village group, each household's month score, its year
  total so far and both ranks in the group;
- 个案台账 (旧县 annex 3): every household of the village for a month, as the office posts it;
- 季度汇总考评表 (张堰): each household's quarter total and rank.
"""

import uuid
from enum import StrEnum
from io import BytesIO

from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.errors import NotFound
from app.models import (
    HouseholdPeriodScore,
    PeriodKind,
    PeriodStatus,
    RankSpan,
    ScoringPeriod,
    VillageGroup,
)
from app.pagination import MAX_LIMIT, PageParams
from app.schemas.rankings import RankRow, RankScope
from app.security import Principal
from app.services import rankings
from app.services.points_year import quarter_months
from app.services.supervision.scope import overseen_village
from app.xlsx import safe, title_and_header


class RankingForm(StrEnum):
    GROUP_SUMMARY = "group_summary"  # 翁源
    HOUSEHOLD_LEDGER = "household_ledger"  # 旧县
    QUARTERLY_SUMMARY = "quarterly_summary"  # 张堰


async def _all_rows(
    session: AsyncSession, board: rankings.Board, scope: RankScope, group_id: uuid.UUID | None
) -> list[RankRow]:
    rows: list[RankRow] = []
    params = PageParams(limit=MAX_LIMIT)
    while True:
        page, cursor = await rankings.ranked_rows(
            session, board, scope=scope, group_id=group_id, params=params
        )
        rows += page
        if cursor is None:
            return rows
        params = PageParams(cursor=cursor, limit=MAX_LIMIT)


async def _year_so_far(
    session: AsyncSession, village_id: uuid.UUID, year: int, month: int, households: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    totals = await session.execute(
        select(col(HouseholdPeriodScore.household_id), func.sum(col(HouseholdPeriodScore.score)))
        .join(ScoringPeriod, col(ScoringPeriod.id) == col(HouseholdPeriodScore.period_id))
        .where(
            col(ScoringPeriod.village_id) == village_id,
            col(ScoringPeriod.year) == year,
            col(ScoringPeriod.kind) == PeriodKind.MONTH,
            col(ScoringPeriod.number) <= month,
            col(ScoringPeriod.status).in_([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]),
            col(HouseholdPeriodScore.household_id).in_(households),
        )
        .group_by(col(HouseholdPeriodScore.household_id))
    )
    return {household_id: int(total) for household_id, total in totals}


async def workbook(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    form: RankingForm,
    year: int,
    number: int,
    group_id: uuid.UUID | None,
) -> tuple[str, bytes]:
    village = await overseen_village(session, principal, village_id)
    span = RankSpan.QUARTER if form is RankingForm.QUARTERLY_SUMMARY else RankSpan.MONTH
    _, board = await rankings.board(session, principal, village.id, span, year, number)
    group_name = ""
    if form is RankingForm.GROUP_SUMMARY:
        group = await session.get(VillageGroup, group_id) if group_id else None
        if group is None or group.village_id != village.id:
            raise NotFound("Name the village group.", code="village_group.not_found")
        group_name = group.name
    scope = RankScope.VILLAGE_GROUP if group_id else RankScope.VILLAGE
    rows = await _all_rows(session, board, scope, group_id) if board else []
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    if form is RankingForm.GROUP_SUMMARY:
        sheet.title = "小组家庭积分情况汇总表"
        totals = await _year_so_far(
            session, village.id, year, number, [r.household_id for r in rows]
        )
        ordered = sorted(totals.values(), reverse=True)
        title_and_header(
            sheet,
            f"{village.name}{group_name}家庭积分情况汇总表（{year}年{number}月）",
            [
                "序号",
                "户号",
                "户主",
                "当月积分",
                "当月组内排名",
                "全年累计积分",
                "累计组内排名",
                "备注",
            ],
        )
        for n, row in enumerate(rows, start=1):
            total = totals.get(row.household_id, 0)
            sheet.append(
                [
                    n,
                    safe(row.number),
                    safe(row.head_name or ""),
                    row.score,
                    row.rank_in_group,
                    total,
                    1 + ordered.index(total) if row.household_id in totals else None,
                    "一票否决" if row.vetoed else "",
                ]
            )
        name = f"{village.name}{group_name}{year}年{number}月家庭积分情况汇总表.xlsx"
    elif form is RankingForm.HOUSEHOLD_LEDGER:
        sheet.title = "积分管理个案台账"
        title_and_header(
            sheet,
            f"{village.name}农村人居环境整治积分管理个案台账（{year}年{number}月）",
            ["序号", "户号", "户主", "当月积分", "全村排名", "备注"],
        )
        for n, row in enumerate(rows, start=1):
            sheet.append(
                [
                    n,
                    safe(row.number),
                    safe(row.head_name or ""),
                    row.score,
                    row.rank_in_village,
                    "当月一票否决" if row.vetoed else "",
                ]
            )
        name = f"{village.name}{year}年{number}月积分管理个案台账.xlsx"
    else:
        sheet.title = "季度汇总考评"
        months = list(quarter_months(number))
        title_and_header(
            sheet,
            f"{village.name}{year}年第{number}季度家庭积分汇总考评表",
            ["序号", "户号", "户主", *(f"{m}月" for m in months), "季度合计", "全村排名", "备注"],
        )
        for n, row in enumerate(rows, start=1):
            by_month = {m.number: m.score for m in row.months}
            sheet.append(
                [
                    n,
                    safe(row.number),
                    safe(row.head_name or ""),
                    *(by_month.get(m) for m in months),
                    row.score,
                    row.rank_in_village,
                    "一票否决" if row.vetoed else "",
                ]
            )
        name = f"{village.name}{year}年第{number}季度家庭积分汇总考评表.xlsx"
    buffer = BytesIO()
    book.save(buffer)
    return name, buffer.getvalue()
