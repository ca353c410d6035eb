import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel, UniqueConstraint

from app.models.base import enum_field, utcnow, uuid_pk


class LedgerKind(StrEnum):
    INSPECTION = "inspection"
    BONUS = "bonus"
    VETO = "veto"
    AWARD = "award"
    ADJUSTMENT = "adjustment"
    CORRECTION = "correction"
    REDEMPTION = "redemption"
    REFUND = "refund"
    EXPIRY = "expiry"


GENESIS_HASH = "0" * 64


class LedgerEntry(SQLModel, table=True):
    """积分台账: append-only (the database refuses UPDATE and DELETE), hash-chained per village."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        UniqueConstraint("village_id", "seq"),
        # A correction reverses one entry, and an entry is reversed at most once.
        sa.Index(
            "uq_ledger_entry_reverses_id",
            "reverses_id",
            unique=True,
            postgresql_where=sa.text("reverses_id IS NOT NULL"),
        ),
        sa.CheckConstraint(
            "(kind = 'correction') = (reverses_id IS NOT NULL)", name="correction_reverses"
        ),
        sa.CheckConstraint("points <> 0 OR kind = 'veto'", name="points_nonzero"),
        sa.CheckConstraint("seq >= 1", name="seq_positive"),
        sa.Index("ix_ledger_entry_household_seq", "household_id", "seq"),
        # A shop order spends points once and gives them back at most once (released, or
        # refunded after the goods came back): the ledger itself refuses a second entry. A
        # spend draws on the oldest year first, one entry per year drawn from, and gives back
        # to those years: once per order and year.
        *(
            sa.Index(
                f"uq_ledger_entry_shop_order_{kind}",
                "source_id",
                "year",
                unique=True,
                postgresql_where=sa.text(f"source_type = 'shop_order' AND kind = '{kind}'"),
            )
            for kind in ("redemption", "refund")
        ),
        # Keys that carry the village: an entry's household and period must be its village's
        # (a tenant key in every foreign key, as a sharded database wants), and one check per
        # row covers what a village key and a household key would check apart; an approval
        # posts twenty thousand rows.
        sa.ForeignKeyConstraint(
            ["household_id", "village_id"], ["household.id", "household.village_id"]
        ),
        sa.ForeignKeyConstraint(
            ["period_id", "village_id"], ["scoring_period.id", "scoring_period.village_id"]
        ),
    )

    id: uuid.UUID = uuid_pk()
    # Indexed through (village_id, seq).
    village_id: uuid.UUID
    household_id: uuid.UUID
    seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    kind: LedgerKind = enum_field(LedgerKind, "ledger_kind")
    points: int
    counts_score: bool
    counts_balance: bool
    # The scoring year the entry belongs to (its period's year, or the year it was made).
    year: int
    period_id: uuid.UUID | None = Field(default=None, index=True)
    # The exact item version used, with a copy of it as it was then: renaming never rewrites.
    rule_item_id: uuid.UUID | None = Field(default=None, foreign_key="rule_item.id")
    item_code: str | None = Field(default=None, max_length=20)
    item_title: str | None = Field(default=None, max_length=200)
    item_points: int | None = None
    source_type: str = Field(max_length=30)
    source_id: uuid.UUID | None = None
    reverses_id: uuid.UUID | None = Field(default=None, foreign_key="ledger_entry.id")
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="person.id")
    memo: str = Field(default="", max_length=500)
    created_at: datetime = Field(
        default_factory=utcnow,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False),
    )
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class LedgerChain(SQLModel, table=True):
    """The head of a village's chain; locking it serialises that village's appends."""

    __tablename__ = "ledger_chain"

    village_id: uuid.UUID = Field(foreign_key="village.id", primary_key=True)
    last_seq: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    last_hash: str = Field(default=GENESIS_HASH, max_length=64)


class HouseholdBalance(SQLModel, table=True):
    """Spendable points; always the sum of the household's balance-counting entries."""

    __tablename__ = "household_balance"
    __table_args__ = (sa.CheckConstraint("balance >= 0", name="balance_not_negative"),)

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    balance: int = 0


class HouseholdYearScore(SQLModel, table=True):
    """A year's score (for ranking); always the sum of that year's score-counting entries."""

    __tablename__ = "household_year_score"

    household_id: uuid.UUID = Field(foreign_key="household.id", primary_key=True)
    year: int = Field(primary_key=True)
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    score: int = 0


class YearEndClose(SQLModel, table=True):
    """A village's year-end close ran for a year; running it again changes nothing."""

    __tablename__ = "year_end_close"

    village_id: uuid.UUID = Field(foreign_key="village.id", primary_key=True)
    year: int = Field(primary_key=True)
    carried_over: bool
    households_expired: int
    points_expired: int
    closed_at: datetime = Field(
        default_factory=utcnow,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False),
    )
