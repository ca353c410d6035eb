"""A household's period score from its card: caps, deduction from a base, vetoes.

Pure: given the rules and the card it says which ledger entries to post, so approval can
compute a thousand households without a round trip each.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from app.models import (
    Cadence,
    ItemKind,
    LedgerKind,
    Outcome,
    PeriodKind,
    RuleCategory,
    RuleItem,
)
from app.schemas.rules import Policy, ScoringMode
from app.services.ledger import NewEntry


class CardLine(Protocol):
    """What scoring reads of a scorecard line (a row of selected columns will do)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def rule_item_id(self) -> uuid.UUID: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def points(self) -> int: ...
    @property
    def note(self) -> str: ...


@dataclass
class PeriodResult:
    household_id: uuid.UUID
    entries: list[NewEntry] = field(default_factory=list)
    score: int = 0
    vetoed: bool = False


@dataclass(frozen=True)
class PeriodContext:
    period_id: uuid.UUID
    year: int
    actor_id: uuid.UUID | None
    policy: Policy
    categories: dict[uuid.UUID, RuleCategory]
    items: dict[uuid.UUID, RuleItem]

    @cached_property
    def sheet_order(self) -> dict[uuid.UUID, tuple[int, int, int, str]]:
        """Each item's place on the rule sheet, so a villager's 积分明细 reads like the sheet on
        the wall. Worked out once per period, not once per household."""
        order = {}
        for item in self.items.values():
            category = self.categories[item.category_id]
            root = _root_of(self.categories, item.category_id)
            child_position = category.position if category.parent_id else -1
            order[item.id] = (root.position, child_position, item.position, item.code)
        return order

    @cached_property
    def categories_children_first(self) -> list[tuple[RuleCategory, list[uuid.UUID]]]:
        """Each category with its children's ids, children before parents: the order caps
        are applied in, worked out once per period."""
        ordered = sorted(self.categories.values(), key=lambda c: c.parent_id is None)
        return [
            (category, [c.id for c in ordered if c.parent_id == category.id])
            for category in ordered
        ]


def _root_of(categories: dict[uuid.UUID, RuleCategory], category_id: uuid.UUID) -> RuleCategory:
    category = categories[category_id]
    return categories[category.parent_id] if category.parent_id else category


def household_result(
    context: PeriodContext,
    household_id: uuid.UUID,
    lines: Sequence[CardLine],
    *,
    vetoed_this_year: bool = False,
) -> PeriodResult:
    policy, categories = context.policy, context.categories
    deductive = policy.scoring_mode is ScoringMode.DEDUCTIVE
    result = PeriodResult(household_id)

    def entry(
        points: int,
        memo: str,
        item: RuleItem | None = None,
        line: CardLine | None = None,
        kind: LedgerKind = LedgerKind.INSPECTION,
    ) -> None:
        if points == 0 and kind is not LedgerKind.VETO:
            return
        result.entries.append(
            NewEntry(
                household_id=household_id,
                kind=kind,
                points=points,
                counts_score=True,
                counts_balance=True,
                year=context.year,
                period_id=context.period_id,
                source_type="scorecard_line" if line else "period",
                source_id=line.id if line else context.period_id,
                actor_id=context.actor_id,
                memo=memo,
                rule_item=item,
            )
        )

    if deductive:
        entry(policy.base_score or 0, "基础分")
    own: dict[uuid.UUID, int] = defaultdict(int)  # each category's own items

    order = context.sheet_order
    for line in sorted(lines, key=lambda line: order[line.rule_item_id]):
        item = context.items[line.rule_item_id]
        if item.kind is ItemKind.VETO:
            if line.outcome is Outcome.FINDING:
                result.vetoed = True
                entry(0, line.note or "一票否决", item, line, LedgerKind.VETO)
            continue
        entry(line.points, line.note, item, line)
        own[item.category_id] += line.points

    # Caps bound what a category can earn (additive) or lose (deductive): children first,
    # then their parent over its own items plus its children's capped totals.
    capped: dict[uuid.UUID, int] = {}
    for category, children in context.categories_children_first:
        total = own[category.id] + sum(capped[child] for child in children)
        if category.cap is not None:
            bound = -category.cap if deductive else category.cap
            if (deductive and total < bound) or (not deductive and total > bound):
                entry(bound - total, f"超出“{category.name}”上限{category.cap}分")
                total = bound
        capped[category.id] = total
    inspection = sum(total for c_id, total in capped.items() if categories[c_id].parent_id is None)
    if not deductive and policy.period_cap is not None and inspection > policy.period_cap:
        entry(policy.period_cap - inspection, f"超出每期满分{policy.period_cap}分")
        inspection = policy.period_cap
    # A period never scores below zero: penalties (旧县's 负向扣分) and deductions stop there,
    # so approving a period never has to take points a household has already spent.
    base = (policy.base_score or 0) if deductive else 0
    if base + inspection < 0:
        entry(-(base + inspection), "扣至零分为止")
        inspection = -base
    result.score = base + inspection

    if vetoed_this_year and not result.vetoed:
        # A year-scope veto earlier in the year (张堰: 取消本年度积分评比资格) holds every later
        # period too; the card is still recorded.
        result.vetoed = True
        entry(0, "本年度已被一票否决", kind=LedgerKind.VETO)
    counts_balance = policy.redemption.spends_balance
    for posted in result.entries:
        # A veto disqualifies the period; the ledger still records what was found.
        posted.counts_score = not result.vetoed
        posted.counts_balance = counts_balance and not result.vetoed
    if result.vetoed:
        result.score = 0
    return result


# How many months (or quarters) apart an item falls due; it is due in the periods whose number
# is a multiple (quarterly items in months 3/6/9/12, half-yearly in quarters 2 and 4).
_MONTHS_APART = {
    Cadence.MONTHLY: 1,
    Cadence.QUARTERLY: 3,
    Cadence.HALF_YEARLY: 6,
    Cadence.YEARLY: 12,
}
_QUARTERS_APART = {
    Cadence.MONTHLY: 1,
    Cadence.QUARTERLY: 1,
    Cadence.HALF_YEARLY: 2,
    Cadence.YEARLY: 4,
}


def is_due(cadence: Cadence, period_kind: PeriodKind, number: int) -> bool:
    """Whether an item of this cadence is scored in the period (month 1-12 or quarter 1-4)."""
    if PeriodKind(period_kind) is PeriodKind.MONTH:
        return number % _MONTHS_APART[Cadence(cadence)] == 0
    return number % _QUARTERS_APART[Cadence(cadence)] == 0
