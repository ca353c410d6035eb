"""Year-end awards (年终评比, 翁源): prizes for a share of each award scope's households on the
year's published total, split between levels; a draft, approved (audited), then published.

Rounding and ties, as the list answers them (ROUNDING, TIE_RULE):
- places = share × eligible households of the scope, rounded half up (21 × 30% = 6.3 → 6,
  20 → 6, 7 × 30% = 2.1 → 2);
- each level's places come from the cumulative shares, rounded half up, so they always add up to
  the places (6 → 1/2/3 at 20/30/50%; 2 → 0/1/1);
- a household takes the first level whose cumulative places reach its rank, ranks shared by ties
  (1, 1, 3): households tied across a boundary all take the better level and the next level
  begins after them; a tie at the last place awards every tied household. Database order never
  decides.
"""

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from io import BytesIO
from typing import Any

from openpyxl import Workbook
from sqlalchemy import delete, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.errors import Conflict
from app.models import (
    AwardEntry,
    AwardList,
    AwardScopeCount,
    AwardStatus,
    Household,
    HouseholdMember,
    HouseholdRank,
    NotificationKind,
    PeriodStatus,
    Person,
    RankSpan,
    ScoringPeriod,
    Village,
    VillageGroup,
)
from app.schemas.rankings import AwardLevelCount, AwardListRead, AwardRow, AwardScopeRead
from app.schemas.rules import AwardBasis, AwardScope, Policy, YearEndAwards
from app.security import Principal
from app.services import audit, notifications
from app.services.organisation import get_village, get_village_for_admin
from app.services.rankings import is_village_staff, notice_board_name
from app.services.rules import rule_set_in_force
from app.services.supervision.scope import overseen_village
from app.xlsx import safe, title_and_header

ROUNDING = (
    "名额 = 合格户数 × 比例，四舍五入（21户×30%=6.3→6）；各等奖按累计比例四舍五入（6名：1/2/3）"
)
TIE_RULE = (
    "同分同名次；名次落在某等奖累计名额内即得该等奖，边界同分者均得较高奖项，"
    "末位同分者均获奖（获奖户数可多于名额），不按录入顺序取舍"
)


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Plan:
    places_exact: Decimal
    places: int
    level_places: list[int]
    ranks: list[int]
    levels: list[int | None]  # per score given, the level index or None


def plan(scores: list[int], awards: YearEndAwards) -> Plan:
    """The places of one scope and the level of each household (scores in any order)."""
    exact = (awards.household_share * len(scores)).quantize(Decimal("0.01"))
    places = half_up(exact)
    cumulative: list[int] = []
    share = Decimal(0)
    for level in awards.levels:
        share += level.share
        cumulative.append(half_up(places * share))
    ranks = [1 + sum(other > score for other in scores) for score in scores]
    levels = [next((k for k, cut in enumerate(cumulative) if rank <= cut), None) for rank in ranks]
    level_places = [cut - (cumulative[k - 1] if k else 0) for k, cut in enumerate(cumulative)]
    return Plan(exact, places, level_places, ranks, levels)


def _policy_awards(policy: Policy) -> YearEndAwards:
    if policy.year_end_awards is None:
        raise Conflict(
            "The village's rules give no year-end awards.",
            code="award.not_in_policy",
            title="本村积分细则未设年终评比",
        )
    return policy.year_end_awards


async def _year_policy(session: AsyncSession, village: Village, year: int) -> Policy:
    rule_set = await rule_set_in_force(session, village.id, date(year, 12, 31))
    if rule_set is None:
        raise Conflict(
            "No approved rules for that year.", code="award.no_rules", title="该年度没有积分细则"
        )
    return Policy.model_validate(rule_set.policy)


async def _list(
    session: AsyncSession, village: Village, year: int, *, lock: bool = False
) -> AwardList | None:
    statement = select(AwardList).where(
        col(AwardList.village_id) == village.id, col(AwardList.year) == year
    )
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


def _not_computed() -> Conflict:
    return Conflict(
        "The year's award list has not been computed.",
        code="award.not_computed",
        title="尚未生成年终评比名单",
    )


def _wrong_status(awards: AwardList, needed: AwardStatus) -> Conflict:
    return Conflict(
        f"The award list is {awards.status.value}; this needs {needed.value}.",
        code="award.wrong_status",
        title="评比名单当前状态不允许该操作",
        status_now=awards.status.value,
    )


