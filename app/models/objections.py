import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk

LIVE_STATUSES = ("open", "escalated")


class ObjectionStatus(StrEnum):
    OPEN = "open"  # waiting for the village working group
    UPHELD = "upheld"  # corrected and republished (by the village, or finally by the town)
    DISMISSED = "dismissed"  # with a reason; escalation possible until escalation_closes_on
    ESCALATED = "escalated"  # waiting for the town supervisor, whose ruling is final


class RulingDecision(StrEnum):
    UPHOLD = "uphold"
    DISMISS = "dismiss"


class Objection(SQLModel, table=True):
    """异议: a household disputes one of its ledger entries, or its whole score, of a published
    period. Ruled once by the village working group, and once more by the town if escalated."""

    __tablename__ = "objection"
    __table_args__ = (
        # One live objection per entry, and one per period score (no entry named).
        sa.Index(
            "uq_objection_live_entry",
            "ledger_entry_id",
            unique=True,
            postgresql_where=sa.text(
                "ledger_entry_id IS NOT NULL AND status IN ('open', 'escalated')"
            ),
        ),
        sa.Index(
            "uq_objection_live_period_score",
            "household_id",
            "period_id",
            unique=True,
            postgresql_where=sa.text("ledger_entry_id IS NULL AND status IN ('open', 'escalated')"),
        ),
        sa.Index("ix_objection_village_status_created", "village_id", "status", "created_at"),
        sa.Index("ix_objection_town_status_escalated", "town_id", "status", "escalated_at"),
        sa.CheckConstraint("(status = 'open') = (ruled_at IS NULL)", name="ruled_unless_open"),
        sa.CheckConstraint(
            "escalated_at IS NULL OR ruled_at IS NOT NULL", name="escalated_after_ruling"
        ),
        sa.CheckConstraint(
            "town_ruled_at IS NULL OR escalated_at IS NOT NULL", name="town_rules_escalations"
        ),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id")
    town_id: uuid.UUID = Field(foreign_key="town.id")
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    period_id: uuid.UUID = Field(foreign_key="scoring_period.id", index=True)
    # No foreign key into ledger_entry, as Claim.ledger_entry_id: the append-only trigger is
    # what refuses a TRUNCATE, and a referencing table would answer first.
    ledger_entry_id: uuid.UUID | None = None
    reason: str = Field(max_length=1000)
    status: ObjectionStatus = enum_field(ObjectionStatus, "objection_status")
    filed_by: uuid.UUID = Field(foreign_key="person.id")
    created_at: datetime = created_at_field()
    # The village working group's ruling.
    ruled_at: datetime | None = timestamp_field()
    ruled_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    ruling_reason: str | None = Field(default=None, max_length=1000)
    escalation_closes_on: date | None = None
    escalated_at: datetime | None = timestamp_field()
    escalated_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    escalation_reason: str | None = Field(default=None, max_length=1000)
    # The town supervisor's ruling on an escalation: final.
    town_ruled_at: datetime | None = timestamp_field()
    town_ruled_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    town_ruling_reason: str | None = Field(default=None, max_length=1000)
    # What an uphold changed: the period score before and after, and the card lines it
    # re-scored (rule_item_id, outcome, points, note), which later re-scores start from.
    score_before: int | None = None
    score_after: int | None = None
    vetoed_before: bool | None = None
    vetoed_after: bool | None = None
    amended_lines: list[dict[str, Any]] | None = Field(
        default=None, sa_column=sa.Column(JSONB, nullable=True)
    )
    upheld_at: datetime | None = timestamp_field()
