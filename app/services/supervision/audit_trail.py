"""The audit trail as the town and the district read it: who did what, when, before and after."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.authz import town_scope
from app.models import AuditEntry, Person
from app.pagination import PageParams, paginate, parse_uuid
from app.schemas.supervision import AuditEntryRead
from app.security import Principal


async def list_entries(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    town_id: uuid.UUID | None,
    village_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    kind: str | None,
) -> tuple[list[AuditEntryRead], str | None]:
    """Oldest first. `kind` is an action (`period.approve`) or its domain (`period`).

    Entries without a town (district-level changes such as new towns) are the district's only.
    """
    # The actor's name rides along; paginate reads the cursor from the entry, the first column.
    statement = cast(
        Select[Any],
        select(AuditEntry, col(Person.name)).outerjoin(
            Person, col(Person.id) == col(AuditEntry.actor_id)
        ),
    )
    statement = statement.where(town_scope(principal, col(AuditEntry.town_id)))
    if town_id is not None:
        statement = statement.where(col(AuditEntry.town_id) == town_id)
    if village_id is not None:
        statement = statement.where(col(AuditEntry.village_id) == village_id)
    if actor_id is not None:
        statement = statement.where(col(AuditEntry.actor_id) == actor_id)
    if kind:
        statement = statement.where(
            (col(AuditEntry.action) == kind)
            | col(AuditEntry.action).startswith(f"{kind}.", autoescape=True)
        )
    rows, cursor = await paginate(
        session,
        statement,
        order=[col(AuditEntry.at), col(AuditEntry.id)],
        params=params,
        parse=[datetime.fromisoformat, parse_uuid],
    )
    out = []
    for entry, name in rows:
        read = AuditEntryRead.model_validate(entry)
        read.actor_name = name
        out.append(read)
    return out, cursor
