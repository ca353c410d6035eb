import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class ActivityStatus(StrEnum):
    ANNOUNCED = "announced"
    CONFIRMED = "confirmed"  # attendance confirmed and bonuses posted


class Activity(SQLModel, table=True):
    """志愿活动: places are counted in the row itself, so the database never oversells them."""

    __tablename__ = "activity"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        sa.CheckConstraint("places > 0", name="places_positive"),
        sa.CheckConstraint("taken >= 0 AND taken <= places", name="taken_within_places"),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    title: str = Field(max_length=200)
    place: str = Field(max_length=200)
    starts_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    ends_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    rule_item_id: uuid.UUID = Field(foreign_key="rule_item.id")
    places: int
    taken: int = 0
    status: ActivityStatus = enum_field(ActivityStatus, "activity_status")
    organiser_id: uuid.UUID = Field(foreign_key="person.id")
    created_at: datetime = created_at_field()
    confirmed_at: datetime | None = timestamp_field()
    confirmed_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")


class ActivityCheckIn(SQLModel, table=True):
    __tablename__ = "activity_check_in"
    __table_args__ = (UniqueConstraint("activity_id", "person_id"),)

    id: uuid.UUID = uuid_pk()
    activity_id: uuid.UUID = Field(foreign_key="activity.id", index=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    person_id: uuid.UUID = Field(foreign_key="person.id")
    household_id: uuid.UUID = Field(foreign_key="household.id")
    created_at: datetime = created_at_field()
    attended: bool | None = None
