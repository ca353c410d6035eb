import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, uuid_pk


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    id: uuid.UUID = uuid_pk()
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="person.id", index=True)
    action: str = Field(max_length=64)
    object_type: str = Field(max_length=40)
    object_id: uuid.UUID
    town_id: uuid.UUID | None = Field(default=None, index=True)
    village_id: uuid.UUID | None = Field(default=None, index=True)
    before: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    after: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    at: datetime = created_at_field()
