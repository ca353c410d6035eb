import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from app.models import PeriodKind, PeriodStatus
from app.schemas.rankings import RankScope


class PeriodOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    starts_on: date


class PeriodRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    rule_set_id: uuid.UUID
    year: int
    kind: PeriodKind
    number: int
    starts_on: date
    ends_on: date
    status: PeriodStatus
    scoring_due_on: date | None
    publication_due_on: date | None
    objection_closes_on: date | None
    created_at: datetime
    submitted_at: datetime | None
    approved_at: datetime | None
    published_at: datetime | None
    closed_at: datetime | None
    # Deadlines passed with the step not done, as the town supervisor sees them.
    scoring_late: bool = False
    publication_late: bool = False


class PeriodResultRow(BaseModel):
    """One line of the publication list (公示), names as a notice board shows them."""

    household_id: uuid.UUID
    number: str
    head_name: str | None
    village_group_id: uuid.UUID | None
    score: int
    vetoed: bool
    # In the village group where the policy ranks by group (翁源), else in the village.
    rank: int | None
    # 重新公示: the result was amended after an upheld objection.
    amended: bool = False

    rank_in_village: int | None = None
    rank_in_group: int | None = None


class PeriodResults(BaseModel):
    period: PeriodRead
    rank_within: RankScope
    rows: list[PeriodResultRow]
    next_cursor: str | None = None
