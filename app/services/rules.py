"""Rule sets: drafts from templates or earlier sets, edits, town approval (备案), versions."""

import json
import uuid
from collections.abc import Sequence
from datetime import date
from enum import Enum
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    Text,
    cast,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.authz import (
    SCOPE_PARAMETERS,
    STAFF_READ_ROLES,
    scope_values,
    village_scope_parameters,
)
from app.db import DriverSource
from app.driver import DriverStatement, json_bytes, param
from app.errors import Conflict, NotFound, Unprocessable
from app.models import (
    EDITABLE_STATUSES,
    ItemKind,
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    Village,
)
from app.rule_templates import all_items, templates
from app.schemas.rules import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    ItemCreate,
    ItemRead,
    ItemUpdate,
    PeriodLength,
    Policy,
    RuleSetCreate,
    RuleSetRead,
    RuleSetSummary,
    RuleSetUpdate,
    RuleTemplate,
    ScoringMode,
    TemplateCategory,
    TemplateSummary,
)
from app.security import Principal
from app.services import audit
from app.services.organisation import get_village, get_village_for_admin
from app.services.points_year import calendar_of


class Access(Enum):
    READ = "read"  # approved sets: anyone of the village; drafts: its admins and its town
    EDIT = "edit"  # the village's admins
    DECIDE = "decide"  # the town's supervisors (备案)


# Templates


def list_templates() -> list[TemplateSummary]:
    return [
        TemplateSummary(
            code=t.code,
            title=t.title,
            locality=t.locality,
            source=t.source,
            year=t.year,
            notes=t.notes,
            scoring_mode=t.policy.scoring_mode,
            period=t.policy.period,
            item_count=len(all_items(t.categories)),
        )
        for t in templates().values()
    ]


def get_template(code: str) -> RuleTemplate:
    template = templates().get(code)
    if template is None:
        raise NotFound("No such rule template.", code="rule_template.not_found")
    return template


# Reading


def _draft_readers(principal: Principal) -> ColumnElement[bool]:
    """Villages whose unapproved sets the principal may see: their admins, their town."""
    if principal.is_district_admin:
        return true()
    clauses: list[ColumnElement[bool]] = []
    admin_villages = principal.village_ids(Role.VILLAGE_ADMIN)
    if admin_villages:
        clauses.append(col(RuleSet.village_id).in_(admin_villages))
    towns = principal.supervised_town_ids()
    if towns:
        clauses.append(col(RuleSet.town_id).in_(towns))
    return or_(*clauses) if clauses else false()


def _approved_readers(principal: Principal) -> ColumnElement[bool]:
    if principal.is_district_admin:
        return true()
    village_ids = {g.village_id for g in principal.grants if g.village_id}
    if principal.household_village_id:
        village_ids.add(principal.household_village_id)
    clauses: list[ColumnElement[bool]] = [_draft_readers(principal)]
    if village_ids:
        clauses.append(col(RuleSet.village_id).in_(village_ids))
    return or_(*clauses)


def _scope(principal: Principal, access: Access) -> ColumnElement[bool]:
    if access is Access.READ:
        return or_(
            _draft_readers(principal),
            (col(RuleSet.status) == RuleSetStatus.APPROVED) & _approved_readers(principal),
        )
    if principal.is_district_admin:
        return true()
    if access is Access.EDIT:
        villages = principal.village_ids(Role.VILLAGE_ADMIN)
        return col(RuleSet.village_id).in_(villages) if villages else false()
    towns = principal.supervised_town_ids()
    return col(RuleSet.town_id).in_(towns) if towns else false()


async def get_rule_set(
    session: AsyncSession,
    principal: Principal,
    rule_set_id: uuid.UUID,
    access: Access = Access.READ,
    *,
    lock: bool = False,
) -> RuleSet:
    statement = select(RuleSet).where(col(RuleSet.id) == rule_set_id, _scope(principal, access))
    if lock:
        statement = statement.with_for_update()
    rule_set = (await session.execute(statement)).scalar_one_or_none()
    if rule_set is None:
        raise NotFound("No such rule set.", code="rule_set.not_found")
    return rule_set


async def list_rule_sets(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, year: int | None
) -> list[RuleSet]:
    village = await get_village(session, principal, village_id)
    statement = select(RuleSet).where(
        col(RuleSet.village_id) == village.id, _scope(principal, Access.READ)
    )
    if year is not None:
        statement = statement.where(col(RuleSet.year) == year)
    statement = statement.order_by(col(RuleSet.year).desc(), col(RuleSet.version).desc())
    return list((await session.execute(statement)).scalars())