async def compute_draft(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int
) -> AwardListRead:
    """(Re)compute the draft from the year's published totals; only while a draft."""
    village = await get_village_for_admin(session, principal, village_id)
    awards = _policy_awards(await _year_policy(session, village, year))
    pending = (
        await session.execute(
            select(col(ScoringPeriod.number))
            .where(
                col(ScoringPeriod.village_id) == village.id,
                col(ScoringPeriod.year) == year,
                col(ScoringPeriod.status).not_in([PeriodStatus.PUBLISHED, PeriodStatus.CLOSED]),
            )
            .order_by(col(ScoringPeriod.number))
        )
    ).scalars()
    waiting = list(pending)
    if waiting:
        raise Conflict(
            "Every period of the year must be published before the awards.",
            code="award.periods_pending",
            title="本年度尚有考核周期未公示",
            periods=waiting,
        )
    existing = await _list(session, village, year, lock=True)
    if existing is not None and existing.status is not AwardStatus.DRAFT:
        raise _wrong_status(existing, AwardStatus.DRAFT)
    rows = (
        await session.execute(
            select(
                col(HouseholdRank.household_id),
                col(HouseholdRank.village_group_id),
                col(HouseholdRank.score),
            )
            .join(Household, col(Household.id) == col(HouseholdRank.household_id))
            .where(
                col(HouseholdRank.village_id) == village.id,
                col(HouseholdRank.year) == year,
                col(HouseholdRank.span) == RankSpan.YEAR,
                col(HouseholdRank.number) == 0,
                ~col(HouseholdRank.vetoed),
                col(Household.has_resident)
                if awards.basis is AwardBasis.RESIDENT_HOUSEHOLDS
                else true(),
            )
        )
    ).all()
    if existing is None:
        existing = AwardList(
            village_id=village.id,
            town_id=village.town_id,
            year=year,
            status=AwardStatus.DRAFT,
            computed_by=principal.person_id,
        )
        session.add(existing)
        await session.flush()
    else:
        await session.execute(
            delete(AwardEntry).where(col(AwardEntry.award_list_id) == existing.id)
        )
        await session.execute(
            delete(AwardScopeCount).where(col(AwardScopeCount.award_list_id) == existing.id)
        )
        existing.computed_at = clock.now()
        existing.computed_by = principal.person_id
    scopes: dict[uuid.UUID | None, list[Any]] = {}
    for row in rows:
        key = row.village_group_id if awards.scope is AwardScope.VILLAGE_GROUP else None
        scopes.setdefault(key, []).append(row)
    for group_id, members in scopes.items():
        result = plan([m.score for m in members], awards)
        session.add(
            AwardScopeCount(
                award_list_id=existing.id,
                village_group_id=group_id,
                eligible=len(members),
                places_exact=result.places_exact,
                places=result.places,
                level_places=result.level_places,
                level_awarded=[result.levels.count(k) for k in range(len(awards.levels))],
            )
        )
        for member, rank, level in zip(members, result.ranks, result.levels, strict=True):
            if level is None:
                continue
            session.add(
                AwardEntry(
                    award_list_id=existing.id,
                    village_id=village.id,
                    household_id=member.household_id,
                    village_group_id=member.village_group_id,
                    level=level,
                    level_name=awards.levels[level].name,
                    score=member.score,
                    rank=rank,
                )
            )
    await session.flush()
    return await _read(session, existing, awards, staff=True)


async def _locked_in(
    session: AsyncSession,
    principal: Principal,
    village_id: uuid.UUID,
    year: int,
    status: AwardStatus,
) -> tuple[Village, YearEndAwards, AwardList]:
    """The village's list for the year, locked, for a step that starts from `status`."""
    village = await get_village_for_admin(session, principal, village_id)
    awards = _policy_awards(await _year_policy(session, village, year))
    found = await _list(session, village, year, lock=True)
    if found is None:
        raise _not_computed()
    if found.status is not status:
        raise _wrong_status(found, status)
    return village, awards, found


async def approve(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int
) -> AwardListRead:
    """两委审定 of the list: frozen from here on, and recorded in the audit log."""
    _, awards, found = await _locked_in(session, principal, village_id, year, AwardStatus.DRAFT)
    before = audit.snapshot(found)
    found.status = AwardStatus.APPROVED
    found.approved_at = clock.now()
    found.approved_by = principal.person_id
    await session.flush()
    _audit(session, principal, "award_list.approve", found, before)
    return await _read(session, found, awards, staff=True)


async def publish(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int
) -> AwardListRead:
    """Published to the village: its villagers read it and are told by subscribe message."""
    village, awards, found = await _locked_in(
        session, principal, village_id, year, AwardStatus.APPROVED
    )
    before = audit.snapshot(found)
    found.status = AwardStatus.PUBLISHED
    found.published_at = clock.now()
    found.published_by = principal.person_id
    await session.flush()
    _audit(session, principal, "award_list.publish", found, before)
    today = clock.today()
    await notifications.notify_village_households(
        session,
        village_id=village.id,
        kind=NotificationKind.AWARD_PUBLISHED,
        data={
            "thing1": f"{year}年度积分年终评比结果",
            "date2": f"{today.year}年{today.month}月{today.day}日",
            "thing3": "请进小程序查看获奖名单",
        },
    )
    return await _read(session, found, awards, staff=True)


def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    found: AwardList,
    before: dict[str, Any] | None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        "award_list",
        found.id,
        before=before,
        after=audit.snapshot(found),
        town_id=found.town_id,
        village_id=found.village_id,
    )


