import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from app.models import ActivityStatus

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ActivityCreate(BaseModel):
    """志愿活动: attendance earns the (claimable bonus) item's points."""

    title: Text
    place: Text
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    rule_item_id: uuid.UUID
    places: int = Field(ge=1, le=10000)


class ActivityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    title: str
    place: str
    starts_at: datetime
    ends_at: datetime
    rule_item_id: uuid.UUID
    places: int
    taken: int
    status: ActivityStatus
    organiser_id: uuid.UUID
    created_at: datetime
    confirmed_at: datetime | None


class CheckInCode(BaseModel):
    """Shown as a QR code on site; a new one every minute."""

    code: str
    valid_until: datetime


class CheckInCreate(BaseModel):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class CheckInRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    activity_id: uuid.UUID
    person_id: uuid.UUID
    household_id: uuid.UUID
    created_at: datetime
    attended: bool | None


class AttendanceConfirm(BaseModel):
    """The check-ins that really attended; the others are marked absent."""

    attended_check_in_ids: list[uuid.UUID] = Field(max_length=10000)


class AttendanceRead(BaseModel):
    activity: ActivityRead
    households_awarded: int
    points_posted: int
