import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.models import NotificationKind, NotificationStatus


class NotificationRead(BaseModel):
    """One subscribe message and what became of it (the openid and contents stay private)."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    person_id: uuid.UUID
    kind: NotificationKind
    status: NotificationStatus
    attempts: int
    last_errcode: int | None
    last_errmsg: str | None
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
