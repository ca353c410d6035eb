import uuid
from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, timestamp_field


class PeriodStatus(StrEnum):
    OPEN = "open"
    SCORING = "scoring"
    SUBMITTED = "submitted"
    APPROVED = "approved"  # 两委审定: scores computed and posted to the ledger
    PUBLISHED = "published"  # 公示: objections may be filed until the window closes
    CLOSED = "closed"


class PeriodKind(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


class Outcome(StrEnum):
    COMPLIANT = "compliant"
    FINDING = "finding"


class ScoringPeriod(SQLModel, table=True):
    __tablename__ = "scoring_period"
    __table_args__ = (
        UniqueConstraint("village_id", "starts_on"),
        sa.CheckConstraint("ends_on >= starts_on", name="ends_after_start"),
        # The target of foreign keys that carry the village too (the ledger's).
        UniqueConstraint("id", "village_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    # The rules version in force on the period's first day; the period is scored by it.
    rule_set_id: uuid.UUID = Field(foreign_key="rule_set.id")
    year: int
    kind: PeriodKind = enum_field(PeriodKind, "period_kind")
    number: int  # month 1-12 or quarter 1-4
    starts_on: date
    ends_on: date
    status: PeriodStatus = enum_field(PeriodStatus, "period_status")
    scoring_due_on: date | None = None
    publication_due_on: date | None = None
    objection_closes_on: date | None = None
    opened_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = created_at_field()
    submitted_at: datetime | None = timestamp_field()
    approved_at: datetime | None = timestamp_field()
    approved_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    published_at: datetime | None = timestamp_field()
    closed_at: datetime | None = timestamp_field()


class Scorecard(SQLModel, table=True):
    """One household's card for one period. Ids may be made by an offline phone."""

    __tablename__ = "scorecard"
    __table_args__ = (UniqueConstraint("period_id", "household_id"),)

    id: uuid.UUID = Field(primary_key=True)
    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", index=True)
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    scorer_id: uuid.UUID = Field(foreign_key="person.id")
    note: str = Field(default="", max_length=500)
    revision: int = 1
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()


class ScorecardLine(SQLModel, table=True):
    __tablename__ = "scorecard_line"
    __table_args__ = (
        UniqueConstraint("scorecard_id", "rule_item_id"),
        sa.CheckConstraint("cardinality(photos) <= 9", name="at_most_nine_photos"),
    )

    id: uuid.UUID = Field(primary_key=True)
    scorecard_id: uuid.UUID = Field(foreign_key="scorecard.id", index=True, ondelete="CASCADE")
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    rule_item_id: uuid.UUID = Field(foreign_key="rule_item.id")
    outcome: Outcome = enum_field(Outcome, "line_outcome")
    # What the line is worth before caps: earned (additive), deducted (negative, deductive).
    points: int
    note: str = Field(default="", max_length=500)
    photos: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(ARRAY(sa.String(200)), nullable=False, server_default="{}"),
    )


class HouseholdPeriodScore(SQLModel, table=True):
    """A period's score; always the sum of the period's score-counting entries."""

    __tablename__ = "household_period_score"
    __table_args__ = (
        # The publication list and every rank read one period's scores, best first: without
        # it they scan every period of every village (the primary key starts with household).
        sa.Index("ix_household_period_score_period_id_score", "period_id", "score"),
    )

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    score: int
    vetoed: bool = False