async def _tree(session: AsyncSession, rule_set_id: uuid.UUID) -> list[CategoryRead]:
    categories = (
        await session.execute(
            select(RuleCategory)
            .where(col(RuleCategory.rule_set_id) == rule_set_id)
            .order_by(col(RuleCategory.position), col(RuleCategory.name))
        )
    ).scalars()
    items = (
        await session.execute(
            select(RuleItem)
            .where(col(RuleItem.rule_set_id) == rule_set_id)
            .order_by(col(RuleItem.position), col(RuleItem.code))
        )
    ).scalars()
    reads = {
        c.id: CategoryRead(
            id=c.id, parent_id=c.parent_id, name=c.name, cap=c.cap, position=c.position
        )
        for c in categories
    }
    for item in items:
        reads[item.category_id].items.append(ItemRead.model_validate(item))
    roots: list[CategoryRead] = []
    for category in reads.values():
        if category.parent_id is None:
            roots.append(category)
        else:
            reads[category.parent_id].children.append(category)
    return roots


async def rule_set_read(session: AsyncSession, rule_set: RuleSet) -> RuleSetRead:
    summary = RuleSetSummary.model_validate(rule_set)
    return RuleSetRead(
        **summary.model_dump(),
        policy=Policy.model_validate(rule_set.policy),
        categories=await _tree(session, rule_set.id),
    )


async def rule_set_in_force(
    session: AsyncSession, village_id: uuid.UUID, on: date
) -> RuleSet | None:
    """The approved version whose span covers `on`: the latest one that has taken effect."""
    return (
        await session.execute(
            select(RuleSet)
            .where(
                col(RuleSet.village_id) == village_id,
                col(RuleSet.status) == RuleSetStatus.APPROVED,
                col(RuleSet.year) == on.year,
                col(RuleSet.effective_from) <= on,
            )
            .order_by(col(RuleSet.effective_from).desc())
            .limit(1)
        )
    ).scalar_one_or_none()


def in_effect_statement(village_id: Any, on: Any) -> Select[RuleSet]:
    """The latest approved version that has taken effect on `on`, whatever its year (see
    rule_set_in_effect)."""
    return (
        select(RuleSet)
        .where(
            col(RuleSet.village_id) == village_id,
            col(RuleSet.status) == RuleSetStatus.APPROVED,
            col(RuleSet.effective_from) <= on,
        )
        .order_by(col(RuleSet.effective_from).desc())
        .limit(1)
    )


async def rule_set_in_effect(
    session: AsyncSession, village_id: uuid.UUID, on: date
) -> RuleSet | None:
    """The rules a village reads and redeems by on `on`: the latest approved version that has
    taken effect, whatever its year. Last year's rules stay in force across New Year until the
    new year's set takes effect, since January redeems the fourth quarter (旧县) and villages
    file the new year's plan by March. Scoring a period still needs its own year's rules
    (rule_set_in_force)."""
    return (await session.execute(in_effect_statement(village_id, on))).scalar_one_or_none()


@lru_cache(maxsize=256)
def policy_of(text: str) -> Policy:
    """A stored policy, validated once per distinct text: the hot reads fetch it as text
    and would otherwise validate the whole policy on every request. Callers must not change
    the instance."""
    return Policy.model_validate(json.loads(text))


def _summary_lines(policy: Policy) -> list[str]:
    period = "每月" if policy.period is PeriodLength.MONTH else "每季度"
    lines = []
    if policy.scoring_mode is ScoringMode.DEDUCTIVE:
        lines.append(f"{period}基础分{policy.base_score}分，发现问题按细则扣分")
    else:
        lines.append(f"{period}评分，按细则累计得分")
    if policy.period_cap:
        lines.append(f"{period}满分{policy.period_cap}分（不含加分项）")
    lines.append(
        "一票否决项取消当年评比资格" if policy.veto_scope == "year" else "一票否决项取消当期积分"
    )
    lines.append("积分可结转下一年度" if policy.carry_over else "积分年底清零，次年重新积分")
    redemption = policy.redemption
    if redemption.window.months:
        lines.append("兑换月份：" + "、".join(f"{m}月" for m in redemption.window.months))
    if redemption.yuan_per_point:
        lines.append(f"1分可兑换价值{redemption.yuan_per_point}元的物品，不兑现金")
    if redemption.min_period_score is not None:
        lines.append(f"当期积分达到{redemption.min_period_score}分方可兑换")
    if redemption.top_n_in_group:
        lines.append(f"须在本村民小组排名前{redemption.top_n_in_group}名")
    return lines


