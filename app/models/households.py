import uuid
from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class Participation(StrEnum):
    PENDING = "pending"  # registered, consent not yet given
    ACTIVE = "active"  # joined by consent; scored and ranked
    SUSPENDED = "suspended"
    LEFT = "left"


class Household(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("village_id", "number"),
        # The target of foreign keys that carry the village too (the ledger's).
        UniqueConstraint("id", "village_id"),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    village_group_id: uuid.UUID | None = Field(
        default=None, foreign_key="village_group.id", index=True
    )
    number: str = Field(max_length=32)  # 户号, as printed on the village register
    address: str = Field(default="", max_length=200)
    local_hukou: bool = True
    homestead_house: bool = True
    has_resident: bool = True
    renter: bool = False
    participation: Participation = enum_field(Participation, "participation")
    joined_on: date | None = None
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()


class HouseholdMember(SQLModel, table=True):
    __tablename__ = "household_member"
    __table_args__ = (
        # One head per household; a person belongs to one household at most.
        sa.Index(
            "uq_household_member_one_head",
            "household_id",
            unique=True,
            postgresql_where=sa.text("is_head"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    person_id: uuid.UUID = Field(foreign_key="person.id", unique=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    is_head: bool = False
    relation: str = Field(default="", max_length=20)  # 与户主关系
    created_at: datetime = created_at_field()
