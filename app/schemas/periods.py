import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from app.models import PeriodKind, PeriodStatus


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
    rank: int | None
    # 重新公示: the result was amended after an upheld objection.
    amended: bool = False


class PeriodResults(BaseModel):
    period: PeriodRead
    rows: list[PeriodResultRow]
