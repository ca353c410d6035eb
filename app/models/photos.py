import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, timestamp_field, uuid_pk


class Photo(SQLModel, table=True):
    """An uploaded image, re-encoded on arrival; visible through what it is attached to."""

    __tablename__ = "photo"
    __table_args__ = (
        sa.CheckConstraint("width > 0 AND height > 0", name="dimensions_positive"),
        # Evidence of one thing: a claim, an objection or a card.
        sa.CheckConstraint(
            "num_nonnulls(claim_id, objection_id, scorecard_id) <= 1", name="attached_to_one_thing"
        ),
        # The cleanup job looks for uploads never attached.
        sa.Index(
            "ix_photo_unattached_created_at",
            "created_at",
            postgresql_where=sa.text(
                "claim_id IS NULL AND objection_id IS NULL AND scorecard_id IS NULL"
            ),
        ),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id", index=True)
    uploader_id: uuid.UUID = Field(foreign_key="person.id", index=True)
    media_type: str = Field(max_length=30)
    width: int
    height: int
    size_bytes: int
    claim_id: uuid.UUID | None = Field(default=None, foreign_key="claim.id", index=True)
    # Evidence of a scorecard's findings and vetoes: kept with the card (whose lines a resave
    # replaces), so nothing the household may object to is cleaned up as unattached.
    scorecard_id: uuid.UUID | None = Field(default=None, foreign_key="scorecard.id", index=True)
    objection_id: uuid.UUID | None = Field(default=None, foreign_key="objection.id", index=True)
    created_at: datetime = created_at_field()
    attached_at: datetime | None = timestamp_field()
