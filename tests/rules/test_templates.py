"""The shipped templates (app/rule_templates/*.json) checked against their seed documents.

The numbers below are copied from the seed texts in /work/shared/seeds/ (cited by file and
line), so a template that drifts from its seed fails here. No database is needed.
"""

import json
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable

import pytest

from app.models import Cadence, ItemKind
from app.rule_templates import all_items, templates
from app.schemas.rules import (
    PeriodLength,
    RuleTemplate,
    ScoringMode,
    TemplateCategory,
    TemplateItem,
    VetoScope,
)

TEMPLATE_FILES = sorted(
    (
        entry
        for entry in resources.files("app.rule_templates").iterdir()
        if entry.name.endswith(".json")
    ),
    key=lambda entry: entry.name,
)
SEED_TEMPLATES = {
    "qingpu-eco-green-2024",
    "zhangyan-governance-2024",
    "huaxin-governance-2024",
    "wengyuan-governance-2023",
    "jiuxian-living-environment-2022",
}


def template(code: str) -> RuleTemplate:
    return templates()[code]


def category(categories: list[TemplateCategory], name: str) -> TemplateCategory:
    matches = [c for c in categories if c.name == name]
    assert len(matches) == 1, f"expected one category named {name!r}"
    return matches[0]


def total(items: list[TemplateItem]) -> int:
    return sum(item.points for item in items)


def points_by_code(t: RuleTemplate) -> dict[str, int]:
    return {item.code: item.points for item in all_items(t.categories)}


def walk(categories: list[TemplateCategory]) -> list[list[TemplateCategory]]:
    """Every list of sibling categories, top level first."""
    groups = [categories]
    for c in categories:
        groups.extend(walk(c.children))
    return groups


# Every template


def test_one_template_per_seed_locality() -> None:
    stems = {entry.name.removesuffix(".json") for entry in TEMPLATE_FILES}
    assert stems >= SEED_TEMPLATES
    assert set(templates()) >= SEED_TEMPLATES


@pytest.mark.parametrize("entry", TEMPLATE_FILES, ids=lambda e: e.name)
def test_template_file_validates(entry: Traversable) -> None:
    parsed = RuleTemplate.model_validate(json.loads(entry.read_text(encoding="utf-8")))
    assert parsed.code == entry.name.removesuffix(".json")
    assert parsed.notes, "a template says in notes what its seed leaves out"


@pytest.mark.parametrize("code", sorted(SEED_TEMPLATES))
def test_template_is_consistent(code: str) -> None:
    t = template(code)
    items = all_items(t.categories)
    codes = [item.code for item in items]
    assert len(codes) == len(set(codes)), "item codes repeat"
    for siblings in walk(t.categories):
        names = [c.name for c in siblings]
        assert len(names) == len(set(names)), "sibling categories share a name"
    for item in items:
        if item.kind is ItemKind.VETO:
            assert item.points == 0
            assert not item.claimable
        if item.claimable:
            assert item.kind is ItemKind.BONUS
        if t.policy.scoring_mode is ScoringMode.DEDUCTIVE and item.kind is ItemKind.INSPECTION:
            assert item.points > 0, "deductive items give the deduction as a positive number"


# 青浦区 — qingpu-district-eco-green-points-2024.txt, 附件1 (lines 144-207)

QINGPU_POINTS = {
    # 人居环境, lines 148-162: items 1-6, 5 points each
    **{str(n): 5 for n in range(1, 7)},
    # 垃圾分类, lines 164-174: items 7-10, 5 points each
    **{str(n): 5 for n in range(7, 11)},
    # 平安宜居, lines 176-184: items 11-13, 5 points each
    **{str(n): 5 for n in range(11, 14)},
    # 绿色低碳, lines 186-198: items 14-18, 7 points each
    **{str(n): 7 for n in range(14, 19)},
    # 加分项, lines 200-205: 19 志愿服务 10, 20 荣誉表彰 10
    "19": 10,
    "20": 10,
}


