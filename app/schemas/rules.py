import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models import Cadence, ItemKind, RuleSetStatus

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Month = Annotated[int, Field(ge=1, le=12)]


class ScoringMode(StrEnum):
    ADDITIVE = "additive"  # points earned add up (张堰, 青浦, 华新, 旧县)
    DEDUCTIVE = "deductive"  # every household starts from a base and loses points (翁源)


class PeriodLength(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


class VetoScope(StrEnum):
    PERIOD = "period"  # the finding cancels the period's score (旧县: 当月)
    YEAR = "year"  # the finding cancels the household's year (张堰)


class VetoedInRankings(StrEnum):
    EXCLUDE = "exclude"
    MARK = "mark"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Deadline(Strict):
    """A day of a month counted from the period's last month: 0 = that month, 1 = the next.

    A day past the month's end means its last day (31 = month end).
    """

    day: int = Field(ge=1, le=31)
    months_after_period_end: int = Field(default=0, ge=0, le=3)


class Deadlines(Strict):
    scoring_due: Deadline | None = None
    publication_due: Deadline | None = None
    objection_window_days: int = Field(default=7, ge=0, le=60)
    # How long after a dismissal the household may escalate to the town (镇/街道督导).
    escalation_window_days: int = Field(default=7, ge=0, le=60)


class ClaimPolicy(Strict):
    review_quorum: int = Field(default=2, ge=1, le=20)
    leader_decides_alone: bool = True


class RedemptionWindow(Strict):
    """When the shop redeems: listed months, or else once every `every_months` months (1 =
    monthly, 3 = quarterly without named months, as 张堰 says); on a day, or any day."""

    months: list[Month] = []
    every_months: int = Field(default=1, ge=1, le=12)
    day_of_month: int | None = Field(default=None, ge=1, le=31)

    @model_validator(mode="after")
    def months_unique(self) -> "RedemptionWindow":
        if len(set(self.months)) != len(self.months):
            raise ValueError("months must not repeat")
        self.months = sorted(self.months)
        return self


class ScoreTier(Strict):
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    min_score: int


class RedemptionPolicy(Strict):
    window: RedemptionWindow = RedemptionWindow()
    # False where goods are granted by tier without spending points (翁源).
    spends_balance: bool = True
    min_period_score: int | None = None
    top_n_in_group: int | None = Field(default=None, ge=1)
    tiers: list[ScoreTier] = []
    # Orders a household may take in one redemption round (翁源: its tier's goods once a
    # month); None: as many as points, stock and each item's own limit allow.
    orders_per_round: int | None = Field(default=None, ge=1)
    # Whether a household vetoed for the year (veto_scope=year) may still redeem during that
    # year. 张堰 cancels the vetoed household's year (取消本年度积分评比资格): false. Where a
    # veto holds one period only the setting has nothing to act on.
    vetoed_may_redeem: bool = True
    # What a point is shown as worth, in goods only; points never turn into cash.
    yuan_per_point: Decimal | None = Field(default=None, gt=0, le=100, decimal_places=2)

    @model_validator(mode="after")
    def tiers_descend(self) -> "RedemptionPolicy":
        scores = [t.min_score for t in self.tiers]
        if scores != sorted(scores, reverse=True) or len(set(scores)) != len(scores):
            raise ValueError(
                "tiers must be listed from the highest min_score down, without repeats"
            )
        return self


class AwardLevel(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    share: Decimal = Field(gt=0, le=1)


class AwardScope(StrEnum):
    VILLAGE = "village"
    VILLAGE_GROUP = "village_group"


class AwardBasis(StrEnum):
    PARTICIPATING_HOUSEHOLDS = "participating_households"
    RESIDENT_HOUSEHOLDS = "resident_households"  # 常住户 (翁源)


class YearEndAwards(Strict):
    """Prizes for a share of households, split between levels (翁源: 30% of the resident
    households of each village group, on the year's total, split 20/30/50)."""

    household_share: Decimal = Field(gt=0, le=1)
    scope: AwardScope = AwardScope.VILLAGE
    basis: AwardBasis = AwardBasis.PARTICIPATING_HOUSEHOLDS
    levels: list[AwardLevel] = Field(min_length=1)

    @model_validator(mode="after")
    def levels_sum_to_one(self) -> "YearEndAwards":
        if sum(level.share for level in self.levels) != 1:
            raise ValueError("the levels' shares must add up to 1")
        return self


class Policy(Strict):
    scoring_mode: ScoringMode = ScoringMode.ADDITIVE
    base_score: int | None = Field(default=None, ge=1, le=10000)
    period: PeriodLength = PeriodLength.MONTH
    # Results may be published less often than scored (华新: scored monthly, published quarterly).
    publication_period: PeriodLength | None = None
    # Most a household can score in a period from inspection items; bonus points come on top.
    period_cap: int | None = Field(default=None, ge=1, le=10000)
    veto_scope: VetoScope = VetoScope.PERIOD
    vetoed_in_rankings: VetoedInRankings = VetoedInRankings.EXCLUDE
    # Where a household's rank is reckoned on the notice board (翁源: within the village group).
    rank_within: AwardScope = AwardScope.VILLAGE
    # True: unspent points carry into the next year; False: they expire on 1 January.
    carry_over: bool = False
    scoring_group_min_size: int | None = Field(default=None, ge=1, le=50)
    claims: ClaimPolicy = ClaimPolicy()
    deadlines: Deadlines = Deadlines()
    redemption: RedemptionPolicy = RedemptionPolicy()
    year_end_awards: YearEndAwards | None = None

    @model_validator(mode="after")
    def base_matches_mode(self) -> "Policy":
        if self.scoring_mode is ScoringMode.DEDUCTIVE and self.base_score is None:
            raise ValueError("deductive scoring needs a base_score (such as 100)")
        if self.scoring_mode is ScoringMode.ADDITIVE and self.base_score is not None:
            raise ValueError("additive scoring starts from zero; leave base_score out")
        if self.publication_period is PeriodLength.MONTH and self.period is PeriodLength.QUARTER:
            raise ValueError("results cannot be published more often than they are scored")
        return self


class TemplateItem(Strict):
    code: Code
    title: Text
    description: Description = ""
    points: int = Field(ge=-1000, le=1000)
    kind: ItemKind = ItemKind.INSPECTION
    claimable: bool = False
    period_cap: int | None = Field(default=None, ge=1, le=100000)
    evidence_required: bool = False
    cadence: Cadence = Cadence.MONTHLY


class TemplateCategory(Strict):
    name: Text
    cap: int | None = Field(default=None, ge=1, le=100000)
    items: list[TemplateItem] = []
    children: list["TemplateCategory"] = []


class RuleTemplate(Strict):
    """A seed locality's scheme as shipped data (app/rule_templates/*.json)."""

    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,39}$")]
    title: Text
    locality: Text
    source: Text
    year: int
    notes: Annotated[str, StringConstraints(max_length=2000)] = ""
    policy: Policy
    categories: list[TemplateCategory] = []


class TemplateSummary(BaseModel):
    code: str
    title: str
    locality: str
    source: str
    year: int
    notes: str
    scoring_mode: ScoringMode
    period: PeriodLength
    item_count: int


# Requests


class RuleSetCreate(Strict):
    """A draft from a shipped template, or from an earlier rule set of the village."""

    year: int = Field(ge=2000, le=2100)
    template_code: str | None = None
    from_rule_set_id: uuid.UUID | None = None
    title: Text | None = None

    @model_validator(mode="after")
    def one_source(self) -> "RuleSetCreate":
        if (self.template_code is None) == (self.from_rule_set_id is None):
            raise ValueError("give exactly one of template_code or from_rule_set_id")
        return self


class RuleSetVersionCreate(Strict):
    effective_from: date


class RuleSetUpdate(Strict):
    title: Text | None = None
    policy: Policy | None = None


class RuleSetReturn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class CategoryCreate(Strict):
    name: Text
    cap: int | None = Field(default=None, ge=1, le=100000)
    parent_id: uuid.UUID | None = None
    position: int = Field(default=0, ge=0, le=10000)


class CategoryUpdate(Strict):
    name: Text | None = None
    cap: int | None = Field(default=None, ge=1, le=100000)
    position: int | None = Field(default=None, ge=0, le=10000)


class ItemCreate(Strict):
    category_id: uuid.UUID
    code: Code
    title: Text
    description: Description = ""
    points: int = Field(ge=-1000, le=1000)
    kind: ItemKind = ItemKind.INSPECTION
    claimable: bool = False
    period_cap: int | None = Field(default=None, ge=1, le=100000)
    evidence_required: bool = False
    cadence: Cadence = Cadence.MONTHLY
    position: int = Field(default=0, ge=0, le=10000)


class ItemUpdate(Strict):
    category_id: uuid.UUID | None = None
    code: Code | None = None
    title: Text | None = None
    description: Description | None = None
    points: int | None = Field(default=None, ge=-1000, le=1000)
    kind: ItemKind | None = None
    claimable: bool | None = None
    period_cap: int | None = Field(default=None, ge=1, le=100000)
    evidence_required: bool | None = None
    cadence: Cadence | None = None
    position: int | None = Field(default=None, ge=0, le=10000)


# Responses


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    category_id: uuid.UUID
    lineage_id: uuid.UUID
    code: str
    title: str
    description: str
    points: int
    kind: ItemKind
    claimable: bool
    period_cap: int | None
    evidence_required: bool
    cadence: Cadence
    position: int


class CategoryRead(BaseModel):
    id: uuid.UUID
    parent_id: uuid.UUID | None
    name: str
    cap: int | None
    position: int
    items: list[ItemRead] = []
    children: list["CategoryRead"] = []


class RuleSetSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    year: int
    version: int
    status: RuleSetStatus
    title: str
    template_code: str | None
    based_on_id: uuid.UUID | None
    effective_from: date
    created_at: datetime
    submitted_at: datetime | None
    decided_at: datetime | None
    return_reason: str | None


class RuleSetRead(RuleSetSummary):
    policy: Policy
    categories: list[CategoryRead] = []


class ActiveRules(BaseModel):
    """What a villager's phone shows: the rules in force on a day, grouped by category."""

    village_id: uuid.UUID
    rule_set_id: uuid.UUID
    year: int
    version: int
    effective_from: date
    title: str
    scoring_mode: Literal["additive", "deductive"]
    base_score: int | None
    period: Literal["month", "quarter"]
    period_cap: int | None
    summary: list[str]
    categories: list[CategoryRead]
