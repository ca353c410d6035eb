import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models import FilingStatus, Outcome, PeriodKind, PeriodStatus

Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class WaiverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class WaiverRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    period_id: uuid.UUID
    reason: str
    granted_by: uuid.UUID
    granted_at: datetime


class ScoringGroupMember(BaseModel):
    person_id: uuid.UUID
    name: str
    # scoring_leader or scorer; None: saved cards but held no scoring grant at approval.
    role: str | None
    cards_saved: int


class FilingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note = ""


class FilingAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Note = ""


class FilingRead(BaseModel):
    """Where the period's filing stands; status None: not filed yet."""

    model_config = ConfigDict(from_attributes=True)
    period_id: uuid.UUID
    village_id: uuid.UUID
    status: FilingStatus | None
    times_filed: int = 0
    note: str = ""
    filed_by: uuid.UUID | None = None
    filed_at: datetime | None = None
    answer_note: str = ""
    answered_by: uuid.UUID | None = None
    answered_at: datetime | None = None


class InspectionDraw(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(ge=1, le=200)
    # Given: the same seed draws the same households again. Left out: the server picks one
    # and records it, so the draw can be reproduced and checked afterwards.
    seed: int | None = Field(default=None, ge=0, le=2**62)


class InspectionLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int | None = Field(default=None, ge=-1000, le=1000)
    note: Note = ""


class InspectionCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: list[InspectionLine] = Field(min_length=1, max_length=200)


class InspectedHousehold(BaseModel):
    household_id: uuid.UUID
    number: str
    village_score: int
    inspector_score: int | None
    # inspector_score - village_score, once inspected.
    difference: int | None
    inspected_at: datetime | None


class InspectionRead(BaseModel):
    """The period's random check; drawn_at None: no sample drawn yet."""

    period_id: uuid.UUID
    village_id: uuid.UUID
    seed: int | None = None
    size: int = 0
    drawn_by: uuid.UUID | None = None
    drawn_at: datetime | None = None
    households: list[InspectedHousehold] = []
    inspected: int = 0
    mean_abs_difference: float | None = None


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    at: datetime
    actor_id: uuid.UUID | None
    actor_name: str | None = None
    action: str
    object_type: str
    object_id: uuid.UUID
    town_id: uuid.UUID | None
    village_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class Window(BaseModel):
    """The dashboard's window: a year, or a quarter or month of it (Asia/Shanghai dates)."""

    year: int
    quarter: int | None = None
    month: int | None = None
    starts_on: date
    ends_on: date


class Participation(BaseModel):
    participating: int
    # Households that have not left and have someone living there (every seed's 常住户).
    eligible: int


class ScorerFigures(BaseModel):
    person_id: uuid.UUID
    name: str
    cards: int
    mean: float | None
    std_dev: float | None
    share_full: float | None
    distinct_scores: int
    # all_full_score: every card of theirs at full score where the village's are not;
    # no_spread: every card the same score where the village's differ.
    flags: list[str]


class FilingFigures(BaseModel):
    status: FilingStatus | None  # None: not filed yet
    filed_at: datetime | None
    # Days from publication to the (latest) filing, or to today while published and unfiled.
    days_after_publication: int | None = None
    answer_note: str


class InspectionFigures(BaseModel):
    sampled: int
    inspected: int
    mean_abs_difference: float | None


class PeriodFiguresRead(BaseModel):
    period_id: uuid.UUID
    kind: PeriodKind
    number: int
    starts_on: date
    status: PeriodStatus
    scoring_due_on: date | None
    # Days past the due day the step was done (or, not done yet, is by today); 0 on time.
    scoring_days_late: int | None
    publication_due_on: date | None
    publication_days_late: int | None
    published_at: datetime | None
    # Computed at approval; None before.
    households_scored: int | None = None
    households_vetoed: int | None = None
    full_score: int | None = None
    mean: float | None = None
    std_dev: float | None = None
    share_full: float | None = None
    distinct_scores: int | None = None
    group_size: int | None = None
    group_min_size: int | None = None
    group_size_waived: bool = False
    standout_scorers: list[ScorerFigures] = []
    filing: FilingFigures
    inspection: InspectionFigures | None = None


class PendingAges(BaseModel):
    """What still waits for an answer, by how long it has waited: claims since submitted,
    objections since filed, escalations since escalated."""

    total: int = 0
    under_7_days: int = 0
    days_7_to_30: int = 0
    over_30_days: int = 0


class Redemptions(BaseModel):
    """Goods handed out in the window (collected orders, refunds left out)."""

    orders: int = 0
    points: int = 0
    yuan: Decimal | None = None


class Liability(BaseModel):
    outstanding_points: int = 0
    outstanding_yuan: Decimal | None = None


class VillageDashboard(BaseModel):
    village_id: uuid.UUID
    name: str
    yuan_per_point: Decimal | None
    participation: Participation
    periods: list[PeriodFiguresRead]
    periods_late: int
    periods_filed: int
    periods_queried: int
    claims_pending: PendingAges
    # 异议: waiting for the village working group, and escalated to the town.
    objections_open: PendingAges
    objections_escalated: PendingAges
    redemptions: Redemptions
    liability: Liability


class TownDashboard(BaseModel):
    town_id: uuid.UUID
    name: str
    window: Window
    villages: list[VillageDashboard]