def test_qingpu_matches_seed() -> None:
    t = template("qingpu-eco-green-2024")
    assert t.year == 2024
    assert points_by_code(t) == QINGPU_POINTS
    items = all_items(t.categories)
    assert len(items) == 20
    assert total(items) == 120
    assert [c.name for c in t.categories] == [
        "人居环境",
        "垃圾分类",
        "平安宜居",
        "绿色低碳",
        "加分项",
    ]
    sums = {c.name: total(c.items) for c in t.categories}
    assert sums == {"人居环境": 30, "垃圾分类": 20, "平安宜居": 15, "绿色低碳": 35, "加分项": 20}
    # The seed states no caps; 19 and 20 are the 加分项 (bonus), the rest periodic checks.
    assert all(c.cap is None for c in t.categories)
    kinds = {item.code: item.kind for item in items}
    assert kinds.pop("19") is ItemKind.BONUS
    assert kinds.pop("20") is ItemKind.BONUS
    assert set(kinds.values()) == {ItemKind.INSPECTION}
    assert total([i for i in items if i.kind is ItemKind.INSPECTION]) == 100
    # line 152, item 1 in the seed's wording; line 190, item 14
    assert category(t.categories, "人居环境").items[0].title.startswith("宅前屋后干净整洁")
    assert category(t.categories, "绿色低碳").items[0].title == "禁止露天焚烧农作物秸秆。"
    # Nothing in the seed sets these knobs: additive, defaults kept.
    p = t.policy
    assert p.scoring_mode is ScoringMode.ADDITIVE
    assert p.base_score is None
    assert p.period_cap is None
    assert p.year_end_awards is None
    assert p.redemption.tiers == []
    # lines 60-66: scoring group → 两委 approval → publication → 报街镇备案 are notes
    assert "报街镇备案" in t.notes


# 张堰镇 — zhangyan-town-governance-points-2024.txt, 实施细则 (lines 65-95)

ZHANGYAN_ASPECT_CAPS = {
    # line 33: 三大类、八方面、总分共计120分; caps from the table's 指标名称 column
    "环境卫生": {"宅前屋后": 45, "美丽庭院": 10, "田间地头": 15, "生态保护": 10},  # lines 68-78
    "乡风文明": {"传统美德": 10, "社会公德": 15, "移风易俗": 10},  # lines 79-86
    "志愿服务": {"志愿服务": 5},  # lines 88-90
}
ZHANGYAN_POINTS = {
    # 宅前屋后 lines 68-72
    "1.1": 15,
    "1.2": 10,
    "1.3": 10,
    "1.4": 5,
    "1.5": 5,
    # 美丽庭院 lines 73-74
    "1.6": 5,
    "1.7": 5,
    # 田间地头 lines 75-76
    "1.8": 10,
    "1.9": 5,
    # 生态保护 lines 77-78
    "1.10": 5,
    "1.11": 5,
    # 传统美德 lines 79-80
    "2.1": 5,
    "2.2": 5,
    # 社会公德 lines 81-84
    "2.3": 5,
    "2.4": 5,
    "2.5": 3,
    "2.6": 2,
    # 移风易俗 lines 85-86
    "2.7": 5,
    "2.8": 5,
    # 志愿服务 lines 88-90
    "3.1": 1,
    "3.2": 2,
    "3.3": 2,
    # 一票否决项 lines 91-93 (no points)
    "V1": 0,
    "V2": 0,
    "V3": 0,
}


