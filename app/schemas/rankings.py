import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel

from app.models import AwardStatus, RankSpan
from app.schemas.rules import AwardScope


class RankScope(StrEnum):
    VILLAGE = "village"
    VILLAGE_GROUP = "village_group"


class PeriodScore(BaseModel):
    """One month of a quarter, as the quarterly notice shows it beside the quarter's total."""

    number: int
    score: int
    vetoed: bool


class RankRow(BaseModel):
    household_id: uuid.UUID
    number: str  # 户号
    head_name: str | None  # as the notice board shows it (张**) to villagers
    village_group_id: uuid.UUID | None
    score: int
    vetoed: bool
    # In the list's scope: the village group where it ranks by group, else the village.
    rank: int | None
    # Households ranked in that scope: "17th of 41".
    of: int
    rank_in_village: int | None
    rank_in_group: int | None
    months: list[PeriodScore] = []


class RankingPage(BaseModel):
    village_id: uuid.UUID
    span: RankSpan
    year: int
    number: int
    scope: RankScope
    group_id: uuid.UUID | None
    published: bool
    ranked: int  # households ranked in the village over the span
    items: list[RankRow]
    next_cursor: str | None = None
    # The caller's own household, wherever it falls in the list.
    own: RankRow | None = None


class VillageComparison(BaseModel):
    """A village as the town compares it: counts and spread, never its households."""

    village_id: uuid.UUID
    name: str
    households: int
    participating: int
    participation: Decimal | None  # participating / households, 2 places
    ranked: int
    vetoed: int
    average: Decimal | None
    median: Decimal | None
    top_score: int | None
    rank: int | None  # by average score, ties shared


class TownRanking(BaseModel):
    town_id: uuid.UUID
    span: RankSpan
    year: int
    number: int
    villages: list[VillageComparison]


class HonourBoard(BaseModel):
    village_group_id: uuid.UUID | None
    name: str
    rows: list[RankRow]


class HonourRoll(BaseModel):
    """光荣榜: the top households per village group (or of the village), ties at the last place
    all shown."""

    village_id: uuid.UUID
    span: RankSpan
    year: int
    number: int
    top: int
    boards: list[HonourBoard]


class AwardLevelCount(BaseModel):
    name: str
    places: int
    awarded: int


class AwardScopeRead(BaseModel):
    village_group_id: uuid.UUID | None
    eligible: int
    places_exact: Decimal
    places: int
    levels: list[AwardLevelCount]


class AwardRow(BaseModel):
    household_id: uuid.UUID
    number: str
    head_name: str | None
    village_group_id: uuid.UUID | None
    level: int
    level_name: str
    score: int
    rank: int


class AwardListRead(BaseModel):
    id: uuid.UUID
    village_id: uuid.UUID
    year: int
    status: AwardStatus
    scope: AwardScope
    household_share: Decimal
    rounding: str
    tie_rule: str
    computed_at: datetime
    approved_at: datetime | None
    published_at: datetime | None
    scopes: list[AwardScopeRead]
    rows: list[AwardRow]
