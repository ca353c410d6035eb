import uuid
from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class ClaimStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class ReviewDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Claim(SQLModel, table=True):
    """自主申报: a household reports a claimable bonus item; the scoring group decides."""

    __tablename__ = "claim"
    __table_args__ = (
        # A withdrawn or rejected claim may be made again; a live one may not.
        sa.Index(
            "uq_claim_household_item_day",
            "household_id",
            "item_lineage_id",
            "activity_on",
            unique=True,
            postgresql_where=sa.text("status IN ('pending', 'approved')"),
        ),
        sa.Index("ix_claim_village_status_created", "village_id", "status", "created_at"),
        sa.CheckConstraint(
            "(status = 'pending') = (decided_at IS NULL)", name="decided_when_not_pending"
        ),
        sa.CheckConstraint("points_awarded IS NULL OR points_awarded >= 0", name="awarded_sign"),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id")
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    village_group_id: uuid.UUID | None = Field(default=None, foreign_key="village_group.id")
    rule_item_id: uuid.UUID = Field(foreign_key="rule_item.id")
    item_lineage_id: uuid.UUID
    activity_on: date
    description: str = Field(max_length=1000)
    status: ClaimStatus = enum_field(ClaimStatus, "claim_status")
    submitted_by: uuid.UUID = Field(foreign_key="person.id")
    # 线下登记: a scorer recorded it for the household.
    on_behalf: bool = False
    created_at: datetime = created_at_field()
    decided_at: datetime | None = timestamp_field()
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    decision_reason: str | None = Field(default=None, max_length=500)
    points_awarded: int | None = None
    # No foreign key into ledger_entry: its append-only trigger is what refuses a TRUNCATE,
    # and a referencing table would answer first (and be dragged into TRUNCATE … CASCADE).
    ledger_entry_id: uuid.UUID | None = None


class ClaimReview(SQLModel, table=True):
    __tablename__ = "claim_review"
    __table_args__ = (
        UniqueConstraint("claim_id", "reviewer_id"),
        sa.CheckConstraint("decision = 'approve' OR length(comment) > 0", name="reject_has_reason"),
    )

    id: uuid.UUID = uuid_pk()
    claim_id: uuid.UUID = Field(foreign_key="claim.id", index=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    reviewer_id: uuid.UUID = Field(foreign_key="person.id")
    decision: ReviewDecision = enum_field(ReviewDecision, "review_decision")
    comment: str = Field(default="", max_length=500)
    # The group leader settled the claim alone (policy claims.leader_decides_alone).
    as_leader: bool = False
    created_at: datetime = created_at_field()


class BonusAward(SQLModel, table=True):
    """A bonus granted for a claimable item (an approved claim, a confirmed attendance).

    The item's per-period cap is counted over these rows, by the period the activity fell in,
    whichever period the ledger entry was posted in; the unique source makes a second posting
    for the same claim or attendance impossible.
    """

    __tablename__ = "bonus_award"
    __table_args__ = (
        UniqueConstraint("source_type", "source_id", "household_id"),
        sa.Index("ix_bonus_award_cap", "household_id", "item_lineage_id", "cap_starts_on"),
        sa.CheckConstraint("points >= 0", name="points_not_negative"),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    household_id: uuid.UUID = Field(foreign_key="household.id")
    rule_item_id: uuid.UUID = Field(foreign_key="rule_item.id")
    item_lineage_id: uuid.UUID
    activity_on: date
    cap_starts_on: date
    points: int
    ledger_entry_id: uuid.UUID | None = None  # no foreign key, as Claim.ledger_entry_id
    source_type: str = Field(max_length=20)
    source_id: uuid.UUID
    created_at: datetime = created_at_field()
