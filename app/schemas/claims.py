import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models import ClaimStatus, ReviewDecision

Description = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)
]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class ClaimCreate(BaseModel):
    """自主申报: what was done, on which day, with up to 9 photos uploaded beforehand."""

    rule_item_id: uuid.UUID
    activity_on: date
    description: Description
    photo_ids: list[uuid.UUID] = Field(default=[], max_length=9)


class ReviewCreate(BaseModel):
    decision: ReviewDecision
    # Required to reject: the household is told why.
    comment: Comment = ""


class ReviewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    reviewer_id: uuid.UUID
    decision: ReviewDecision
    comment: str
    as_leader: bool
    created_at: datetime


class ClaimRead(BaseModel):
    id: uuid.UUID
    village_id: uuid.UUID
    household_id: uuid.UUID
    household_number: str
    village_group_id: uuid.UUID | None
    rule_item_id: uuid.UUID
    item_code: str
    item_title: str
    item_points: int
    activity_on: date
    description: str
    status: ClaimStatus
    on_behalf: bool
    submitted_by: uuid.UUID
    created_at: datetime
    age_days: int = Field(description="Days since submission (Asia/Shanghai)")
    decided_at: datetime | None
    decision_reason: str | None
    points_awarded: int | None = Field(
        description="Posted on approval; below the item's points where its per-period cap held"
    )
    photo_ids: list[uuid.UUID]
    thumbnail_urls: list[str]
    reviews: list[ReviewRead]
