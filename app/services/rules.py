"""Rule sets as read: the templates, a village's sets, the set in force on a day, and the phone's
rules in force (one statement, an approved set's answer built once). Drafts, their edits and
their approval are app/services/rule_drafts.py."""

import json
import uuid
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
from app.bounded import Bounded
from app.db import DriverSource
from app.driver import DriverStatement, json_bytes, param
from app.errors import NotFound
from app.models import (
    Role,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
    Village,
)
from app.rule_templates import all_items, templates
from app.schemas.rules import (
    CategoryRead,
    ItemRead,
    PeriodLength,
    Policy,
    RuleSetRead,
    RuleSetSummary,
    RuleTemplate,
    ScoringMode,
    TemplateSummary,
)
from app.security import Principal
from app.services.organisation import get_village


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


def rule_set_scope(principal: Principal, access: Access) -> ColumnElement[bool]:
    """The rule sets the caller may read, or edit (app/services/rule_drafts.py)."""
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
    statement = select(RuleSet).where(
        col(RuleSet.id) == rule_set_id, rule_set_scope(principal, access)
    )
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
        col(RuleSet.village_id) == village.id, rule_set_scope(principal, Access.READ)
    )
    if year is not None:
        statement = statement.where(col(RuleSet.year) == year)
    statement = statement.order_by(col(RuleSet.year).desc(), col(RuleSet.version).desc())
    return list((await session.execute(statement)).scalars())


async def category_tree(session: AsyncSession, rule_set_id: uuid.UUID) -> list[CategoryRead]:
    """The set's categories, nested, each with its items."""
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
        categories=await category_tree(session, rule_set.id),
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


# Approved rule sets' answers as sent, by rule set: an approved set, its categories and its
# items never change (the database refuses it, rule_set_frozen), so a set in force is built
# once per process, not on every phone's opening.
_rendered: Bounded[uuid.UUID, bytes] = Bounded(256)


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
    """The category tree as category_tree builds it, from the rows in the order it reads them."""
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
    the set's answer is built once (_rendered)."""
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
        # Its 404s first: the village or the set may have gone from the caller's view since.
        rule_set_id = _in_force(row)
        body = json_bytes(_rules_read(row))
        _rendered.put(rule_set_id, body)
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
