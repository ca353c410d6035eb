"""The API's route index (app/routing.py): every route reached through it, and no two routes
that could answer the same request, so the order routes are tried in never decides one."""

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from app.main import API_PREFIX, create_app
from app.routing import RouteIndex

SAMPLE = str(uuid.UUID(int=7))


def _api_routes(app: FastAPI) -> list[tuple[APIRoute, str]]:
    index = app.router.routes[0]
    assert isinstance(index, RouteIndex)
    return [
        (route, API_PREFIX + route.path)
        for group in index.groups.values()
        for route in group.original_router.routes  # type: ignore[attr-defined]
    ]


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _could_both_match(a: str, b: str) -> bool:
    first, second = _segments(a), _segments(b)
    return len(first) == len(second) and all(
        x == y or x.startswith("{") or y.startswith("{") for x, y in zip(first, second, strict=True)
    )


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


def test_no_two_api_routes_answer_the_same_request(app: FastAPI) -> None:
    routes = _api_routes(app)
    assert len(routes) > 100
    clashes = [
        (one.path, other.path)
        for i, (one, _) in enumerate(routes)
        for other, _ in routes[i + 1 :]
        if one.methods & other.methods and _could_both_match(one.path, other.path)
    ]
    assert clashes == []


def test_every_api_route_is_found_through_the_index(app: FastAPI) -> None:
    index = app.router.routes[0]
    assert isinstance(index, RouteIndex)
    for route, path in _api_routes(app):
        concrete = re.sub(r"\{[^}]+\}", SAMPLE, path)
        for method in route.methods:
            scope = {"type": "http", "method": method, "path": concrete, "root_path": ""}
            match, child = index.matches(scope)
            assert match == Match.FULL, (method, path)
            assert route in child["village_points.route_group"].original_router.routes


async def test_unknown_paths_and_methods_answer_as_before(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in (f"{API_PREFIX}/nothing-here", f"{API_PREFIX}/villages/{SAMPLE}/nothing"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.json()["code"] == "route.not_found"
        # The route exists for GET only.
        response = await client.delete(f"{API_PREFIX}/me")
        assert response.status_code == 405
