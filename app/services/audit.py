import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from app.models import AuditEntry
from app.security import Principal


def snapshot(
    obj: SQLModel | BaseModel | None, *, exclude: set[str] | None = None
) -> dict[str, Any] | None:
    if obj is None:
        return None
    return obj.model_dump(mode="json", exclude=(exclude or set()) | {"password_hash"})


def record(
    session: AsyncSession,
    principal: Principal | None,
    action: str,
    object_type: str,
    object_id: uuid.UUID,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    town_id: uuid.UUID | None = None,
    village_id: uuid.UUID | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor_id=principal.person_id if principal else None,
        action=action,
        object_type=object_type,
        object_id=object_id,
        town_id=town_id,
        village_id=village_id,
        before=before,
        after=after,
    )
    session.add(entry)
    return entry
