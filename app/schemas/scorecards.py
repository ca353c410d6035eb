import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.models import ItemKind, Outcome

Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
CardStatus = Literal["none", "partial", "complete"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests


class ScorecardLineWrite(Strict):
    id: uuid.UUID = Field(description="Made by the phone; the line keeps it")
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int | None = Field(
        default=None,
        ge=-1000,
        le=1000,
        description="Partial points (earned in additive mode, deducted in deductive mode); "
        "the item's full points when left out",
    )
    note: Note = ""
    photos: list[uuid.UUID] = Field(
        default=[],
        max_length=9,
        description="Ids of photos uploaded (POST /photos) by the scorer, or already on this card",
    )


def _unique_line_ids(lines: list[ScorecardLineWrite]) -> None:
    ids = [line.id for line in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("line ids must not repeat")


class ScorecardWrite(Strict):
    """The whole card: saving it replaces every line the card had."""

    id: uuid.UUID = Field(description="Made by the phone; used when the card is created")
    note: Note = ""
    lines: list[ScorecardLineWrite] = Field(default=[], max_length=300)

    @model_validator(mode="after")
    def line_ids_unique(self) -> "ScorecardWrite":
        _unique_line_ids(self.lines)
        return self


class BatchCard(ScorecardWrite):
    household_id: uuid.UUID


class ScorecardBatch(Strict):
    """An offline phone's upload: every card is saved, or none is."""

    cards: list[BatchCard] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def households_unique(self) -> "ScorecardBatch":
        households = [card.household_id for card in self.cards]
        if len(set(households)) != len(households):
            raise ValueError("each household at most once per batch")
        _unique_line_ids([line for card in self.cards for line in card.lines])
        return self


# Responses


class ScorecardLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    rule_item_id: uuid.UUID
    outcome: Outcome
    points: int
    note: str
    photos: list[str]


class ScorecardRead(BaseModel):
    id: uuid.UUID
    period_id: uuid.UUID
    household_id: uuid.UUID
    scorer_id: uuid.UUID
    note: str
    revision: int
    created_at: datetime
    updated_at: datetime | None
    points: int = Field(
        description="The sum of the lines, before category caps, the period cap, a deductive "
        "base and vetoes, which approval applies"
    )
    vetoed: bool = Field(description="A finding on a veto item")
    lines: list[ScorecardLineRead]


class ScorecardBatchRead(BaseModel):
    cards: list[ScorecardRead]


class DueItem(BaseModel):
    id: uuid.UUID
    code: str
    title: str
    points: int
    kind: ItemKind
    category_name: str


class WorklistHousehold(BaseModel):
    household_id: uuid.UUID
    number: str
    village_group_id: uuid.UUID | None
    head_name: str | None
    card_status: CardStatus
    card_id: uuid.UUID | None
    card_updated_at: datetime | None


class Worklist(BaseModel):
    """What a scorer's phone needs to score the period offline."""

    period_id: uuid.UUID
    rule_set_id: uuid.UUID
    scoring_mode: Literal["additive", "deductive"]
    items: list[DueItem]
    households: list[WorklistHousehold]
