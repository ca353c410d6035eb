"""A rule set as an XLSX workbook laid out like the seeds' tables (类型/指标/序号/内容/分值)."""

from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from app.models import ItemKind
from app.schemas.rules import CategoryRead, ItemRead, RuleSetRead, ScoringMode
from app.xlsx import safe as _safe

KIND_LABELS = {ItemKind.INSPECTION: "考评项", ItemKind.BONUS: "加分项", ItemKind.VETO: "一票否决项"}
CADENCE_LABELS = {
    "monthly": "每月",
    "quarterly": "每季度",
    "half_yearly": "每半年",
    "yearly": "每年",
}
HEADER = [
    "类型",
    "指标名称",
    "序号",
    "具体内容",
    "分值",
    "项目类别",
    "频次",
    "可申报",
    "需佐证",
    "每期上限",
]


def _label(category: CategoryRead) -> str:
    return f"{category.name} ({category.cap}分)" if category.cap else category.name


def _row(kind: str, aspect: str, item: ItemRead) -> list[object]:
    points: object = "-" if item.kind is ItemKind.VETO else item.points
    text = item.title + (f"：{item.description}" if item.description else "")
    return [
        _safe(kind),
        _safe(aspect),
        _safe(item.code),
        _safe(text),
        points,
        KIND_LABELS[item.kind],
        CADENCE_LABELS[item.cadence.value],
        "是" if item.claimable else "",
        "是" if item.evidence_required else "",
        item.period_cap or "",
    ]


def rule_set_workbook(rule_set: RuleSetRead) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "积分细则"
    sheet.append([_safe(rule_set.title)])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([f"{rule_set.year}年 第{rule_set.version}版，自{rule_set.effective_from}起执行"])
    sheet.append(HEADER)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    for root in rule_set.categories:
        for item in root.items:
            sheet.append(_row(_label(root), "", item))
        for child in root.children:
            for item in child.items:
                sheet.append(_row(_label(root), _label(child), item))
    for column, width in zip("ABCDEFGHIJ", (16, 18, 6, 60, 6, 10, 8, 7, 7, 9), strict=True):
        sheet.column_dimensions[column].width = width
    for row in sheet.iter_rows(min_row=4):
        row[3].alignment = Alignment(wrap_text=True, vertical="top")

    policy = rule_set.policy
    rules = workbook.create_sheet("积分办法")
    mode = "扣分制" if policy.scoring_mode is ScoringMode.DEDUCTIVE else "累计加分制"
    rows: list[tuple[str, object]] = [
        ("计分方式", mode),
        ("基础分", policy.base_score or ""),
        ("考评周期", "月" if policy.period.value == "month" else "季度"),
        ("每期满分（不含加分）", policy.period_cap or ""),
        ("一票否决范围", "当年" if policy.veto_scope.value == "year" else "当期"),
        ("年度结转", "结转下一年度" if policy.carry_over else "年底清零"),
        ("评分小组最少人数", policy.scoring_group_min_size or ""),
        ("申报审核人数", policy.claims.review_quorum),
        ("异议期（天）", policy.deadlines.objection_window_days),
        ("驳回后申请镇（街道）复核期（天）", policy.deadlines.escalation_window_days),
        ("兑换月份", "、".join(str(m) for m in policy.redemption.window.months) or "每月"),
        ("每分折合（元，仅兑换物品）", str(policy.redemption.yuan_per_point or "")),
        ("兑换最低当期积分", policy.redemption.min_period_score or ""),
        ("村民小组排名前N名", policy.redemption.top_n_in_group or ""),
        ("兑换档次", "、".join(f"{t.label}≥{t.min_score}" for t in policy.redemption.tiers)),
    ]
    for key, value in rows:
        rules.append([key, _safe(value)])
    rules.column_dimensions["A"].width = 28
    rules.column_dimensions["B"].width = 40
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
