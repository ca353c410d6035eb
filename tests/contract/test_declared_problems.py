"""Routes added later (on other branches, after a merge) declare their problems without a line
of their own: what a route is made of decides them (app/contract.py)."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from app.config import Settings
from app.main import API_PREFIX, create_app
from app.pagination import Page, PageParams, page_params
from app.security import CurrentPrincipal, DistrictAdmin


class Thing(BaseModel):
    name: str


def test_a_new_route_gets_the_problems_its_parts_bring() -> None:
    app = create_app(Settings(environment="dev"))
    router = APIRouter(prefix=f"{API_PREFIX}/things")

    @router.post("", operation_id="make_thing")
    async def make(body: Thing, principal: DistrictAdmin) -> Thing:
        return body

    @router.get("", operation_id="list_things")
    async def things(
        principal: CurrentPrincipal, paging: Annotated[PageParams, Depends(page_params)]
    ) -> Page[Thing]:
        return Page(items=[])

    @router.get("/plain", operation_id="plain_thing")
    async def plain() -> Thing:
        return Thing(name="x")

    app.include_router(router)
    paths = app.openapi()["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[f"{API_PREFIX}/things{path}"][method]["responses"])

    assert statuses("", "post") == {"200", "400", "401", "403", "413", "422"}
    # A GET answering JSON may answer 304 to a phone that holds it (app/conditional.py).
    assert statuses("", "get") == {"200", "304", "400", "401", "422"}
    assert statuses("/plain", "get") == {"200", "304"}
    problem = paths[f"{API_PREFIX}/things"]["post"]["responses"]["413"]["content"]
    assert list(problem) == ["application/problem+json"]
    assert problem["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
