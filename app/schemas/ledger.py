import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.models import LedgerKind

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]


class LedgerEntryRead(BaseModel):
    """One line of a household's 积分加减明细."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    household_id: uuid.UUID
    seq: int
    kind: LedgerKind
    points: int
    counts_score: bool
    counts_balance: bool
    year: int
    period_id: uuid.UUID | None
    rule_item_id: uuid.UUID | None
    item_code: str | None
    item_title: str | None
    item_points: int | None
    source_type: str
    source_id: uuid.UUID | None
    reverses_id: uuid.UUID | None
    memo: str
    created_at: datetime


class BalanceRead(BaseModel):
    household_id: uuid.UUID
    year: int
    balance: int
    year_score: int


class AdjustmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: int = Field(ge=-1000, le=1000)
    reason: Reason
    counts_score: bool = True
    counts_balance: bool = True

    @field_validator("points")
    @classmethod
    def moves_points(cls, points: int) -> int:
        # The ledger refuses zero-point entries; say so here rather than as a conflict.
        if points == 0:
            raise ValueError("an adjustment of zero points changes nothing")
        return points


class CorrectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class ChainVerification(BaseModel):
    village_id: uuid.UUID
    ok: bool
    entries_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


class PeriodStanding(BaseModel):
    period_id: uuid.UUID
    number: int
    score: int
    vetoed: bool
    rank_in_village: int | None
    rank_in_group: int | None


class StandingRead(BaseModel):
    """What a villager's phone shows: the year's score and rank, and the latest published period."""

    household_id: uuid.UUID
    year: int
    year_score: int
    rank_in_village: int | None
    rank_in_group: int | None
    ranked_households: int
    latest_period: PeriodStanding | None
