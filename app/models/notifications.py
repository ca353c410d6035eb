import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, enum_field, timestamp_field, uuid_pk


class NotificationKind(StrEnum):
    CLAIM_DECIDED = "claim_decided"
    PERIOD_PUBLISHED = "period_published"
    OBJECTION_RULED = "objection_ruled"
    ORDER_EXPIRING = "order_expiring"
    AWARD_PUBLISHED = "award_published"


class NotificationStatus(StrEnum):
    QUEUED = "queued"  # waiting for next_attempt_at
    SENDING = "sending"  # leased by a worker until lease_expires_at
    SENT = "sent"
    REFUSED = "refused"  # 43101: the villager has not subscribed (or unsubscribed)
    FAILED = "failed"  # a permanent error, or out of attempts


class Notification(SQLModel, table=True):
    """The outbox of WeChat subscribe messages, written in the transaction of the event."""

    __tablename__ = "notification"
    __table_args__ = (
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.CheckConstraint(
            "(status = 'sending') = (lease_expires_at IS NOT NULL AND lease_token IS NOT NULL)",
            name="lease_only_while_sending",
        ),
        # What the workers poll: queued rows that are due, and leases that ran out.
        sa.Index(
            "ix_notification_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'queued'"),
        ),
        sa.Index(
            "ix_notification_lease",
            "lease_expires_at",
            postgresql_where=sa.text("status = 'sending'"),
        ),
        sa.Index("ix_notification_village_created", "village_id", "created_at"),
    )

    id: uuid.UUID = uuid_pk()
    village_id: uuid.UUID = Field(foreign_key="village.id")
    person_id: uuid.UUID = Field(foreign_key="person.id", index=True)
    # Copied when queued: a later rebinding of the WeChat account must not redirect the message.
    openid: str = Field(max_length=64)
    kind: NotificationKind = enum_field(NotificationKind, "notification_kind")
    # The template is chosen by kind from the settings when the message is sent, and recorded.
    template_id: str | None = Field(default=None, max_length=128)
    page: str | None = Field(default=None, max_length=200)
    data: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    status: NotificationStatus = enum_field(NotificationStatus, "notification_status")
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime = Field(
        sa_column=sa.Column(
            sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        )
    )
    lease_expires_at: datetime | None = timestamp_field()
    # Names the claim that holds the lease, so a worker whose lease ran out cannot record over
    # the worker that took the row after it.
    lease_token: uuid.UUID | None = None
    last_errcode: int | None = None
    last_errmsg: str | None = Field(default=None, max_length=200)
    created_at: datetime = created_at_field()
    sent_at: datetime | None = timestamp_field()


class WechatAccessToken(SQLModel, table=True):
    """The access token shared by every process, so each refresh serves all of them."""

    __tablename__ = "wechat_access_token"

    appid: str = Field(primary_key=True, max_length=64)
    # WeChat asks for at least 512 characters of storage.
    token: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    expires_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))
    refreshed_at: datetime = created_at_field()
