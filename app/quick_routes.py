"""A route's dependencies solved by a plan made once, for the routes simple enough to plan.

FastAPI solves a route's dependencies afresh on every request: for each parameter it asks again
what kind it is (a model? a sequence? JSON? which of its aliases was sent?), builds a Response
for dependencies to set headers on, keys a cache and recurses into each dependency the same
way. On the phone's opening reads, each one statement, that solving cost a fifth of the
request. `QuickRoute` works out once, when the route is built, which dependencies run in which
order and how each parameter is read and validated; a request then only reads and validates.

It plans only what it can solve exactly as FastAPI does: async functions (or objects with an
async `__call__`) taking the Request and scalar path and query parameters, each dependency used
once, and an endpoint that returns its own Response. The order is FastAPI's: each dependency
after its own parameters validate (one whose parameters fail is not called and its errors
join the rest), then the endpoint's own parameters, then one RequestValidationError for all
errors, answered by the app's handler like any other. Any other route, and every route while
the app has dependency overrides set, keeps FastAPI's own handler.
"""

import inspect
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.params import Path, Query
from fastapi.routing import APIRoute
from pydantic import ValidationError

_SCALARS = (int, str, bool, float, uuid.UUID, date, datetime)


def _scalar(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return all(a is type(None) or _scalar(a) for a in typing.get_args(annotation))
    return isinstance(annotation, type) and (issubclass(annotation, Enum) or annotation in _SCALARS)


def _missing(loc: tuple[str, str]) -> dict[str, Any]:
    # The error FastAPI reports for a required parameter not sent.
    error = ValidationError.from_exception_data(
        "Field required", [{"type": "missing", "loc": loc, "input": {}}]
    ).errors(include_url=False)[0]
    return {**error, "input": None}


@dataclass(frozen=True, slots=True)
class _Param:
    field: Any  # FastAPI's ModelField
    in_path: bool
    alias: str
    loc: tuple[str, str]
    required: bool
    validate_default: bool

    @classmethod
    def of(cls, field: Any) -> "_Param | None":
        info = field.field_info
        if not isinstance(info, Path | Query) or not _scalar(info.annotation):
            return None
        if info.validation_alias is not None and not isinstance(info.validation_alias, str):
            return None  # AliasChoices and AliasPath: FastAPI tries each; not planned
        alias = info.validation_alias or field.alias
        in_path = isinstance(info, Path)
        return cls(
            field, in_path, alias, ("path" if in_path else "query", alias),
            info.is_required(), bool(info.validate_default),
        )  # fmt: skip

    def solve(self, request: Request, values: dict[str, Any], errors: list[Any]) -> None:
        received = request.path_params if self.in_path else request.query_params
        raw = received.get(self.alias)
        if raw is None:
            if self.required:
                errors.append(_missing(self.loc))
                return
            if not self.validate_default:
                # Scalars only (_scalar): the default needs no copy.
                values[self.field.name] = self.field.default
                return
            raw = self.field.default
        value, found = self.field.validate(raw, values, loc=self.loc)
        if found:
            errors.extend(found)
        else:
            values[self.field.name] = value


def _async(call: Any) -> bool:
    if inspect.isfunction(call) or inspect.ismethod(call):
        return inspect.iscoroutinefunction(call)
    return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


@dataclass(frozen=True, slots=True)
class _Plan:
    call: Callable[..., Awaitable[Any]]
    name: str | None
    request_name: str | None
    dependencies: tuple["_Plan", ...]
    params: tuple[_Param, ...]

    @classmethod
    def of(cls, dependant: Dependant, seen: set[int]) -> "_Plan | None":
        call = dependant.call
        if call is None or not _async(call) or id(call) in seen:
            return None
        seen.add(id(call))
        if (
            dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.websocket_param_name
            or dependant.http_connection_param_name
            or dependant.response_param_name
            or dependant.background_tasks_param_name
            or dependant.security_scopes_param_name
            or dependant.concurrency is not None
        ):
            return None
        params = [_Param.of(f) for f in (*dependant.path_params, *dependant.query_params)]
        subs = [cls.of(sub, seen) for sub in dependant.dependencies]
        if any(p is None for p in params) or any(s is None for s in subs):
            return None
        return cls(
            call, dependant.name, dependant.request_param_name,
            tuple(s for s in subs if s is not None), tuple(p for p in params if p is not None),
        )  # fmt: skip

    async def values(self, request: Request) -> tuple[dict[str, Any], list[Any]]:
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for sub in self.dependencies:
            sub_values, sub_errors = await sub.values(request)
            if sub_errors:
                errors.extend(sub_errors)
                continue
            solved = await sub.call(**sub_values)
            if sub.name is not None:
                values[sub.name] = solved
        for param in self.params:
            param.solve(request, values, errors)
        if self.request_name is not None:
            values[self.request_name] = request
        return values, errors


def _returns_response(call: Any) -> bool:
    try:
        returned = typing.get_type_hints(call).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


def plan(dependant: Dependant) -> Callable[[Request], Awaitable[Response]] | None:
    """The planned handler of a route with this dependant, or None if it cannot be planned."""
    if not _returns_response(dependant.call):
        return None
    endpoint = _Plan.of(dependant, set())
    if endpoint is None:
        return None

    async def handler(request: Request) -> Response:
        values, errors = await endpoint.values(request)
        if errors:
            raise RequestValidationError(errors)
        response: Response = await endpoint.call(**values)
        return response

    return handler


class QuickRoute(APIRoute):
    """An APIRoute answered by its plan when it has one (see the module's docstring).

    The plan is made from the route's own dependant: a router included with dependencies of
    its own would add to it unseen, so app.routing.include_indexed refuses those."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()
        planned = plan(self.dependant)
        if planned is None:
            return fastapi_handler

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await fastapi_handler(request)
            return await planned(request)

        return handler
