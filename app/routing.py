"""A dictionary in front of FastAPI's route matching for the API.

FastAPI finds a request's route by trying each route in turn, at several microseconds a route
through its included-router machinery; with a hundred and fifty routes under /api/v1 that scan
cost a cheap read more than its own database statement. Here the API's routes are grouped by
the literal segments their paths begin with (`/shops/...`; a large family split again by the
segment after its first parameter, `/villages/{village_id}/rules`), each group included in the
app as FastAPI includes any router (OpenAPI, url_for and every other route behaviour are
FastAPI's), and `RouteIndex`, the app's first route, hands a request straight to the one or two
groups its path can belong to. A path no group knows falls through to FastAPI's own scan, so
404s and everything outside /api/v1 behave as before.

Grouping changes the order in which routes are tried, which cannot change which route answers
as long as no two routes can match the same method and path: tests/health/test_routing.py
holds the API to that.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from app.quick_routes import QuickRoute
from app.security import CallerChanged

# A family of routes larger than this is split again by the segment after the first parameter.
_SPLIT_ABOVE = 8
_GROUP_KEY = "village_points.route_group"

Key = tuple[str, ...]


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _literal(segment: str) -> bool:
    return not segment.startswith("{")


def _route_path(scope: Scope) -> str:
    """The path the routes see: behind a proxy's root_path, without it (as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _key(path: str, deep: bool) -> Key:
    segments = _segments(path)
    if deep and len(segments) > 2 and _literal(segments[2]):
        return (segments[0], segments[2])
    return (segments[0],)


def _groups(routers: Iterable[APIRouter]) -> dict[Key, APIRouter]:
    families: dict[str, list[APIRoute]] = defaultdict(list)
    for router in routers:
        # A QuickRoute's plan sees only the route's own dependencies (app/quick_routes.py).
        assert not router.dependencies, router
        for route in router.routes:
            assert isinstance(route, QuickRoute), route
            first = _segments(route.path)[0]
            assert _literal(first), route.path
            families[first].append(route)
    groups: dict[Key, APIRouter] = {}
    for members in families.values():
        for route in members:
            key = _key(route.path, deep=len(members) > _SPLIT_ABOVE)
            groups.setdefault(key, APIRouter()).routes.append(route)
    return groups


class RouteIndex(BaseRoute):
    def __init__(self, prefix: str, groups: dict[Key, BaseRoute]) -> None:
        self.prefix = prefix + "/"
        self.groups = groups

    def _candidates(self, scope: Scope) -> Sequence[BaseRoute]:
        path = _route_path(scope)
        if not path.startswith(self.prefix):
            return ()
        segments = path[len(self.prefix) :].split("/")
        deep = self.groups.get((segments[0], segments[2])) if len(segments) > 2 else None
        shallow = self.groups.get((segments[0],))
        return [group for group in (deep, shallow) if group is not None]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Scope, BaseRoute] | None = None
        for group in self._candidates(scope):
            match, child_scope = group.matches(scope)
            if match == Match.FULL:
                return match, {**child_scope, _GROUP_KEY: group}
            if match == Match.PARTIAL and partial is None:
                partial = ({**child_scope, _GROUP_KEY: group}, group)
        if partial is not None:
            return Match.PARTIAL, partial[0]
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        group: BaseRoute = scope.pop(_GROUP_KEY)
        try:
            await group.handle(scope, receive, send)
        except CallerChanged:
            # A hot read (a GET: no body to read twice) sent nothing yet; its caller is now
            # forgotten, so this time it is read afresh and the read is not checked again.
            await group.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        # The groups themselves stand further down the app's routes and answer this.
        raise NoMatchFound(name, path_params)


def include_indexed(
    app: FastAPI, routers: Iterable[APIRouter], *, prefix: str, **include: Any
) -> None:
    """Include `routers` under `prefix` (with `include`'s options), grouped, behind an index."""
    assert "dependencies" not in include, "QuickRoute plans would not see them"
    groups = _groups(routers)
    included: dict[Key, BaseRoute] = {}
    for key, group in groups.items():
        app.include_router(group, prefix=prefix, **include)
        included[key] = app.router.routes[-1]
    app.router.routes.insert(0, RouteIndex(prefix, included))