_VILLAGE = param("village_id", PG_UUID(as_uuid=True))
_DAY = param("day", Date())
_ITEM_COLUMNS = (
    "id", "category_id", "lineage_id", "code", "title", "description", "points", "kind",
    "claimable", "period_cap", "evidence_required", "cadence", "position",
)  # fmt: skip


def _active_rules_statement() -> tuple[DriverStatement, DriverStatement]:
    """The village in the caller's scope (as organisation.get_village), its rule set in effect
    and that set's categories and items: one round trip. And the same statement for the
    village and which set is in effect alone."""
    in_effect = in_effect_statement(col(Village.id), _DAY).subquery().lateral("rule_set")
    categories = (
        select(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(
                        col(RuleCategory.id),
                        col(RuleCategory.parent_id),
                        col(RuleCategory.name),
                        col(RuleCategory.cap),
                        col(RuleCategory.position),
                    ),
                    col(RuleCategory.position),
                    col(RuleCategory.name),
                )
            )
        )
        .where(col(RuleCategory.rule_set_id) == in_effect.c.id)
        .scalar_subquery()
    )
    item_columns = [getattr(RuleItem, name) for name in _ITEM_COLUMNS]
    items = (
        select(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(*item_columns), col(RuleItem.position), col(RuleItem.code)
                )
            )
        )
        .where(col(RuleItem.rule_set_id) == in_effect.c.id)
        .scalar_subquery()
    )
    statement = (
        select(
            col(Village.id).label("village_id"),
            in_effect.c.id.label("rule_set_id"),
            in_effect.c.year,
            in_effect.c.version,
            in_effect.c.effective_from,
            in_effect.c.title,
            cast(in_effect.c.policy, Text).label("policy"),
            categories.label("categories"),
            items.label("items"),
        )
        .select_from(Village)
        .outerjoin(in_effect, true())
        .where(
            col(Village.id) == _VILLAGE,
            village_scope_parameters(col(Village.id), col(Village.town_id)),
        )
    )
    return DriverStatement(statement, "village_id", "day", *SCOPE_PARAMETERS), DriverStatement(
        statement.with_only_columns(
            col(Village.id).label("village_id"), in_effect.c.id.label("rule_set_id")
        ),
        "village_id",
        "day",
        *SCOPE_PARAMETERS,
    )


# The whole answer, and which set is in force (the village within the caller's scope), alone.
_ACTIVE_RULES, _RULE_SET_IN_FORCE = _active_rules_statement()


class _RenderedRuleSets:
    """Approved rule sets' answers as sent, by rule set: an approved set, its categories and
    its items never change (the database refuses it, rule_set_frozen), so a set in force is
    built once per process, not on every phone's opening. Bounded; the oldest goes first."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._bodies: dict[uuid.UUID, bytes] = {}

    def get(self, rule_set_id: uuid.UUID) -> bytes | None:
        return self._bodies.get(rule_set_id)

    def keep(self, rule_set_id: uuid.UUID, body: bytes) -> None:
        if len(self._bodies) >= self.size:
            del self._bodies[next(iter(self._bodies))]
        self._bodies[rule_set_id] = body


_rendered = _RenderedRuleSets()


@lru_cache(maxsize=256)
def _policy_fields(text: str) -> dict[str, Any]:
    policy = policy_of(text)
    return {
        "scoring_mode": policy.scoring_mode.value,
        "base_score": policy.base_score,
        "period": policy.period.value,
        "period_cap": policy.period_cap,
        "summary": _summary_lines(policy),
    }


def _tree_of(categories: list[list[Any]] | None, items: list[list[Any]] | None) -> list[Any]:
    """The category tree as _tree builds it, from the rows in the order _tree reads them."""
    reads: dict[str, dict[str, Any]] = {}
    for id_, parent_id, name, cap, position in categories or ():
        reads[id_] = {
            "id": id_, "parent_id": parent_id, "name": name, "cap": cap, "position": position,
            "items": [], "children": [],
        }  # fmt: skip
    for item in items or ():
        reads[item[1]]["items"].append(dict(zip(_ITEM_COLUMNS, item, strict=True)))
    roots = []
    for category in reads.values():
        if category["parent_id"] is None:
            roots.append(category)
        else:
            reads[category["parent_id"]]["children"].append(category)
    return roots


async def active_rules(
    session: DriverSource, principal: Principal, village_id: uuid.UUID, on: date | None
) -> bytes:
    """ActiveRules as JSON: which set is in force is read every time, with the caller's scope;
    the set's answer is built once (_RenderedRuleSets)."""
    values = {
        "village_id": village_id,
        "day": on or clock.today(),
        # As get_village (organisation._village_read_scope).
        **scope_values(principal, roles=STAFF_READ_ROLES, residents=True),
    }
    rule_set_id = _in_force(await _RULE_SET_IN_FORCE.fetchrow(session, **values))
    body = _rendered.get(rule_set_id)
    if body is None:
        # Read again whole: a newer set approved in between is the one this answers with.
        row = await _ACTIVE_RULES.fetchrow(session, **values)
        body = json_bytes(_rules_read(row))
        _rendered.keep(_in_force(row), body)
    return body


