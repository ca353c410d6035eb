import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field


class IdempotencyRecord(SQLModel, table=True):
    """The answer to a request made with an Idempotency-Key, written in the request's own
    transaction: a retry gets the same answer and writes nothing more."""

    __tablename__ = "idempotency_record"

    person_id: uuid.UUID = Field(foreign_key="person.id", primary_key=True)
    key: str = Field(max_length=200, primary_key=True)
    method: str = Field(max_length=10)
    path: str = Field(max_length=500)
    request_hash: str = Field(max_length=64)
    status_code: int | None = None
    response_body: Any = Field(default=None, sa_column=sa.Column(JSONB))
    created_at: datetime = created_at_field()
