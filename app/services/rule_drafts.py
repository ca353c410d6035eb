"""Rule sets as written: drafts from templates or earlier sets, edits, town approval (备案),
versions. Reading them is app/services/rules.py."""

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import clock
from app.errors import Conflict, NotFound, Unprocessable
from app.models import (
    EDITABLE_STATUSES,
    ItemKind,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
)
from app.schemas.rules import (
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    ItemCreate,
    ItemRead,
    ItemUpdate,
    Policy,
    RuleSetCreate,
    RuleSetUpdate,
    ScoringMode,
    TemplateCategory,
)
from app.security import Principal
from app.services import audit
from app.services.organisation import get_village_for_admin
from app.services.points_year import calendar_of
from app.services.rules import Access, category_tree, get_rule_set, get_template, rule_set_scope

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
            .where(col(RuleCategory.id) == category_id, rule_set_scope(principal, Access.EDIT))
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
            .where(col(RuleItem.id) == item_id, rule_set_scope(principal, Access.EDIT))
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
    tree = await category_tree(session, rule_set.id)
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
