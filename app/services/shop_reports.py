"""What a shop handed out (the 兑换表 of 翁源's annex) and what a village still owes in points
(its liability), so the scheme never promises more goods than it can fund."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import village_scope
from app.errors import NotFound
from app.models import (
    Household,
    HouseholdBalance,
    HouseholdMember,
    LedgerEntry,
    LedgerKind,
    OrderStatus,
    Person,
    Role,
    Shop,
    ShopOrder,
    ShopOrderLine,
    Village,
    VillageGroup,
)
from app.schemas.rules import Policy
from app.schemas.shop import LiabilityRead
from app.security import Principal
from app.services.rules import rule_set_in_effect
from app.services.shop import attended_villages, get_shop, shop_attended
from app.timeutil import SHANGHAI
from app.xlsx import safe, title_and_header

HEADER = [
    "序号", "兑换日期", "户号", "户主", "村民小组", "兑换物品", "数量", "单价（积分）", "积分",
    "方式", "状态", "经办人",
]  # fmt: skip
CHANNELS = {"ahead": "预约自提", "pay_code": "扫码兑换", "card": "积分卡（已核验身份）"}
STATUSES = {OrderStatus.COLLECTED: "已领取", OrderStatus.REFUNDED: "已退货"}


@dataclass
class SheetRow:
    day: date
    number: str
    head: str
    group: str
    item: str
    quantity: int
    unit_points: int
    channel: str
    status: str
    attendant: str


async def redemption_sheet(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, year: int, month: int | None
) -> tuple[str, bytes]:
    """(file name, workbook): every line handed over in the month (or year), refunds marked."""
    first = date(year, month or 1, 1)
    after = date(year + 1, 1, 1) if (month or 12) == 12 else date(year, (month or 12) + 1, 1)
    shop, lines = await sheet_lines(session, principal, shop_id, first, after)
    period = f"{year}年{month}月" if month else f"{year}年"
    title = f"{shop.name}家庭积分兑换表（{period}）"
    return f"redemptions-{year}{f'-{month:02d}' if month else ''}.xlsx", _workbook(title, lines)


async def sheet_lines(
    session: AsyncSession, principal: Principal, shop_id: uuid.UUID, first: date, after: date
) -> tuple[Shop, list[SheetRow]]:
    """The sheet's lines handed over from `first` up to (not including) `after`, Shanghai days;
    the staff web shows today's at the counter."""
    scope = or_(shop_attended(principal), col(Shop.town_id).in_(principal.supervised_town_ids()))
    shop = await get_shop(session, shop_id, scope)
    supervised = shop.town_id in principal.supervised_town_ids()
    villages = None if supervised else attended_villages(principal, shop)
    start = datetime.combine(first, datetime.min.time(), SHANGHAI)
    end = datetime.combine(after, datetime.min.time(), SHANGHAI)
    head = (
        select(col(Person.name))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(col(HouseholdMember.household_id) == col(Household.id))
        .order_by(col(HouseholdMember.is_head).desc(), col(HouseholdMember.created_at))
        .limit(1)
        .scalar_subquery()
    )
    attendant = (
        select(col(Person.name))
        .where(col(Person.id) == col(ShopOrder.collected_by))
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            col(ShopOrder.collected_at),
            col(Household.number),
            head,
            col(VillageGroup.name),
            col(ShopOrderLine.item_name),
            col(ShopOrderLine.quantity),
            col(ShopOrderLine.unit_points),
            col(ShopOrder.channel),
            col(ShopOrder.status),
            attendant,
        )  # fmt: skip
        .join(ShopOrder, col(ShopOrder.id) == col(ShopOrderLine.order_id))
        .join(Household, col(Household.id) == col(ShopOrder.household_id))
        .outerjoin(VillageGroup, col(VillageGroup.id) == col(Household.village_group_id))
        .where(
            col(ShopOrder.shop_id) == shop.id,
            col(ShopOrder.status).in_(list(STATUSES)),
            col(ShopOrder.collected_at) >= start,
            col(ShopOrder.collected_at) < end,
            col(ShopOrder.village_id).in_(villages) if villages is not None else true(),
        )
        .order_by(col(ShopOrder.collected_at), col(ShopOrder.id), col(ShopOrderLine.item_name))
    )
    lines = [
        SheetRow(
            day=at.astimezone(SHANGHAI).date(),
            number=number,
            head=name or "",
            group=group or "",
            item=item,
            quantity=quantity,
            unit_points=unit,
            channel=CHANNELS[channel.value],
            status=STATUSES[status],
            attendant=who or "",
        )  # fmt: skip
        for at, number, name, group, item, quantity, unit, channel, status, who in rows
    ]
    return shop, lines


def _workbook(title: str, lines: list[SheetRow]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "兑换表"
    title_and_header(sheet, title, HEADER)
    handed_out = 0
    for n, line in enumerate(lines, start=1):
        points = line.quantity * line.unit_points
        if line.status == STATUSES[OrderStatus.COLLECTED]:
            handed_out += points
        sheet.append(
            [
                n, line.day, safe(line.number), safe(line.head), safe(line.group),
                safe(line.item), line.quantity, line.unit_points, points, line.channel,
                line.status, safe(line.attendant),
            ]
        )  # fmt: skip
        sheet.cell(row=sheet.max_row, column=2).number_format = "yyyy-mm-dd"
    sheet.append([None, "合计（不含退货）", None, None, None, None, None, None, handed_out])
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)
    for column, width in zip(
        "ABCDEFGHIJKL", (6, 12, 10, 10, 14, 20, 6, 12, 8, 20, 8, 10), strict=True
    ):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A3"
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def liability(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int | None
) -> LiabilityRead:
    scope = village_scope(principal, col(Village.id), roles=(Role.VILLAGE_ADMIN,))
    village = (
        await session.execute(select(Village).where(col(Village.id) == village_id, scope))
    ).scalar_one_or_none()
    if village is None:
        raise NotFound("No such village.", code="village.not_found")
    year = year or clock.today().year
    # Redemptions net of what came back (refunds and released orders) in the year.
    spent = await session.scalar(
        select(func.coalesce(func.sum(col(LedgerEntry.points)), 0)).where(
            col(LedgerEntry.village_id) == village.id,
            col(LedgerEntry.year) == year,
            col(LedgerEntry.kind).in_([LedgerKind.REDEMPTION, LedgerKind.REFUND]),
        )
    )
    outstanding = await session.scalar(
        select(func.coalesce(func.sum(col(HouseholdBalance.balance)), 0)).where(
            col(HouseholdBalance.village_id) == village.id
        )
    )
    rule_set = await rule_set_in_effect(session, village.id, clock.today())
    rate = Policy.model_validate(rule_set.policy).redemption.yuan_per_point if rule_set else None
    redeemed = -int(spent or 0)
    owed = int(outstanding or 0)
    return LiabilityRead(
        village_id=village.id,
        year=year,
        yuan_per_point=rate,
        points_redeemed=redeemed,
        yuan_redeemed=rate * redeemed if rate is not None else None,
        outstanding_points=owed,
        outstanding_yuan=rate * owed if rate is not None else None,
    )
