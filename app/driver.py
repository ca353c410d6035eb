"""Hot reads sent straight to asyncpg, written once as SQLAlchemy Core.

A villager's opening reads (the shop's items, the rules in force) each fit in one statement;
what SQLAlchemy adds around a statement (cache keys, execution context, rows, ORM objects) then
costs more than PostgreSQL's work. The statement is still built from the shared Core clauses,
so a definition such as "vetoed for the year" keeps one home, and compiled once for asyncpg,
which prepares it once per pooled connection (as app/security.py's principal statement).
"""

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

import asyncpg
from fastapi import Response
from pydantic import TypeAdapter
from sqlalchemy import BindParameter, bindparam
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from app.db import DriverSource, transaction_driver

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]
_JSON: TypeAdapter[Any] = TypeAdapter(Any)


def param(name: str, type_: TypeEngine[Any]) -> BindParameter[Any]:
    """A value given at each execution (DriverStatement.fetchrow's keywords). Typed, so the
    compiled text casts it and PostgreSQL needs no guess."""
    return bindparam(name, type_=type_, value=None)


class DriverStatement:
    """A Core statement compiled once to asyncpg's `$n` text; the values the statement holds
    itself (enum members, IN lists of constants) are fixed at compile time."""

    def __init__(self, statement: ClauseElement, *runtime: str) -> None:
        compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._runtime = frozenset(runtime)
        names = compiled.positiontup or []
        missing = self._runtime - set(names)
        if missing:
            raise ValueError(f"not parameters of the statement: {sorted(missing)}")
        self._slots: list[tuple[str, Any]] = [
            (name, None if name in self._runtime else _driver_value(compiled.params[name]))
            for name in names
        ]

    def _args(self, values: Mapping[str, Any]) -> list[Any]:
        if values.keys() != self._runtime:
            raise TypeError(f"expected values for {sorted(self._runtime)}")
        return [values[name] if name in self._runtime else fixed for name, fixed in self._slots]

    async def fetchrow(self, source: DriverSource, **values: Any) -> Any:
        """The first row (an asyncpg Record) or None: on a session (in its transaction) or on
        a hot read's reads (app.db.hot_reads)."""
        return await self._run("fetchrow", source, self._args(values))

    async def fetch(self, source: DriverSource, **values: Any) -> list[Any]:
        """Every row (asyncpg Records)."""
        rows: list[Any] = await self._run("fetch", source, self._args(values))
        return rows

    async def execute(self, source: DriverSource, **values: Any) -> None:
        await self._run("execute", source, self._args(values))

    async def executemany(self, source: DriverSource, rows: Iterable[Mapping[str, Any]]) -> None:
        """Once per row of values, in one round trip."""
        await self._run("executemany", source, [self._args(row) for row in rows])

    async def _run(self, method: str, source: DriverSource, args: list[Any]) -> Any:
        if not isinstance(source, AsyncSession):
            return await getattr(source, method)(self.sql, *args)
        driver = await transaction_driver(source)
        try:
            if method == "executemany":
                return await driver.executemany(self.sql, args)
            return await getattr(driver, method)(self.sql, *args)
        except asyncpg.PostgresError as exc:
            # As SQLAlchemy would have raised it, for the problem handlers (app/errors.py): a
            # constraint is a 409, a value PostgreSQL cannot hold a 422, never a bare 500.
            error = (
                IntegrityError
                if isinstance(exc, asyncpg.IntegrityConstraintViolationError)
                else DBAPIError
            )
            raise error(self.sql, args, exc) from exc


def _driver_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def json_bytes(content: Any) -> bytes:
    """Rows of a DriverStatement as the JSON json_response sends."""
    return _JSON.dump_json(content)


def json_response(content: Any) -> Response:
    """A read built from the rows of a DriverStatement, as JSON (or its JSON already). The
    route declares its response_model for the OpenAPI; FastAPI passes a Response through
    without validating it against that model again, which the rows, as stored, need not be."""
    body = content if isinstance(content, bytes) else json_bytes(content)
    return Response(body, media_type="application/json")