async def list_awards(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int | None
) -> list[AwardListRead]:
    """The village's award lists; villagers see published ones only, names as on the board."""
    village = await get_village(session, principal, village_id)
    staff = is_village_staff(principal, village)
    statement = select(AwardList).where(col(AwardList.village_id) == village.id)
    if year is not None:
        statement = statement.where(col(AwardList.year) == year)
    if not staff:
        statement = statement.where(col(AwardList.status) == AwardStatus.PUBLISHED)
    found = list((await session.execute(statement.order_by(col(AwardList.year)))).scalars())
    out = []
    for award_list in found:
        policy = await _year_policy(session, village, award_list.year)
        out.append(await _read(session, award_list, _policy_awards(policy), staff=staff))
    return out


async def _read(
    session: AsyncSession, found: AwardList, awards: YearEndAwards, *, staff: bool
) -> AwardListRead:
    head = (
        select(col(Person.name))
        .join(HouseholdMember, col(HouseholdMember.person_id) == col(Person.id))
        .where(
            col(HouseholdMember.household_id) == col(AwardEntry.household_id),
            col(HouseholdMember.is_head),
        )
        .scalar_subquery()
    )
    entries = (
        await session.execute(
            select(AwardEntry, col(Household.number), head)
            .join(Household, col(Household.id) == col(AwardEntry.household_id))
            .outerjoin(VillageGroup, col(VillageGroup.id) == col(AwardEntry.village_group_id))
            .where(col(AwardEntry.award_list_id) == found.id)
            .order_by(
                col(VillageGroup.name).nulls_last(),
                col(AwardEntry.level),
                col(AwardEntry.rank),
                col(Household.number),
            )
        )
    ).all()
    counts = (
        await session.execute(
            select(AwardScopeCount)
            .where(col(AwardScopeCount.award_list_id) == found.id)
            .order_by(col(AwardScopeCount.village_group_id))
        )
    ).scalars()
    return AwardListRead(
        id=found.id,
        village_id=found.village_id,
        year=found.year,
        status=found.status,
        scope=awards.scope,
        household_share=awards.household_share,
        rounding=ROUNDING,
        tie_rule=TIE_RULE,
        computed_at=found.computed_at,
        approved_at=found.approved_at,
        published_at=found.published_at,
        scopes=[
            AwardScopeRead(
                village_group_id=c.village_group_id,
                eligible=c.eligible,
                places_exact=c.places_exact,
                places=c.places,
                levels=[
                    AwardLevelCount(name=level.name, places=places, awarded=awarded)
                    for level, places, awarded in zip(
                        awards.levels, c.level_places, c.level_awarded, strict=True
                    )
                ],
            )
            for c in counts
        ],
        rows=[
            AwardRow(
                household_id=entry.household_id,
                number=number,
                head_name=name if staff else notice_board_name(name),
                village_group_id=entry.village_group_id,
                level=entry.level,
                level_name=entry.level_name,
                score=entry.score,
                rank=entry.rank,
            )
            for entry, number, name in entries
        ],
    )


async def workbook(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int
) -> tuple[str, bytes]:
    """The award list as an XLSX: one row per household awarded, by group and level."""
    village = await overseen_village(session, principal, village_id)
    found = await _list(session, village, year)
    if found is None:
        raise _not_computed()
    awards = _policy_awards(await _year_policy(session, village, year))
    read = await _read(session, found, awards, staff=True)
    names = dict(
        (
            await session.execute(
                select(col(VillageGroup.id), col(VillageGroup.name)).where(
                    col(VillageGroup.village_id) == village.id
                )
            )
        ).all()
    )
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "年终评比"
    status = {"draft": "草稿", "approved": "已审定", "published": "已公布"}[found.status.value]
    title_and_header(
        sheet,
        f"{village.name}{year}年度家庭积分年终评比名单（{status}）",
        ["序号", "村小组", "户号", "户主", "全年累计积分", "组内名次", "奖项"],
    )
    for n, row in enumerate(read.rows, start=1):
        sheet.append(
            [
                n,
                safe(names.get(row.village_group_id, "") if row.village_group_id else ""),
                safe(row.number),
                safe(row.head_name or ""),
                row.score,
                row.rank,
                safe(row.level_name),
            ]
        )
    sheet.append([])
    for scope in read.scopes:
        label = (
            names.get(scope.village_group_id, village.name)
            if scope.village_group_id
            else village.name
        )
        split = "、".join(
            f"{level.name}{level.places}名(实得{level.awarded})" for level in scope.levels
        )
        sheet.append(
            [
                safe(
                    f"{label}：合格{scope.eligible}户，名额{scope.places_exact}→{scope.places}；{split}"
                )
            ]
        )
    sheet.append([safe(f"取整：{ROUNDING}")])
    sheet.append([safe(f"同分：{TIE_RULE}")])
    buffer = BytesIO()
    book.save(buffer)
    return f"{village.name}{year}年度年终评比名单.xlsx", buffer.getvalue()
