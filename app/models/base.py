import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from app import clock


def utcnow() -> datetime:
    return clock.now()


def uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def created_at_field() -> Any:
    return Field(
        default_factory=utcnow,
        sa_column=sa.Column(
            sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def timestamp_field(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, index=index),
    )


def enum_field(enum: type[StrEnum], name: str, **kwargs: Any) -> Any:
    """A VARCHAR with a CHECK constraint: new values need a migration, never a type rewrite."""
    nullable = kwargs.pop("nullable", False)
    return Field(
        sa_column=sa.Column(
            sa.Enum(
                enum,
                name=name,
                native_enum=False,
                create_constraint=True,
                length=32,
                values_callable=lambda e: [m.value for m in e],
            ),
            nullable=nullable,
            **kwargs,
        )
    )