def test_zhangyan_matches_seed() -> None:
    t = template("zhangyan-governance-2024")
    assert t.year == 2024
    assert points_by_code(t) == ZHANGYAN_POINTS
    assert [c.name for c in t.categories] == ["环境卫生", "乡风文明", "志愿服务", "一票否决项"]
    for type_name, caps in ZHANGYAN_ASPECT_CAPS.items():
        kind = category(t.categories, type_name)
        assert kind.items == []
        assert {a.name: a.cap for a in kind.children} == caps
        for aspect in kind.children:
            # each aspect's items add up to its cap
            assert total(aspect.items) == aspect.cap, aspect.name
    type_totals = {
        name: total(all_items([category(t.categories, name)])) for name in ZHANGYAN_ASPECT_CAPS
    }
    assert type_totals == {"环境卫生": 80, "乡风文明": 35, "志愿服务": 5}
    # line 33: 总分共计120分
    assert total(all_items(t.categories)) == 120
    assert sum(sum(caps.values()) for caps in ZHANGYAN_ASPECT_CAPS.values()) == 120

    # lines 33-35 and 91-93: three veto items that cancel the household's year
    vetoes = category(t.categories, "一票否决项").items
    assert [v.title for v in vetoes] == ["新增违法建筑", "秸秆焚烧行为", "违纪违法行为"]
    assert all(v.kind is ItemKind.VETO and v.points == 0 for v in vetoes)
    assert t.policy.veto_scope is VetoScope.YEAR

    # line 39: villagers self-report online or offline → the 志愿服务 items are claimable bonus
    volunteer = all_items([category(t.categories, "志愿服务")])
    assert [i.code for i in volunteer] == ["3.1", "3.2", "3.3"]
    assert all(i.kind is ItemKind.BONUS and i.claimable for i in volunteer)
    base_items = all_items(t.categories[:2])
    assert all(i.kind is ItemKind.INSPECTION and not i.claimable for i in base_items)
    assert all(i.cadence is Cadence.MONTHLY for i in all_items(t.categories))

    p = t.policy
    assert p.scoring_mode is ScoringMode.ADDITIVE
    assert p.period is PeriodLength.MONTH  # line 39: 鼓励一月一评分
    assert p.carry_over is False  # line 43: 年底清零，次年重新积分
    assert p.redemption.spends_balance is True  # line 41: 积分兑换 at the 积分商城
    assert p.period_cap is None  # the 120 total is kept by the aspect caps
    assert p.year_end_awards is None
    assert "每季度" in t.notes  # line 41: quarterly summary and redemption


# 华新镇 — huaxin-town-governance-points-2024.txt


def test_huaxin_matches_seed() -> None:
    t = template("huaxin-governance-2024")
    assert t.year == 2024
    p = t.policy
    assert p.scoring_mode is ScoringMode.ADDITIVE
    # lines 122-124: 每月原则上满分为 100 分（附加分除外），每月完成本村积分评定
    assert p.period is PeriodLength.MONTH
    assert p.period_cap == 100
    # lines 116-121: 自治小组 … 人数原则上不少于 6 人
    assert p.scoring_group_min_size == 6
    # lines 112-114: the seed names areas, no items or points
    assert [c.name for c in t.categories] == ["村民议事", "平安建设", "文明建新风", "人居环境"]
    assert all_items(t.categories) == []
    assert all(c.cap is None and c.children == [] for c in t.categories)
    # lines 106-110: 十九个行政村，及八个中心村，中心村归纳于属地行政村 (a note)
    assert "中心村" in t.notes
    # lines 126-128: quarterly publication, recorded in notes
    assert "每季度" in t.notes
    assert p.year_end_awards is None
    assert p.redemption.tiers == []


# 翁源县 — wengyuan-county-governance-points-2023.txt