def _in_force(row: Any) -> uuid.UUID:
    if row is None:
        raise NotFound("No such village.", code="village.not_found")
    if row["rule_set_id"] is None:
        raise NotFound(
            "The village has no approved rules in force on that day.",
            code="rules.none_in_force",
            title="本村暂无生效的积分细则",
        )
    rule_set_id: uuid.UUID = row["rule_set_id"]
    return rule_set_id


def _rules_read(row: Any) -> dict[str, Any]:
    """ActiveRules' fields from plain rows: the policy is validated (once per distinct policy,
    policy_of), the rest are the columns as stored."""
    return {
        "village_id": row["village_id"],
        "rule_set_id": row["rule_set_id"],
        "year": row["year"],
        "version": row["version"],
        "effective_from": row["effective_from"],
        "title": row["title"],
        **_policy_fields(row["policy"]),
        "categories": _tree_of(row["categories"], row["items"]),
    }


# Creating drafts


def check_not_retroactive(effective_from: date, policy: Policy, today: date | None = None) -> None:
    """A later version may not reach back into periods already under way or done."""
    if effective_from < calendar_of(policy).period_start(today or clock.today()):
        raise Unprocessable(
            "A new version cannot take effect before the current scoring period.",
            code="rule_set.effective_in_past",
            title="新版本不能早于当前考核周期生效",
        )


async def _add_tree(
    session: AsyncSession,
    rule_set: RuleSet,
    categories: Sequence[TemplateCategory],
    parent_id: uuid.UUID | None = None,
) -> None:
    for position, source in enumerate(categories):
        category = RuleCategory(
            rule_set_id=rule_set.id,
            village_id=rule_set.village_id,
            parent_id=parent_id,
            name=source.name,
            cap=source.cap,
            position=position,
        )
        session.add(category)
        await session.flush()
        for item_position, item in enumerate(source.items):
            session.add(
                RuleItem(
                    rule_set_id=rule_set.id,
                    village_id=rule_set.village_id,
                    category_id=category.id,
                    position=item_position,
                    **item.model_dump(),
                )
            )
        await _add_tree(session, rule_set, source.children, category.id)


async def _copy_tree(session: AsyncSession, source_id: uuid.UUID, target: RuleSet) -> None:
    """New rows for the new version, keeping each item's lineage."""
    categories = (
        (
            await session.execute(
                select(RuleCategory)
                .where(col(RuleCategory.rule_set_id) == source_id)
                .order_by(col(RuleCategory.parent_id).is_not(None))  # parents first
            )
        )
        .scalars()
        .all()
    )
    new_ids: dict[uuid.UUID, uuid.UUID] = {}
    for category in categories:
        copy = RuleCategory(
            rule_set_id=target.id,
            village_id=target.village_id,
            parent_id=new_ids[category.parent_id] if category.parent_id else None,
            name=category.name,
            cap=category.cap,
            position=category.position,
        )
        session.add(copy)
        await session.flush()
        new_ids[category.id] = copy.id
    items = (
        await session.execute(select(RuleItem).where(col(RuleItem.rule_set_id) == source_id))
    ).scalars()
    for item in items:
        session.add(
            RuleItem(
                **item.model_dump(exclude={"id", "rule_set_id", "village_id", "category_id"}),
                rule_set_id=target.id,
                village_id=target.village_id,
                category_id=new_ids[item.category_id],
            )
        )
    await session.flush()


def _audit_rule_set(
    session: AsyncSession,
    principal: Principal,
    action: str,
    rule_set: RuleSet,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        principal,
        action,
        "rule_set",
        rule_set.id,
        before=before,
        after=after if after is not None else audit.snapshot(rule_set),
        town_id=rule_set.town_id,
        village_id=rule_set.village_id,
    )


