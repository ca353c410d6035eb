import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class RankSpan(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"  # number 0


class HouseholdRank(SQLModel, table=True):
    """A household's score and ranks over one span, stored when the span's results are
    published (or a published result is amended) so every rank read is a keyed lookup.

    The span the period itself is (a month, or a quarter scored as one) is written at approval
    too, for the staff's preview; quarters over months and the year sum published periods only.
    Positions order the whole list (ranked first by score, ties by 户号, vetoed last) and are
    the page key; ranks are shared by ties (1, 1, 3) and null for a vetoed household.
    """

    __tablename__ = "household_rank"
    __table_args__ = (
        # A village's list, page after page.
        sa.Index(
            "ix_household_rank_village_list",
            "village_id",
            "year",
            "span",
            "number",
            "village_position",
            unique=True,
        ),
        # The list as the policy ranks it (group after group where it ranks by group).
        sa.Index(
            "ix_household_rank_board",
            "village_id",
            "year",
            "span",
            "number",
            "board_position",
            unique=True,
        ),
        # A village group's list (翁源 ranks within the group), and its 光荣榜.
        sa.Index(
            "ix_household_rank_group_list",
            "village_id",
            "year",
            "span",
            "number",
            "village_group_id",
            "group_position",
        ),
    )

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    year: int = Field(primary_key=True)
    span: RankSpan = enum_field(RankSpan, "rank_span", primary_key=True)
    number: int = Field(primary_key=True)  # month 1-12, quarter 1-4, 0 for the year
    village_id: uuid.UUID = Field(foreign_key="village.id")
    village_group_id: uuid.UUID | None = Field(default=None, foreign_key="village_group.id")
    household_number: str = Field(max_length=32)
    score: int
    vetoed: bool
    village_rank: int | None = None
    group_rank: int | None = None
    village_position: int
    group_position: int
    board_position: int
    # Households ranked beside this one, so "17th of 41" is one row.
    village_ranked: int
    group_ranked: int


class RankingSummary(SQLModel, table=True):
    """One village over one span, as the town compares villages: never their households."""

    __tablename__ = "ranking_summary"
    __table_args__ = (sa.Index("ix_ranking_summary_town", "town_id", "year", "span", "number"),)

    village_id: uuid.UUID = Field(foreign_key="village.id", primary_key=True)
    year: int = Field(primary_key=True)
    span: RankSpan = enum_field(RankSpan, "rank_span", primary_key=True)
    number: int = Field(primary_key=True)
    town_id: uuid.UUID = Field(foreign_key="town.id")
    # False while the span is one approved period not yet published: staff only.
    published: bool
    # From the policy in force: ranks within the village group (翁源), and whether vetoed
    # households are listed, marked, to villagers (otherwise only staff see them).
    ranks_by_group: bool
    lists_vetoed: bool
    households: int  # registered and not left
    participating: int
    ranked: int
    vetoed: int
    average: Decimal | None = Field(default=None, max_digits=10, decimal_places=2)
    median: Decimal | None = Field(default=None, max_digits=10, decimal_places=2)
    top_score: int | None = None
    refreshed_at: datetime = created_at_field()


class AwardStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    PUBLISHED = "published"


class AwardList(SQLModel, table=True):
    """A village's year-end award list (年终评比): a draft the admin recomputes at will, then
    approved (audited) and published to the village."""

    __tablename__ = "award_list"
    __table_args__ = (sa.UniqueConstraint("village_id", "year"),)

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    town_id: uuid.UUID = Field(foreign_key="town.id")
    year: int
    status: AwardStatus = enum_field(AwardStatus, "award_status")
    computed_at: datetime = created_at_field()
    computed_by: uuid.UUID = Field(foreign_key="person.id")
    approved_at: datetime | None = timestamp_field()
    approved_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    published_at: datetime | None = timestamp_field()
    published_by: uuid.UUID | None = Field(default=None, foreign_key="person.id")


class AwardScopeCount(SQLModel, table=True):
    """How many places one award scope (a village group, or the village) has, and why."""

    __tablename__ = "award_scope_count"

    id: uuid.UUID = uuid_pk()
    award_list_id: uuid.UUID = Field(foreign_key="award_list.id", index=True, ondelete="CASCADE")
    village_group_id: uuid.UUID | None = Field(default=None, foreign_key="village_group.id")
    eligible: int
    places_exact: Decimal = Field(max_digits=10, decimal_places=2)
    places: int
    # Per level, in the policy's order: places by the share, and households given the level.
    level_places: list[int] = Field(sa_column=sa.Column(sa.ARRAY(sa.Integer()), nullable=False))
    level_awarded: list[int] = Field(sa_column=sa.Column(sa.ARRAY(sa.Integer()), nullable=False))


class AwardEntry(SQLModel, table=True):
    __tablename__ = "award_entry"
    __table_args__ = (sa.UniqueConstraint("award_list_id", "household_id"),)

    id: uuid.UUID = uuid_pk()
    award_list_id: uuid.UUID = Field(foreign_key="award_list.id", ondelete="CASCADE")
    village_id: uuid.UUID = Field(foreign_key="village.id")
    household_id: uuid.UUID = Field(foreign_key="household.id", index=True)
    village_group_id: uuid.UUID | None = Field(default=None, foreign_key="village_group.id")
    level: int  # 0 = the first level the policy names
    level_name: str = Field(max_length=40)
    score: int
    rank: int  # among the scope's eligible households, ties shared
