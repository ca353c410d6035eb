"""Hot reads sent straight to asyncpg, written once as SQLAlchemy Core.

A villager's opening reads (the shop's items, the rules in force) each fit in one statement;
what SQLAlchemy adds around a statement (cache keys, execution context, rows, ORM objects) then
costs more than PostgreSQL's work. The statement is still built from the shared Core clauses,
so a definition such as "vetoed for the year" keeps one home, and compiled once for asyncpg,
which prepares it once per pooled connection (as app/security.py's principal statement).
"""

from collections.abc import Mapping
from enum import Enum
from typing import Any

from fastapi import Response
from pydantic import TypeAdapter
from sqlalchemy import BindParameter, bindparam
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from app.db import DriverSource, driver_of

_DIALECT = asyncpg.dialect()  # type: ignore[no-untyped-call]
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
        a hot read's connection (app.db.read_connection)."""
        driver = await driver_of(source)
        return await driver.fetchrow(self.sql, *self._args(values))


def _driver_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def json_response(content: Any) -> Response:
    """A read built from the rows of a DriverStatement, as JSON. The route declares its
    response_model for the OpenAPI; FastAPI passes a Response through without validating it
    against that model again, which the rows, as stored, need not be."""
    return Response(_JSON.dump_json(content), media_type="application/json")