async def create_rule_set(
    session: AsyncSession, principal: Principal, village_id: uuid.UUID, data: RuleSetCreate
) -> RuleSet:
    village = await get_village_for_admin(session, principal, village_id)
    exists = (
        await session.execute(
            select(col(RuleSet.id)).where(
                col(RuleSet.village_id) == village.id, col(RuleSet.year) == data.year
            )
        )
    ).first()
    if exists is not None:
        raise Conflict(
            "The village already has rules for this year; start a new version of them instead.",
            code="rule_set.year_exists",
            title="本村该年度已有积分细则，请在其基础上新建版本",
        )
    source_set: RuleSet | None = None
    if data.template_code is not None:
        template = get_template(data.template_code)
        policy, title = (
            template.policy,
            data.title or f"{village.name}{data.year}年{template.title}",
        )
    else:
        assert data.from_rule_set_id is not None
        source_set = await get_rule_set(session, principal, data.from_rule_set_id, Access.EDIT)
        if source_set.village_id != village.id:
            raise NotFound("No such rule set.", code="rule_set.not_found")
        policy = Policy.model_validate(source_set.policy)
        title = data.title or f"{village.name}{data.year}年积分细则"
    rule_set = RuleSet(
        village_id=village.id,
        town_id=village.town_id,
        year=data.year,
        version=1,
        status=RuleSetStatus.DRAFT,
        title=title,
        template_code=data.template_code or (source_set.template_code if source_set else None),
        based_on_id=source_set.id if source_set else None,
        effective_from=date(data.year, 1, 1),
        policy=policy.model_dump(mode="json"),
        created_by=principal.person_id,
    )
    session.add(rule_set)
    await session.flush()
    if source_set is not None:
        await _copy_tree(session, source_set.id, rule_set)
    else:
        await _add_tree(session, rule_set, get_template(data.template_code or "").categories)
    await session.flush()
    _audit_rule_set(session, principal, "rule_set.create", rule_set)
    return rule_set


async def new_version(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID, effective_from: date
) -> RuleSet:
    source = await get_rule_set(session, principal, rule_set_id, Access.EDIT)
    if source.status is not RuleSetStatus.APPROVED:
        raise Conflict(
            "Only an approved rule set can be followed by a new version.",
            code="rule_set.not_approved",
            title="只能在已备案的细则上新建版本",
        )
    latest = (
        await session.execute(
            select(func.max(col(RuleSet.version))).where(
                col(RuleSet.village_id) == source.village_id, col(RuleSet.year) == source.year
            )
        )
    ).scalar_one()
    if latest != source.version:
        raise Conflict(
            "A later version of this year's rules exists; start from the latest.",
            code="rule_set.not_latest",
        )
    policy = Policy.model_validate(source.policy)
    if effective_from.year != source.year or not calendar_of(policy).is_period_start(
        effective_from
    ):
        raise Unprocessable(
            "A new version takes effect on the first day of a scoring period of the same year.",
            code="rule_set.effective_not_period_start",
            title="新版本须从当年某一考核周期的第一天起生效",
        )
    check_not_retroactive(effective_from, policy)
    if effective_from <= source.effective_from:
        raise Unprocessable(
            "A new version takes effect after the version it follows.",
            code="rule_set.effective_not_after_previous",
            title="新版本的生效日期须晚于上一版本",
        )
    rule_set = RuleSet(
        village_id=source.village_id,
        town_id=source.town_id,
        year=source.year,
        version=source.version + 1,
        status=RuleSetStatus.DRAFT,
        title=source.title,
        template_code=source.template_code,
        based_on_id=source.id,
        effective_from=effective_from,
        policy=source.policy,
        created_by=principal.person_id,
    )
    session.add(rule_set)
    await session.flush()
    await _copy_tree(session, source.id, rule_set)
    _audit_rule_set(session, principal, "rule_set.new_version", rule_set)
    return rule_set


# Editing drafts


async def _editable(session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID) -> RuleSet:
    rule_set = await get_rule_set(session, principal, rule_set_id, Access.EDIT, lock=True)
    if rule_set.status not in EDITABLE_STATUSES:
        raise Conflict(
            f"A {rule_set.status.value} rule set cannot be edited.",
            code="rule_set.not_editable",
            title="已提交或已备案的细则不能修改",
        )
    return rule_set


def _touch(rule_set: RuleSet) -> None:
    rule_set.updated_at = clock.now()


