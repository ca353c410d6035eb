"""What the town keeps about each village's periods: who scored them, the figures its dashboard
reads, the filing (报街镇备案) and the random re-inspection (抽查)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field


class PeriodScorer(SQLModel, table=True):
    """A member of the period's scoring group as approval found it, and the cards they saved
    last (a card re-saved by someone else counts for the one who saved it last)."""

    __tablename__ = "period_scorer"

    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    person_id: uuid.UUID = Field(foreign_key="person.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    # The grant held at approval (scoring_leader or scorer); None: saved cards, grant gone.
    role: str | None = Field(default=None, max_length=32)
    cards_saved: int = 0


class ScoringGroupWaiver(SQLModel, table=True):
    """The town lets one period be approved by a group smaller than the policy's minimum."""

    __tablename__ = "scoring_group_waiver"

    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    reason: str = Field(max_length=500)
    granted_by: uuid.UUID = Field(foreign_key="person.id")
    granted_at: datetime = created_at_field()


class PeriodFigures(SQLModel, table=True):
    """A period's score spread, worked out once at approval so the dashboard reads a row.

    Scores are the cards' results (bonuses left out: the spread is about how scorers score);
    vetoed households are left out of the spread and counted apart.
    """

    __tablename__ = "period_figures"

    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    households_scored: int
    households_vetoed: int
    full_score: int | None = None
    mean: float | None = None
    std_dev: float | None = None
    share_full: float | None = None
    distinct_scores: int
    group_size: int
    group_min_size: int | None = None
    waived: bool = False
    # Per scorer: person_id, name, cards, mean, std_dev, share_full, distinct, flags.
    scorers: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    computed_at: datetime = created_at_field()


class FilingStatus(StrEnum):
    FILED = "filed"
    ACKNOWLEDGED = "acknowledged"
    QUERIED = "queried"


class PeriodFiling(SQLModel, table=True):
    """报街镇备案: a published period filed with the town, and the town's answer."""

    __tablename__ = "period_filing"

    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    status: FilingStatus = enum_field(FilingStatus, "filing_status")
    times_filed: int = 1
    note: str = Field(default="", max_length=500)
    filed_by: uuid.UUID = Field(foreign_key="person.id")
    filed_at: datetime = created_at_field()
    answer_note: str = Field(default="", max_length=500)
    answered_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    answered_at: datetime | None = timestamp_field()


class Inspection(SQLModel, table=True):
    """抽查: the town's seeded random sample of a period's scored households."""

    __tablename__ = "inspection"

    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    seed: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    size: int
    drawn_by: uuid.UUID = Field(foreign_key="person.id")
    drawn_at: datetime = created_at_field()


class InspectionHousehold(SQLModel, table=True):
    """One sampled household: the village's card result and, once inspected, the town's."""

    __tablename__ = "inspection_household"
    __table_args__ = (
        sa.CheckConstraint(
            "(inspector_score IS NULL) = (inspected_at IS NULL)", name="inspected_when_scored"
        ),
    )

    period_id: uuid.UUID = Field(foreign_key="inspection.period_id", primary_key=True)
    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    village_score: int
    inspector_score: int | None = None
    inspected_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    inspected_at: datetime | None = timestamp_field()
    # The inspector's card: rule_item_id, outcome, points, note per line.
    lines: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
