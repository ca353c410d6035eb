import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.models import LedgerKind, ObjectionStatus, Outcome, RulingDecision

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class ObjectionCreate(BaseModel):
    """异议 to one ledger entry of the caller's household in a published period, or (without
    `ledger_entry_id`) to the household's whole score of that period."""

    model_config = ConfigDict(extra="forbid")
    period_id: uuid.UUID
    ledger_entry_id: uuid.UUID | None = None
    reason: Reason
    photo_ids: list[uuid.UUID] = Field(default=[], max_length=9)


class AmendedLine(BaseModel):
    """A card line as the ruling re-scores it; the other lines of the card stay as they are."""

    model_config = ConfigDict(extra="forbid")
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int | None = Field(
        default=None,
        ge=-1000,
        le=1000,
        description="As on a scorecard: partial points, or the item's full points when left out",
    )
    note: Note = ""


class RulingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: RulingDecision
    # The household sees it either way.
    reason: Reason
    lines: list[AmendedLine] = Field(
        default=[],
        max_length=200,
        description="Uphold only: the card's lines re-scored. Required for an objection to the "
        "period score; without them an upheld objection to a card entry reverses that line.",
    )


class EscalationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class DisputedEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: LedgerKind
    points: int
    item_code: str | None
    item_title: str | None
    memo: str
    source_type: str
    created_at: datetime


class CardLineRead(BaseModel):
    rule_item_id: uuid.UUID
    item_code: str
    item_title: str
    outcome: Outcome
    points: int
    note: str
    photos: list[str]
    amended: bool = Field(description="Re-scored by an upheld objection")


class ObjectionRead(BaseModel):
    id: uuid.UUID
    village_id: uuid.UUID
    household_id: uuid.UUID
    household_number: str
    period_id: uuid.UUID
    period_year: int
    period_number: int
    ledger_entry_id: uuid.UUID | None
    entry: DisputedEntry | None
    reason: str
    status: ObjectionStatus
    filed_by: uuid.UUID
    created_at: datetime
    age_days: int = Field(description="Days since filing (Asia/Shanghai)")
    photo_ids: list[uuid.UUID]
    thumbnail_urls: list[str]
    period_score: int | None = Field(description="The household's period score now")
    vetoed: bool | None
    scored_by: uuid.UUID | None = Field(description="Who scored the card (staff only)")
    scorer_name: str | None = None
    card: list[CardLineRead] = Field(description="The household's card as it stands (staff only)")
    ruled_at: datetime | None
    ruled_by: uuid.UUID | None
    ruling_reason: str | None
    escalation_closes_on: date | None
    escalated_at: datetime | None
    escalation_reason: str | None
    town_ruled_at: datetime | None
    town_ruled_by: uuid.UUID | None
    town_ruling_reason: str | None
    final: bool = Field(description="No further step: upheld, ruled by the town, or too late")
    score_before: int | None
    score_after: int | None
    vetoed_before: bool | None
    vetoed_after: bool | None