async def update_rule_set(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID, data: RuleSetUpdate
) -> RuleSet:
    rule_set = await _editable(session, principal, rule_set_id)
    before = audit.snapshot(rule_set)
    if data.title is not None:
        rule_set.title = data.title
    if data.policy is not None:
        if data.policy.period != Policy.model_validate(rule_set.policy).period and not calendar_of(
            data.policy
        ).is_period_start(rule_set.effective_from):
            raise Unprocessable(
                "The version's first day is not the start of a period of that length.",
                code="rule_set.effective_not_period_start",
            )
        await _check_items_against_mode(session, rule_set, data.policy.scoring_mode)
        rule_set.policy = data.policy.model_dump(mode="json")
    _touch(rule_set)
    await session.flush()
    _audit_rule_set(session, principal, "rule_set.update", rule_set, before)
    return rule_set


async def _category(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID
) -> tuple[RuleCategory, RuleSet]:
    category = (
        await session.execute(
            select(RuleCategory)
            .join(RuleSet, col(RuleSet.id) == col(RuleCategory.rule_set_id))
            .where(col(RuleCategory.id) == category_id, _scope(principal, Access.EDIT))
        )
    ).scalar_one_or_none()
    if category is None:
        raise NotFound("No such rule category.", code="rule_category.not_found")
    return category, await _editable(session, principal, category.rule_set_id)


async def _largest_item(session: AsyncSession, category_id: uuid.UUID) -> int:
    largest = (
        await session.execute(
            select(func.max(col(RuleItem.points))).where(col(RuleItem.category_id) == category_id)
        )
    ).scalar_one()
    return int(largest or 0)


def _cap_below_item() -> Unprocessable:
    return Unprocessable(
        "The cap is smaller than an item of the category, which could never be scored in full.",
        code="rule_category.cap_below_item",
        title="分类上限小于其中单项分值",
    )


async def _check_name_free(
    session: AsyncSession,
    rule_set_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    name: str,
    exclude: uuid.UUID | None = None,
) -> None:
    statement = select(col(RuleCategory.id)).where(
        col(RuleCategory.rule_set_id) == rule_set_id,
        col(RuleCategory.parent_id).is_not_distinct_from(parent_id),
        col(RuleCategory.name) == name,
    )
    if exclude is not None:
        statement = statement.where(col(RuleCategory.id) != exclude)
    if (await session.execute(statement)).first() is not None:
        raise Conflict("A category with this name exists here.", code="rule_category.name_taken")


async def add_category(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID, data: CategoryCreate
) -> RuleCategory:
    rule_set = await _editable(session, principal, rule_set_id)
    if data.parent_id is not None:
        parent = await session.get(RuleCategory, data.parent_id)
        if parent is None or parent.rule_set_id != rule_set.id:
            raise NotFound(
                "No such parent category in this rule set.", code="rule_category.not_found"
            )
        if parent.parent_id is not None:
            raise Unprocessable(
                "Categories nest one level deep.",
                code="rule_category.too_deep",
                title="分类最多两级",
            )
    await _check_name_free(session, rule_set.id, data.parent_id, data.name)
    category = RuleCategory(
        rule_set_id=rule_set.id, village_id=rule_set.village_id, **data.model_dump()
    )
    session.add(category)
    _touch(rule_set)
    await session.flush()
    _audit_rule_set(
        session, principal, "rule_category.create", rule_set, after=audit.snapshot(category)
    )
    return category


async def update_category(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID, data: CategoryUpdate
) -> RuleCategory:
    category, rule_set = await _category(session, principal, category_id)
    before = audit.snapshot(category)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is not None:
        await _check_name_free(
            session, rule_set.id, category.parent_id, changes["name"], category.id
        )
        category.name = changes["name"]
    if "cap" in changes:
        if changes["cap"] is not None and changes["cap"] < await _largest_item(
            session, category.id
        ):
            raise _cap_below_item()
        category.cap = changes["cap"]
    if changes.get("position") is not None:
        category.position = changes["position"]
    _touch(rule_set)
    await session.flush()
    _audit_rule_set(
        session, principal, "rule_category.update", rule_set, before, audit.snapshot(category)
    )
    return category


async def delete_category(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID
) -> None:
    category, rule_set = await _category(session, principal, category_id)
    _audit_rule_set(
        session, principal, "rule_category.delete", rule_set, audit.snapshot(category), {}
    )
    await session.delete(category)
    _touch(rule_set)
    await session.flush()


