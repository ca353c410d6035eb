import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.db import SessionDep
from app.driver import json_response
from app.models import Role
from app.quick_routes import QuickRoute
from app.schemas.rules import (
    ActiveRules,
    CategoryCreate,
    CategoryRead,
    CategoryUpdate,
    ItemCreate,
    ItemRead,
    ItemUpdate,
    RuleSetCreate,
    RuleSetRead,
    RuleSetReturn,
    RuleSetSummary,
    RuleSetUpdate,
    RuleSetVersionCreate,
    RuleTemplate,
    TemplateSummary,
)
from app.security import CurrentPrincipal, Principal, ReadingDep, VillageAdmin, require_roles
from app.services import rule_drafts as drafts
from app.services import rules as service
from app.services.rules_export import rule_set_workbook

router = APIRouter(tags=["rules"], route_class=QuickRoute)
TownSupervisor = Annotated[Principal, require_roles(Role.TOWN_SUPERVISOR)]
RulesAdmin = Annotated[Principal, require_roles(Role.VILLAGE_ADMIN, Role.TOWN_SUPERVISOR)]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@router.get("/rule-templates", operation_id="list_rule_templates")
async def list_templates(principal: CurrentPrincipal) -> list[TemplateSummary]:
    """The schemes shipped with the product, one per seed locality."""
    return service.list_templates()


@router.get("/rule-templates/{code}", operation_id="get_rule_template")
async def get_template(principal: CurrentPrincipal, code: str) -> RuleTemplate:
    return service.get_template(code)


@router.get(
    "/villages/{village_id}/rules", operation_id="get_active_rules", response_model=ActiveRules
)
async def active_rules(
    reading: ReadingDep,
    village_id: uuid.UUID,
    on: Annotated[date | None, Query(description="Day (Asia/Shanghai); default today")] = None,
) -> Response:
    """The approved rules in force, grouped by category, sized for a phone."""
    rules = await service.active_rules(reading.connection, reading.principal, village_id, on)
    return json_response(rules)


@router.get("/villages/{village_id}/rule-sets", operation_id="list_rule_sets")
async def list_rule_sets(
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: uuid.UUID,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> list[RuleSetSummary]:
    rule_sets = await service.list_rule_sets(session, principal, village_id, year)
    return [RuleSetSummary.model_validate(r) for r in rule_sets]


@router.post(
    "/villages/{village_id}/rule-sets",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_rule_set",
)
async def create_rule_set(
    session: SessionDep, principal: VillageAdmin, village_id: uuid.UUID, body: RuleSetCreate
) -> RuleSetRead:
    """A draft for a year, from a template or from an earlier set of the village."""
    rule_set = await drafts.create_rule_set(session, principal, village_id, body)
    return await service.rule_set_read(session, rule_set)


@router.get("/rule-sets/{rule_set_id}", operation_id="get_rule_set")
async def get_rule_set(
    session: SessionDep, principal: CurrentPrincipal, rule_set_id: uuid.UUID
) -> RuleSetRead:
    rule_set = await service.get_rule_set(session, principal, rule_set_id)
    return await service.rule_set_read(session, rule_set)


@router.patch("/rule-sets/{rule_set_id}", operation_id="update_rule_set")
async def update_rule_set(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID, body: RuleSetUpdate
) -> RuleSetRead:
    rule_set = await drafts.update_rule_set(session, principal, rule_set_id, body)
    return await service.rule_set_read(session, rule_set)


@router.delete(
    "/rule-sets/{rule_set_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_rule_set_draft",
)
async def delete_draft(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID
) -> None:
    await drafts.delete_draft(session, principal, rule_set_id)


@router.post(
    "/rule-sets/{rule_set_id}/versions",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_rule_set_version",
)
async def new_version(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID, body: RuleSetVersionCreate
) -> RuleSetRead:
    """A draft of the next version, taking effect from a period boundary later in the year."""
    rule_set = await drafts.new_version(session, principal, rule_set_id, body.effective_from)
    return await service.rule_set_read(session, rule_set)


@router.post(
    "/rule-sets/{rule_set_id}/categories",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_rule_category",
)
async def add_category(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID, body: CategoryCreate
) -> CategoryRead:
    category = await drafts.add_category(session, principal, rule_set_id, body)
    return CategoryRead.model_validate(category, from_attributes=True)


@router.patch("/rule-categories/{category_id}", operation_id="update_rule_category")
async def update_category(
    session: SessionDep, principal: VillageAdmin, category_id: uuid.UUID, body: CategoryUpdate
) -> CategoryRead:
    category = await drafts.update_category(session, principal, category_id, body)
    return CategoryRead.model_validate(category, from_attributes=True)


@router.delete(
    "/rule-categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_rule_category",
)
async def delete_category(
    session: SessionDep, principal: VillageAdmin, category_id: uuid.UUID
) -> None:
    await drafts.delete_category(session, principal, category_id)


@router.post(
    "/rule-sets/{rule_set_id}/items",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_rule_item",
)
async def add_item(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID, body: ItemCreate
) -> ItemRead:
    return ItemRead.model_validate(await drafts.add_item(session, principal, rule_set_id, body))


@router.patch("/rule-items/{item_id}", operation_id="update_rule_item")
async def update_item(
    session: SessionDep, principal: VillageAdmin, item_id: uuid.UUID, body: ItemUpdate
) -> ItemRead:
    return ItemRead.model_validate(await drafts.update_item(session, principal, item_id, body))


@router.delete(
    "/rule-items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_rule_item"
)
async def delete_item(session: SessionDep, principal: VillageAdmin, item_id: uuid.UUID) -> None:
    await drafts.delete_item(session, principal, item_id)


@router.post("/rule-sets/{rule_set_id}/submit", operation_id="submit_rule_set")
async def submit(
    session: SessionDep, principal: VillageAdmin, rule_set_id: uuid.UUID
) -> RuleSetSummary:
    """Send the draft to the town for 备案; it can no longer be edited unless returned."""
    return RuleSetSummary.model_validate(await drafts.submit(session, principal, rule_set_id))


@router.post("/rule-sets/{rule_set_id}/approve", operation_id="approve_rule_set")
async def approve(
    session: SessionDep, principal: TownSupervisor, rule_set_id: uuid.UUID
) -> RuleSetSummary:
    """The town files (备案) the set; from its first day households are scored by it."""
    return RuleSetSummary.model_validate(await drafts.approve(session, principal, rule_set_id))


@router.post("/rule-sets/{rule_set_id}/return", operation_id="return_rule_set")
async def return_for_changes(
    session: SessionDep, principal: TownSupervisor, rule_set_id: uuid.UUID, body: RuleSetReturn
) -> RuleSetSummary:
    rule_set = await drafts.return_for_changes(session, principal, rule_set_id, body.reason)
    return RuleSetSummary.model_validate(rule_set)


@router.get(
    "/rule-sets/{rule_set_id}/export",
    operation_id="export_rule_set",
    response_class=Response,
    responses={200: {"content": {XLSX: {}}, "description": "The rule set as an XLSX workbook"}},
)
async def export(session: SessionDep, principal: RulesAdmin, rule_set_id: uuid.UUID) -> Response:
    rule_set = await service.get_rule_set(session, principal, rule_set_id)
    workbook = rule_set_workbook(await service.rule_set_read(session, rule_set))
    filename = f"rule-set-{rule_set.year}-v{rule_set.version}.xlsx"
    return Response(
        workbook,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
