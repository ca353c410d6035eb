"""Cursor pagination: deterministic order with a unique tiebreaker, opaque cursors, capped limit."""

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BadRequest

T = TypeVar("T")
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    cursor: str | None = None
    limit: int = 50


# async: FastAPI runs a plain function dependency in its thread pool, a thread hand-off on
# every list request for two query parameters.
async def page_params(
    cursor: Annotated[str | None, Query(description="Opaque cursor from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> PageParams:
    return PageParams(cursor=cursor, limit=limit)


def _encode(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, date | datetime) else str(v) for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError as exc:
        raise BadRequest("The cursor is not valid.", code="pagination.bad_cursor") from exc
    if not isinstance(values, list) or len(values) != count:
        raise BadRequest("The cursor is not valid.", code="pagination.bad_cursor")
    return [str(v) for v in values]


def position_after(params: PageParams) -> tuple[int, BadRequest | None]:
    """For a list paged by a position (a row number, a sequence number): where the page starts
    after, from its cursor. A bad cursor comes back as the problem to raise, for the caller to
    raise only where there is a list to page through, after the checks before it."""
    if not params.cursor:
        return 0, None
    try:
        [raw] = _decode(params.cursor, 1)
    except BadRequest as exc:
        return 0, exc
    if not raw.isdigit():
        return 0, BadRequest("The cursor is not valid.", code="pagination.bad_cursor")
    return int(raw), None


def position_cursor(position: int) -> str:
    """The cursor of the page after `position` (position_after reads it)."""
    return _encode([position])


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    *,
    order: Sequence[Any],
    params: PageParams,
    parse: Sequence[Callable[[str], Any]],
) -> tuple[list[Any], str | None]:
    """Rows after the cursor in `order` (ascending; its last column must be unique).

    `parse` turns each cursor string back into the column's Python type.
    """
    if params.cursor:
        raw = _decode(params.cursor, len(order))
        try:
            values = [p(v) for p, v in zip(parse, raw, strict=True)]
        except ValueError as exc:
            raise BadRequest("The cursor is not valid.", code="pagination.bad_cursor") from exc
        statement = statement.where(tuple_(*order) > tuple_(*values))
    rows = list((await session.execute(statement.order_by(*order).limit(params.limit + 1))).all())
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        next_cursor = _encode([_column_value(last, col) for col in order])
    return rows, next_cursor


def _column_value(row: Any, column: Any) -> Any:
    # A row of columns names them; a row of one ORM entity holds it first.
    if column.key in row._mapping:
        return row._mapping[column.key]
    return getattr(row[0], column.key)


parse_uuid = uuid.UUID