def _check_item(item: RuleItem, mode: ScoringMode) -> None:
    """Refuse an item whose fields contradict each other or the scoring mode."""
    if item.claimable and item.kind is ItemKind.VETO:
        raise Unprocessable(
            "A veto item cannot be claimed by villagers.",
            code="rule_item.claimable_veto",
            title="一票否决项不能由村民申报",
        )
    if item.claimable and item.kind is not ItemKind.BONUS:
        raise Unprocessable(
            "Only bonus items can be claimed by villagers.",
            code="rule_item.claimable_not_bonus",
            title="只有加分项可以由村民申报",
        )
    if item.kind is ItemKind.VETO and item.points != 0:
        raise Unprocessable(
            "A veto item disqualifies; it carries no points.",
            code="rule_item.veto_points",
            title="一票否决项不设分值",
        )
    if item.kind is ItemKind.BONUS and item.points <= 0:
        raise Unprocessable(
            "A bonus item adds points; give it a positive number.",
            code="rule_item.points_sign",
            title="加分项分值须为正数",
        )
    if item.kind is ItemKind.INSPECTION:
        if item.points == 0:
            raise Unprocessable(
                "An inspection item needs points.",
                code="rule_item.points_sign",
                title="考评项须设分值",
            )
        if mode is ScoringMode.DEDUCTIVE and item.points < 0:
            raise Unprocessable(
                "In deductive scoring an item's points are what a finding deducts: positive.",
                code="rule_item.points_sign",
                title="扣分制下考评项分值为扣减分数，须为正数",
            )
    if item.period_cap is not None and item.kind is not ItemKind.BONUS:
        raise Unprocessable(
            "Only bonus items have a per-period cap.",
            code="rule_item.period_cap_not_bonus",
            title="只有加分项可设每期上限",
        )
    if item.period_cap is not None and item.period_cap < item.points:
        raise Unprocessable(
            "The per-period cap is below the item's points.",
            code="rule_item.period_cap_below_points",
            title="每期上限小于该项分值",
        )


async def _check_items_against_mode(
    session: AsyncSession, rule_set: RuleSet, mode: ScoringMode
) -> None:
    items = (
        await session.execute(select(RuleItem).where(col(RuleItem.rule_set_id) == rule_set.id))
    ).scalars()
    for item in items:
        _check_item(item, mode)


async def _check_item_fits(session: AsyncSession, rule_set: RuleSet, item: RuleItem) -> None:
    category = await session.get(RuleCategory, item.category_id)
    if category is None or category.rule_set_id != rule_set.id:
        raise NotFound("No such category in this rule set.", code="rule_category.not_found")
    _check_item(item, Policy.model_validate(rule_set.policy).scoring_mode)
    if category.cap is not None and item.points > category.cap:
        raise _cap_below_item()
    taken = (
        await session.execute(
            select(col(RuleItem.id)).where(
                col(RuleItem.rule_set_id) == rule_set.id,
                col(RuleItem.code) == item.code,
                col(RuleItem.id) != item.id,
            )
        )
    ).first()
    if taken is not None:
        raise Conflict(
            "Another item of this rule set has this code.",
            code="rule_item.code_taken",
            title="序号重复",
        )


async def add_item(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID, data: ItemCreate
) -> RuleItem:
    rule_set = await _editable(session, principal, rule_set_id)
    item = RuleItem(rule_set_id=rule_set.id, village_id=rule_set.village_id, **data.model_dump())
    await _check_item_fits(session, rule_set, item)
    session.add(item)
    _touch(rule_set)
    await session.flush()
    _audit_rule_set(session, principal, "rule_item.create", rule_set, after=audit.snapshot(item))
    return item


async def _item(
    session: AsyncSession, principal: Principal, item_id: uuid.UUID
) -> tuple[RuleItem, RuleSet]:
    item = (
        await session.execute(
            select(RuleItem)
            .join(RuleSet, col(RuleSet.id) == col(RuleItem.rule_set_id))
            .where(col(RuleItem.id) == item_id, _scope(principal, Access.EDIT))
        )
    ).scalar_one_or_none()
    if item is None:
        raise NotFound("No such rule item.", code="rule_item.not_found")
    return item, await _editable(session, principal, item.rule_set_id)


async def update_item(
    session: AsyncSession, principal: Principal, item_id: uuid.UUID, data: ItemUpdate
) -> RuleItem:
    item, rule_set = await _item(session, principal, item_id)
    before = audit.snapshot(item)
    changes = data.model_dump(exclude_unset=True)
    for key in (
        "description",
        "position",
        "category_id",
        "code",
        "title",
        "points",
        "kind",
        "claimable",
        "evidence_required",
        "cadence",
    ):
        if key in changes and changes[key] is None:
            raise Unprocessable(f"{key} cannot be null.", code="rule_item.field_required")
    candidate = item.model_copy(update=changes)
    await _check_item_fits(session, rule_set, candidate)
    for key, value in changes.items():
        setattr(item, key, value)
    _touch(rule_set)
    await session.flush()
    _audit_rule_set(session, principal, "rule_item.update", rule_set, before, audit.snapshot(item))
    return item


