"""Idempotency-Key: a retried request writes once and gets the first answer again.

The key's row is inserted in the request's own transaction before the work is done. A retry
arriving while the first attempt is still running waits on that row's unique index; once the
first commits it finds the stored answer, and if the first failed (rolled back) the retry does
the work itself. Nothing is kept in process memory, so this holds across API processes.
"""

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db import SessionDep
from app.errors import Conflict
from app.models import IdempotencyRecord
from app.security import CurrentPrincipal, Principal

REPLAYED_HEADER = "Idempotent-Replayed"


class Replay(Exception):  # noqa: N818 (an answer, not a failure)
    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.body = body


@dataclass
class Idempotency:
    session: AsyncSession
    principal: Principal
    key: str | None

    async def remember(self, status_code: int, body: BaseModel) -> None:
        """Store the answer with the work, in the same transaction."""
        if self.key is None:
            return
        await self.session.execute(
            update(IdempotencyRecord)
            .where(
                col(IdempotencyRecord.person_id) == self.principal.person_id,
                col(IdempotencyRecord.key) == self.key,
            )
            .values(status_code=status_code, response_body=body.model_dump(mode="json"))
        )


async def idempotency(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=8,
            max_length=200,
            description="A client-made unique key (a UUID): retries with it write once",
        ),
    ] = None,
) -> Idempotency:
    if key is None:
        return Idempotency(session, principal, None)
    body = await request.body()
    digest = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + body
    ).hexdigest()
    inserted = await session.execute(
        insert(IdempotencyRecord)
        .values(
            person_id=principal.person_id,
            key=key,
            method=request.method,
            path=request.url.path,
            request_hash=digest,
        )
        .on_conflict_do_nothing()
        .returning(col(IdempotencyRecord.key))
    )
    if inserted.first() is not None:
        return Idempotency(session, principal, key)
    stored = (
        await session.execute(
            select(IdempotencyRecord).where(
                col(IdempotencyRecord.person_id) == principal.person_id,
                col(IdempotencyRecord.key) == key,
            )
        )
    ).scalar_one()
    if stored.request_hash != digest:
        raise Conflict(
            "This Idempotency-Key was used for a different request.",
            code="idempotency.key_reused",
            title="请求标识已用于其他请求",
        )
    if stored.status_code is None:
        # Committed without an answer: the route forgot to remember one. Refuse to guess.
        raise Conflict(
            "The first request with this key left no answer.", code="idempotency.no_answer"
        )
    raise Replay(stored.status_code, stored.response_body)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]


def install_replay_handler(app: FastAPI) -> None:
    @app.exception_handler(Replay)
    async def replay(request: Request, exc: Replay) -> JSONResponse:
        return JSONResponse(
            exc.body, status_code=exc.status_code, headers={REPLAYED_HEADER: "true"}
        )
