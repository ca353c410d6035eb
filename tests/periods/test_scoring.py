"""The period score from a card: what the seeds' schemes need, computed without a database."""

import uuid

from app.models import Cadence, ItemKind, LedgerKind, Outcome, RuleCategory, RuleItem, ScorecardLine
from app.schemas.rules import Policy
from app.services.scoring import PeriodContext, household_result

RULE_SET = uuid.uuid4()
VILLAGE = uuid.uuid4()
HOUSEHOLD = uuid.uuid4()


def category(name: str, cap: int | None = None, parent: RuleCategory | None = None) -> RuleCategory:
    return RuleCategory(
        id=uuid.uuid4(), rule_set_id=RULE_SET, village_id=VILLAGE, name=name, cap=cap,
        parent_id=parent.id if parent else None,
    )  # fmt: skip


def item(
    cat: RuleCategory, code: str, points: int, kind: ItemKind = ItemKind.INSPECTION
) -> RuleItem:
    return RuleItem(
        id=uuid.uuid4(), rule_set_id=RULE_SET, village_id=VILLAGE, category_id=cat.id, code=code,
        title=f"项目{code}", points=points, kind=kind, cadence=Cadence.MONTHLY,
    )  # fmt: skip


def line(it: RuleItem, points: int, outcome: Outcome = Outcome.COMPLIANT) -> ScorecardLine:
    return ScorecardLine(
        id=uuid.uuid4(), scorecard_id=uuid.uuid4(), village_id=VILLAGE, rule_item_id=it.id,
        outcome=outcome, points=points,
    )  # fmt: skip


def context(policy: Policy, categories: list[RuleCategory], items: list[RuleItem]) -> PeriodContext:
    return PeriodContext(
        period_id=uuid.uuid4(),
        year=2031,
        actor_id=None,
        policy=policy,
        categories={c.id: c for c in categories},
        items={i.id: i for i in items},
    )


def test_additive_sums_the_card_and_caps_each_aspect_and_its_type() -> None:
    environment = category("环境卫生", cap=50)
    yard = category("宅前屋后", cap=20, parent=environment)
    field = category("田间地头", cap=15, parent=environment)
    a, b, c = item(yard, "1", 15), item(yard, "2", 10), item(field, "3", 15)
    result = household_result(
        context(Policy(), [environment, yard, field], [a, b, c]),
        HOUSEHOLD,
        [line(a, 15), line(b, 10), line(c, 12)],
    )
    # 宅前屋后 earns 25 but is capped at 20; 田间地头 12; the type's 50 is not reached.
    assert result.score == 32
    assert not result.vetoed
    assert sum(e.points for e in result.entries) == 32
    trims = [e for e in result.entries if e.rule_item is None]
    assert [(e.points, e.memo) for e in trims] == [(-5, "超出“宅前屋后”上限20分")]
    assert all(e.counts_score and e.counts_balance for e in result.entries)
    assert {e.rule_item.code for e in result.entries if e.rule_item} == {"1", "2", "3"}


def test_the_period_cap_leaves_bonus_out_and_penalty_items_subtract() -> None:
    base = category("基础积分")
    good, bad = item(base, "1", 80), item(base, "2", -5)
    more = item(base, "3", 30)
    result = household_result(
        context(Policy(period_cap=100), [base], [good, bad, more]),
        HOUSEHOLD,
        [line(good, 80), line(more, 30), line(bad, -5, Outcome.FINDING)],
    )
    assert result.score == 100  # 105 after the penalty, capped at the monthly 100
    assert sum(e.points for e in result.entries) == 100


def test_deduction_from_a_base_with_a_category_cap_and_a_floor() -> None:
    policy = Policy(scoring_mode="deductive", base_score=100)
    environment = category("人居环境", cap=30)
    a, b = item(environment, "1", 20), item(environment, "2", 20)
    result = household_result(
        context(policy, [environment], [a, b]),
        HOUSEHOLD,
        [line(a, -20, Outcome.FINDING), line(b, -20, Outcome.FINDING)],
    )
    assert result.score == 70  # deductions of 40 capped at 30
    assert sum(e.points for e in result.entries) == 70
    assert result.entries[0].memo == "基础分"
    heavy = Policy(scoring_mode="deductive", base_score=10)
    floored = household_result(
        context(heavy, [environment], [a, b]), HOUSEHOLD, [line(a, -20, Outcome.FINDING)]
    )
    assert floored.score == 0
    assert sum(e.points for e in floored.entries) == 0


def test_a_veto_records_everything_and_counts_nothing() -> None:
    environment = category("环境卫生")
    vetoes = category("一票否决项")
    a, veto = item(environment, "1", 15), item(vetoes, "V1", 0, ItemKind.VETO)
    result = household_result(
        context(Policy(veto_scope="year"), [environment, vetoes], [a, veto]),
        HOUSEHOLD,
        [line(a, 15), line(veto, 0, Outcome.FINDING)],
    )
    assert result.vetoed
    assert result.score == 0
    kinds = [(e.kind, e.points) for e in result.entries]
    assert (LedgerKind.VETO, 0) in kinds
    assert (LedgerKind.INSPECTION, 15) in kinds
    assert not any(e.counts_score or e.counts_balance for e in result.entries)


def test_points_stay_out_of_the_balance_where_goods_come_by_tier() -> None:
    environment = category("人居环境")
    a = item(environment, "1", 5)
    policy = Policy(scoring_mode="deductive", base_score=100, redemption={"spends_balance": False})
    result = household_result(context(policy, [environment], [a]), HOUSEHOLD, [line(a, 0)])
    assert result.score == 100
    assert all(e.counts_score and not e.counts_balance for e in result.entries)


def test_a_month_of_penalties_stops_at_zero() -> None:
    """旧县's negative base points may outweigh the positive ones; the month scores 0, not less,
    so approval never takes back points a household already spent."""
    base = category("基础积分")
    good, penalty = item(base, "1", 5), item(base, "2", -8)
    result = household_result(
        context(Policy(), [base], [good, penalty]),
        HOUSEHOLD,
        [line(good, 5), line(penalty, -8, Outcome.FINDING)],
    )
    assert result.score == 0
    assert sum(e.points for e in result.entries) == 0
    assert [e.memo for e in result.entries if e.rule_item is None] == ["扣至零分为止"]


def test_a_veto_earlier_in_the_year_holds_this_period_too() -> None:
    environment = category("环境卫生")
    a = item(environment, "1", 15)
    result = household_result(
        context(Policy(veto_scope="year"), [environment], [a]),
        HOUSEHOLD,
        [line(a, 15)],
        vetoed_this_year=True,
    )
    assert result.vetoed
    assert result.score == 0
    assert [(e.kind, e.memo) for e in result.entries if e.kind is LedgerKind.VETO] == [
        (LedgerKind.VETO, "本年度已被一票否决")
    ]
    assert not any(e.counts_score or e.counts_balance for e in result.entries)
