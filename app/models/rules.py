import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class RuleSetStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"  # waiting for the town's 备案
    RETURNED = "returned"  # sent back by the town with a reason; editable again
    APPROVED = "approved"


EDITABLE_STATUSES = (RuleSetStatus.DRAFT, RuleSetStatus.RETURNED)


class ItemKind(StrEnum):
    INSPECTION = "inspection"
    BONUS = "bonus"
    VETO = "veto"


class Cadence(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    HALF_YEARLY = "half_yearly"
    YEARLY = "yearly"


class RuleSet(SQLModel, table=True):
    """One version of a village's rules for a year. Approved versions are never edited."""

    __tablename__ = "rule_set"
    __table_args__ = (
        UniqueConstraint("village_id", "year", "version"),
        sa.CheckConstraint("year BETWEEN 2000 AND 2100", name="year_in_range"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        # At most one version of a village's year is being prepared at a time.
        sa.Index(
            "uq_rule_set_one_open_version",
            "village_id",
            "year",
            unique=True,
            postgresql_where=sa.text("status <> 'approved'"),
        ),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id", index=True)
    year: int
    version: int
    status: RuleSetStatus = enum_field(RuleSetStatus, "rule_set_status")
    title: str = Field(max_length=200)
    template_code: str | None = Field(default=None, max_length=40)
    based_on_id: uuid.UUID | None = Field(default=None, foreign_key="rule_set.id")
    effective_from: date
    policy: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()
    submitted_at: datetime | None = timestamp_field()
    submitted_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = timestamp_field()
    decided_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    return_reason: str | None = Field(default=None, max_length=500)


class RuleCategory(SQLModel, table=True):
    __tablename__ = "rule_category"
    __table_args__ = (
        sa.CheckConstraint("cap IS NULL OR cap > 0", name="cap_positive"),
        sa.Index(
            "uq_rule_category_name",
            "rule_set_id",
            sa.text("coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid)"),
            "name",
            unique=True,
        ),
    )

    id: uuid.UUID = uuid_pk()
    rule_set_id: uuid.UUID = Field(foreign_key="rule_set.id", index=True, ondelete="CASCADE")
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    parent_id: uuid.UUID | None = Field(
        default=None, foreign_key="rule_category.id", ondelete="CASCADE"
    )
    name: str = Field(max_length=100)
    cap: int | None = None
    position: int = 0


class RuleItem(SQLModel, table=True):
    """An item as one rule-set version states it; ledger entries point at this exact row."""

    __tablename__ = "rule_item"
    __table_args__ = (
        UniqueConstraint("rule_set_id", "code"),
        sa.CheckConstraint("kind = 'bonus' OR NOT claimable", name="only_bonus_claimable"),
        sa.CheckConstraint("kind <> 'veto' OR points = 0", name="veto_has_no_points"),
        sa.CheckConstraint("period_cap IS NULL OR period_cap > 0", name="period_cap_positive"),
    )

    id: uuid.UUID = uuid_pk()
    rule_set_id: uuid.UUID = Field(foreign_key="rule_set.id", index=True, ondelete="CASCADE")
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    category_id: uuid.UUID = Field(foreign_key="rule_category.id", index=True, ondelete="CASCADE")
    # The same item across versions and years, for reports that follow an item over time.
    lineage_id: uuid.UUID = Field(default_factory=uuid.uuid4, index=True)
    code: str = Field(max_length=20)  # 序号
    title: str = Field(max_length=200)
    description: str = Field(default="", max_length=1000)
    points: int
    kind: ItemKind = enum_field(ItemKind, "rule_item_kind")
    claimable: bool = False
    period_cap: int | None = None
    evidence_required: bool = False
    cadence: Cadence = enum_field(Cadence, "rule_item_cadence")
    position: int = 0
