"""Every status a route can answer, in its OpenAPI entry, from what the route is made of.

Routes declare only what is theirs alone (a WeChat outage, a photo's type); the problems that
follow from a route's parts are added here for every route, present and future: a body (not
JSON: 400; too large: 413; invalid: 422), a cursor (400), a bearer token (401), a role (403).
"""

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant

from app.errors import PROBLEM_JSON, Problem
from app.pagination import page_params
from app.security import current_principal

DESCRIPTIONS = {
    400: "Malformed request: a body that is not JSON, an invalid cursor",
    401: "Not signed in, or the token is expired, invalid or revoked",
    403: "Signed in without a role that may do this",
    404: "Not found, or outside the caller's scope",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    415: "The body's type is not one this route accepts",
    422: "The request did not validate",
    429: "Too many attempts; try again later",
    502: "An upstream service (WeChat) answered with an error",
    503: "An upstream service (WeChat) or the database is unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for statuses a route answers with a problem, in the common wording."""
    return {status: {"model": Problem, "description": DESCRIPTIONS[status]} for status in statuses}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _is_role_check(call: Callable[..., Any]) -> bool:
    return getattr(call, "__qualname__", "").startswith("require_roles.")


def statuses_of(route: Any) -> set[int]:
    """The problems a route (an APIRoute, or FastAPI's view of one inside a router) can answer
    because of its parts."""
    dependant: Dependant = route.dependant
    calls = set(_calls(dependant))
    statuses = set()
    if route.body_field is not None:
        statuses |= {400, 413, 422}
    if page_params in calls:
        statuses.add(400)
    if current_principal in calls:
        statuses.add(401)
    if any(_is_role_check(call) for call in calls):
        statuses |= {401, 403}
    if dependant.path_params or dependant.query_params or dependant.header_params:
        statuses.add(422)
    return statuses


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def declare_problem_responses(app: FastAPI, spec: dict[str, Any]) -> dict[str, Any]:
    """Add each operation's problems to what it declares itself (which wins)."""
    for context in routing.iter_route_contexts(app.routes):
        if not isinstance(context.original_route, routing.APIRoute):
            continue
        operations = spec["paths"].get(context.path, {})
        for method in context.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses_of(context)):
                responses.setdefault(str(status), _problem_response(status))
            operation["responses"] = dict(sorted(responses.items()))
    spec.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "Problem", Problem.model_json_schema()
    )
    return spec