async def delete_item(session: AsyncSession, principal: Principal, item_id: uuid.UUID) -> None:
    item, rule_set = await _item(session, principal, item_id)
    _audit_rule_set(session, principal, "rule_item.delete", rule_set, audit.snapshot(item), {})
    await session.delete(item)
    _touch(rule_set)
    await session.flush()


# Lifecycle


async def _check_complete(session: AsyncSession, rule_set: RuleSet) -> None:
    """What a set must satisfy as a whole before the town is asked to file it."""
    policy = Policy.model_validate(rule_set.policy)
    tree = await _tree(session, rule_set.id)
    flat = [c for root in tree for c in [root, *root.children]]
    items = [i for c in flat for i in c.items]
    if not any(i.kind is ItemKind.INSPECTION for i in items):
        raise Unprocessable(
            "The rule set has no inspection items to score households by.",
            code="rule_set.no_items",
            title="细则中还没有考评项目",
        )
    if policy.scoring_mode is not ScoringMode.ADDITIVE:
        return
    for category in flat:
        if category.cap is None:
            continue
        # Bonus items count: a capped aspect may hold only them (张堰 志愿服务, 5分).
        reachable = sum(i.points for i in _items_under(category) if i.points > 0)
        if reachable < category.cap:
            raise Unprocessable(
                f"Category {category.name!r} is capped at {category.cap};"
                f" its items add up to {reachable}.",
                code="rule_set.cap_unreachable",
                title=f"分类“{category.name}”的上限超过其项目分值合计",
                category_id=str(category.id),
            )


def _items_under(category: CategoryRead) -> list[ItemRead]:
    return [*category.items, *(i for child in category.children for i in _items_under(child))]


async def submit(session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID) -> RuleSet:
    rule_set = await _editable(session, principal, rule_set_id)
    await _check_complete(session, rule_set)
    before = audit.snapshot(rule_set)
    rule_set.status = RuleSetStatus.SUBMITTED
    rule_set.submitted_at = clock.now()
    rule_set.submitted_by = principal.person_id
    rule_set.return_reason = None
    await session.flush()
    _audit_rule_set(session, principal, "rule_set.submit", rule_set, before)
    return rule_set


async def _submitted(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID
) -> RuleSet:
    rule_set = await get_rule_set(session, principal, rule_set_id, Access.DECIDE, lock=True)
    if rule_set.status is not RuleSetStatus.SUBMITTED:
        raise Conflict(
            "Only a submitted rule set can be approved or returned.",
            code="rule_set.not_submitted",
            title="细则尚未提交备案",
        )
    return rule_set


async def approve(session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID) -> RuleSet:
    rule_set = await _submitted(session, principal, rule_set_id)
    if rule_set.version > 1:
        check_not_retroactive(rule_set.effective_from, Policy.model_validate(rule_set.policy))
    before = audit.snapshot(rule_set)
    rule_set.status = RuleSetStatus.APPROVED
    rule_set.decided_at = clock.now()
    rule_set.decided_by = principal.person_id
    await session.flush()
    _audit_rule_set(session, principal, "rule_set.approve", rule_set, before)
    return rule_set


async def return_for_changes(
    session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID, reason: str
) -> RuleSet:
    rule_set = await _submitted(session, principal, rule_set_id)
    before = audit.snapshot(rule_set)
    rule_set.status = RuleSetStatus.RETURNED
    rule_set.decided_at = clock.now()
    rule_set.decided_by = principal.person_id
    rule_set.return_reason = reason
    await session.flush()
    _audit_rule_set(session, principal, "rule_set.return", rule_set, before)
    return rule_set


async def delete_draft(session: AsyncSession, principal: Principal, rule_set_id: uuid.UUID) -> None:
    rule_set = await _editable(session, principal, rule_set_id)
    successor = await session.execute(
        select(col(RuleSet.id)).where(col(RuleSet.based_on_id) == rule_set.id).limit(1)
    )
    if successor.first() is not None:
        raise Conflict(
            "Another rule set was started from this one; it cannot be deleted.",
            code="rule_set.in_use",
            title="已有细则以此为基础，不能删除",
        )
    _audit_rule_set(session, principal, "rule_set.delete", rule_set, audit.snapshot(rule_set), {})
    await session.delete(rule_set)
    await session.flush()