def test_wengyuan_matches_seed() -> None:
    t = template("wengyuan-governance-2023")
    assert t.year == 2023
    p = t.policy
    # line 59: 采用百分制，实行倒扣分制
    assert p.scoring_mode is ScoringMode.DEDUCTIVE
    assert p.base_score == 100
    # line 51: 每月统计一次 … 12个月积分累加为年度积分
    assert p.period is PeriodLength.MONTH
    # line 61: 每组不少于3人，指定小组长1名
    assert p.scoring_group_min_size == 3
    # line 65: 评分时间在每月底进行 … 可在次月3日前完成评分工作
    assert p.deadlines.scoring_due is not None
    assert (p.deadlines.scoring_due.day, p.deadlines.scoring_due.months_after_period_end) == (3, 1)
    # line 69: 于每月10日前在村务公开栏更新积分情况
    assert p.deadlines.publication_due is not None
    publication = p.deadlines.publication_due
    assert (publication.day, publication.months_after_period_end) == (10, 1)

    # line 79: 每月家庭积分达80分以上且在村小组家庭积分中排名前15名的 … 物品设四个档次
    r = p.redemption
    assert r.min_period_score == 80
    assert r.top_n_in_group == 15
    assert [(tier.label, tier.min_score) for tier in r.tiers] == [
        ("第一档次", 95),
        ("第二档次", 90),
        ("第三档次", 85),
        ("第四档次", 80),
    ]
    # goods are granted by tier (各村小组根据不同档次设置不同兑换物品), no points are spent
    assert r.spends_balance is False
    # line 83: 每月设置一个固定日期为积分兑换日 (the day is the village's choice)
    assert r.window.months == []
    assert r.window.day_of_month is None
    assert r.yuan_per_point is None

    # line 85: 按照常住户数的30%设置奖励名额 … 一、二、三等奖分别占 20%、30%、50%
    awards = p.year_end_awards
    assert awards is not None
    assert awards.household_share == Decimal("0.3")
    assert [(level.name, level.share) for level in awards.levels] == [
        ("一等奖", Decimal("0.2")),
        ("二等奖", Decimal("0.3")),
        ("三等奖", Decimal("0.5")),
    ]

    # line 55: 人居环境和乡风文明两大类12条（附件1）— the annex is not in the seed: no items
    assert [c.name for c in t.categories] == ["人居环境", "乡风文明"]
    assert all_items(t.categories) == []
    assert "附件1" in t.notes


# 旧县街道 — jiuxian-street-living-environment-points-2022.txt


def test_jiuxian_matches_seed() -> None:
    t = template("jiuxian-living-environment-2022")
    assert t.year == 2022
    p = t.policy
    assert p.scoring_mode is ScoringMode.ADDITIVE
    assert p.period is PeriodLength.MONTH  # line 33: 坚持每月一评
    # line 33: 每月20日前完成当月评分 (the same month)
    assert p.deadlines.scoring_due is not None
    assert (p.deadlines.scoring_due.day, p.deadlines.scoring_due.months_after_period_end) == (20, 0)
    # line 37: 每月25日前完成亮分环节 … 公示本村所有农户当月积分情况
    assert p.deadlines.publication_due is not None
    publication = p.deadlines.publication_due
    assert (publication.day, publication.months_after_period_end) == (25, 0)
    # line 27: 当月无违法行为，否则一票否决，取消当月评比资格
    assert p.veto_scope is VetoScope.PERIOD
    vetoes = [i for i in all_items(t.categories) if i.kind is ItemKind.VETO]
    assert len(vetoes) == 1
    assert "违法行为" in vetoes[0].title

    # line 39: 每季度一兑，兑换标准为1分即1元。每年1月、4月、7月、10月开展积分兑换活动
    r = p.redemption
    assert r.window.months == [1, 4, 7, 10]
    assert r.yuan_per_point == Decimal("1")
    assert r.spends_balance is True  # 对个案台账和积分存折做好扣减记录
    assert r.min_period_score is None
    assert r.top_n_in_group is None
    assert r.tiers == []
    # line 39: 当年未兑换的积分结转 to 下一年度 (sic)
    assert p.carry_over is True
    assert p.year_end_awards is None

    # line 29: 基础积分（含正向积分和负向扣分）和奖励积分, 参照附件1 — annex not in the seed
    assert [c.name for c in t.categories] == ["基础积分", "奖励积分", "一票否决"]
    assert category(t.categories, "基础积分").items == []
    assert category(t.categories, "奖励积分").items == []
    assert "附件1" in t.notes
    # line 37: passbook per household; line 69: never cash
    assert "积分存折" in t.notes
    assert "现金" in t.notes
