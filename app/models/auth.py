import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class LoginMethod(StrEnum):
    WECHAT = "wechat"
    PASSWORD = "password"


class WechatIdentity(SQLModel, table=True):
    """What code2Session told us about a mini-program user; session_key stays here."""

    __tablename__ = "wechat_identity"

    id: uuid.UUID = uuid_pk()
    openid: str = Field(max_length=64, unique=True)
    unionid: str | None = Field(default=None, max_length=64)
    session_key: str = Field(max_length=64)
    person_id: uuid.UUID | None = Field(default=None, foreign_key="person.id", unique=True)
    created_at: datetime = created_at_field()
    updated_at: datetime | None = timestamp_field()


class LoginSession(SQLModel, table=True):
    """One login: the family of rotating refresh tokens, revoked together."""

    __tablename__ = "login_session"

    id: uuid.UUID = uuid_pk()
    person_id: uuid.UUID = Field(foreign_key="person.id", index=True)
    method: LoginMethod = enum_field(LoginMethod, "login_method")
    created_at: datetime = created_at_field()
    revoked_at: datetime | None = timestamp_field()
    revoked_reason: str | None = Field(default=None, max_length=40)
    # Raised by the database whenever the login's person's grants, household or villages'
    # towns change (migration caller_version's triggers): a hot read's remembered caller is
    # good while its version still stands (app/security.py KnownCallers).
    caller_version: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_token"

    id: uuid.UUID = uuid_pk()
    session_id: uuid.UUID = Field(foreign_key="login_session.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_at_field()
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    used_at: datetime | None = timestamp_field()


class LoginAttempt(SQLModel, table=True):
    __tablename__ = "login_attempt"
    __table_args__ = (
        sa.Index("ix_login_attempt_username_at", "username", "at"),
        sa.Index("ix_login_attempt_address_at", "address", "at"),
    )

    id: uuid.UUID = uuid_pk()
    username: str = Field(max_length=64)
    address: str = Field(max_length=64)
    succeeded: bool
    at: datetime = created_at_field()
