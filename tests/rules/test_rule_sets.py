from dataclasses import dataclass
from datetime import date
from io import BytesIO
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.config import Settings
from app.errors import Unprocessable
from app.models import AuditEntry, Role, RuleItem, RuleSet, RuleSetStatus, Village
from app.rule_templates import all_items, templates
from app.schemas.rules import Policy
from app.services.rule_drafts import check_not_retroactive
from tests import factories as f

YEAR = 2031  # a year of its own, so nothing else in the database is in force


@dataclass
class Actors:
    village: Village
    admin: dict[str, str]
    supervisor: dict[str, str]
    villager: dict[str, str]
    scorer: dict[str, str]
    other_admin: dict[str, str]
    other_supervisor: dict[str, str]


@pytest.fixture
async def actors(db: AsyncSession, settings: Settings) -> Actors:
    town = await f.create_town(db)
    village = await f.create_village(db, town)

    async def staff(role: Role, **scope: Any) -> dict[str, str]:
        person = await f.create_person(db, village)
        await f.grant(db, person, role, **scope)
        return await f.login_headers(db, settings, person)

    household = await f.create_household(db, village)
    member = await f.add_member(db, household, is_head=True)
    villager = await db.get(f.Person, member.person_id)
    assert villager is not None
    other_town = await f.create_town(db)
    other_village = await f.create_village(db, other_town)
    other_admin = await f.create_person(db, other_village)
    await f.grant(db, other_admin, Role.VILLAGE_ADMIN, village=other_village)
    other_supervisor = await f.create_person(db)
    await f.grant(db, other_supervisor, Role.TOWN_SUPERVISOR, town=other_town)
    return Actors(
        village=village,
        admin=await staff(Role.VILLAGE_ADMIN, village=village),
        supervisor=await staff(Role.TOWN_SUPERVISOR, town=town),
        villager=await f.login_headers(db, settings, villager),
        scorer=await staff(Role.SCORER, village=village),
        other_admin=await f.login_headers(db, settings, other_admin),
        other_supervisor=await f.login_headers(db, settings, other_supervisor),
    )


async def create(
    client: httpx.AsyncClient,
    a: Actors,
    template: str = "zhangyan-governance-2024",
    year: int = YEAR,
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/villages/{a.village.id}/rule-sets",
        json={"year": year, "template_code": template},
        headers=a.admin,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def first_item(rule_set: dict[str, Any]) -> dict[str, Any]:
    for root in rule_set["categories"]:
        for category in [root, *root["children"]]:
            if category["items"]:
                item: dict[str, Any] = category["items"][0]
                return item
    raise AssertionError("no items")


async def audit_actions(db: AsyncSession, rule_set_id: str) -> list[str]:
    rows = await db.execute(
        select(AuditEntry.action)
        .where(AuditEntry.object_id == rule_set_id)
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    return list(rows.scalars())


@pytest.mark.parametrize("code", sorted(templates()))
async def test_every_template_can_be_instantiated_and_approved(
    client: httpx.AsyncClient, actors: Actors, code: str
) -> None:
    template = templates()[code]
    rule_set = await create(client, actors, code)
    assert rule_set["status"] == "draft"
    assert rule_set["policy"] == template.policy.model_dump(mode="json")
    assert sum(len(_items(c)) for c in rule_set["categories"]) == len(
        all_items(template.categories)
    )
    if not any(i.kind == "inspection" for i in all_items(template.categories)):
        # The seed left its annex out: the village writes its own items before filing.
        category_id = _first_category(rule_set)
        points = 5
        added = await client.post(
            f"/api/v1/rule-sets/{rule_set['id']}/items",
            json={"category_id": category_id, "code": "X1", "title": "门前三包", "points": points},
            headers=actors.admin,
        )
        assert added.status_code == 201, added.text
    submitted = await client.post(
        f"/api/v1/rule-sets/{rule_set['id']}/submit", headers=actors.admin
    )
    assert submitted.status_code == 200, submitted.text
    approved = await client.post(
        f"/api/v1/rule-sets/{rule_set['id']}/approve", headers=actors.supervisor
    )
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    rules = await client.get(
        f"/api/v1/villages/{actors.village.id}/rules",
        params={"on": f"{YEAR}-03-15"},
        headers=actors.villager,
    )
    assert rules.status_code == 200
    assert rules.json()["rule_set_id"] == rule_set["id"]
    assert rules.json()["summary"]


def _items(category: dict[str, Any]) -> list[dict[str, Any]]:
    return [*category["items"], *(i for child in category["children"] for i in _items(child))]


def _first_category(rule_set: dict[str, Any]) -> str:
    if rule_set["categories"]:
        category_id: str = rule_set["categories"][0]["id"]
        return category_id
    raise AssertionError("template without categories")


async def test_zhangyan_active_rules_show_the_seed_for_a_villager(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    await client.post(f"/api/v1/rule-sets/{rule_set['id']}/submit", headers=actors.admin)
    await client.post(f"/api/v1/rule-sets/{rule_set['id']}/approve", headers=actors.supervisor)
    response = await client.get(
        f"/api/v1/villages/{actors.village.id}/rules",
        params={"on": f"{YEAR}-06-01"},
        headers=actors.villager,
    )
    body = response.json()
    assert [c["name"] for c in body["categories"]][:3] == ["环境卫生", "乡风文明", "志愿服务"]
    aspects = {c["name"]: c["cap"] for root in body["categories"] for c in root["children"]}
    assert aspects["宅前屋后"] == 45
    assert sum(i["points"] for root in body["categories"] for i in _items(root)) == 120
    assert "积分年底清零，次年重新积分" in body["summary"]


async def test_lifecycle_return_edit_resubmit_approve_is_audited(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    rid = rule_set["id"]
    assert (
        await client.post(f"/api/v1/rule-sets/{rid}/submit", headers=actors.admin)
    ).status_code == 200
    returned = await client.post(
        f"/api/v1/rule-sets/{rid}/return",
        json={"reason": "田间地头分值偏高"},
        headers=actors.supervisor,
    )
    assert returned.status_code == 200
    assert returned.json()["status"] == "returned"
    assert returned.json()["return_reason"] == "田间地头分值偏高"
    item = first_item(rule_set)
    edited = await client.patch(
        f"/api/v1/rule-items/{item['id']}",
        json={"title": "无违章搭建（含临时棚舍）"},
        headers=actors.admin,
    )
    assert edited.status_code == 200
    assert (
        await client.post(f"/api/v1/rule-sets/{rid}/submit", headers=actors.admin)
    ).status_code == 200
    approved = await client.post(f"/api/v1/rule-sets/{rid}/approve", headers=actors.supervisor)
    assert approved.json()["status"] == "approved"
    assert await audit_actions(db, rid) == [
        "rule_set.create",
        "rule_set.submit",
        "rule_set.return",
        "rule_item.update",
        "rule_set.submit",
        "rule_set.approve",
    ]
    entry = (
        await db.execute(
            select(AuditEntry).where(
                AuditEntry.object_id == rid, AuditEntry.action == "rule_set.approve"
            )
        )
    ).scalar_one()
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["status"], entry.after["status"]) == ("submitted", "approved")


async def test_refused_transitions(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    rid = rule_set["id"]
    item = first_item(rule_set)

    async def expect(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["code"] == code

    await expect(
        await client.post(f"/api/v1/rule-sets/{rid}/approve", headers=actors.supervisor),
        409,
        "rule_set.not_submitted",
    )
    await expect(
        await client.post(f"/api/v1/rule-sets/{rid}/approve", headers=actors.admin),
        403,
        "auth.forbidden",
    )
    await client.post(f"/api/v1/rule-sets/{rid}/submit", headers=actors.admin)
    await expect(
        await client.patch(
            f"/api/v1/rule-items/{item['id']}", json={"points": 14}, headers=actors.admin
        ),
        409,
        "rule_set.not_editable",
    )
    await expect(
        await client.post(f"/api/v1/rule-sets/{rid}/submit", headers=actors.admin),
        409,
        "rule_set.not_editable",
    )
    await expect(
        await client.post(f"/api/v1/rule-sets/{rid}/approve", headers=actors.other_supervisor),
        404,
        "rule_set.not_found",
    )
    await client.post(f"/api/v1/rule-sets/{rid}/approve", headers=actors.supervisor)
    await expect(
        await client.post(
            f"/api/v1/rule-sets/{rid}/return", json={"reason": "x"}, headers=actors.supervisor
        ),
        409,
        "rule_set.not_submitted",
    )
    await expect(
        await client.patch(f"/api/v1/rule-sets/{rid}", json={"title": "改"}, headers=actors.admin),
        409,
        "rule_set.not_editable",
    )
    await expect(
        await client.delete(f"/api/v1/rule-sets/{rid}", headers=actors.admin),
        409,
        "rule_set.not_editable",
    )
    await expect(
        await client.post(
            f"/api/v1/villages/{actors.village.id}/rule-sets",
            json={"year": YEAR, "template_code": "qingpu-eco-green-2024"},
            headers=actors.admin,
        ),
        409,
        "rule_set.year_exists",
    )
    stored = await db.get(RuleItem, item["id"])
    assert stored is not None
    await db.refresh(stored)
    assert stored.points == item["points"]


async def test_drafts_are_hidden_outside_the_village_and_its_town(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    url = f"/api/v1/rule-sets/{rule_set['id']}"
    assert (await client.get(url, headers=actors.supervisor)).status_code == 200
    for headers in (actors.villager, actors.scorer, actors.other_admin, actors.other_supervisor):
        response = await client.get(url, headers=headers)
        assert response.status_code == 404
        assert response.json()["code"] == "rule_set.not_found"
    listing = await client.get(
        f"/api/v1/villages/{actors.village.id}/rule-sets", headers=actors.villager
    )
    assert listing.json() == []
    await client.post(f"{url}/submit", headers=actors.admin)
    await client.post(f"{url}/approve", headers=actors.supervisor)
    assert (await client.get(url, headers=actors.villager)).status_code == 200
    assert (await client.get(url, headers=actors.other_admin)).status_code == 404


BAD_ITEMS = [
    ({"kind": "veto", "points": 0, "claimable": True}, 422, "rule_item.claimable_veto"),
    ({"kind": "veto", "points": 5}, 422, "rule_item.veto_points"),
    ({"kind": "bonus", "points": -2}, 422, "rule_item.points_sign"),
    ({"kind": "inspection", "points": 5, "claimable": True}, 422, "rule_item.claimable_not_bonus"),
    ({"kind": "inspection", "points": 0}, 422, "rule_item.points_sign"),
    ({"kind": "inspection", "points": 5, "period_cap": 10}, 422, "rule_item.period_cap_not_bonus"),
    ({"kind": "bonus", "points": 5, "period_cap": 2}, 422, "rule_item.period_cap_below_points"),
    ({"kind": "inspection", "points": 50}, 422, "rule_category.cap_below_item"),
    ({"kind": "inspection", "points": 5, "code": "1.1"}, 409, "rule_item.code_taken"),
    ({"kind": "inspection", "points": 5, "cadence": "weekly"}, 422, "request.invalid"),
    ({"kind": "inspection", "points": 5, "title": ""}, 422, "request.invalid"),
]


@pytest.mark.parametrize(("fields", "status", "code"), BAD_ITEMS)
async def test_bad_items_leave_the_draft_unchanged(
    client: httpx.AsyncClient,
    db: AsyncSession,
    actors: Actors,
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    rule_set = await create(client, actors)
    aspect = next(
        c for root in rule_set["categories"] for c in root["children"] if c["name"] == "宅前屋后"
    )
    before = (await client.get(f"/api/v1/rule-sets/{rule_set['id']}", headers=actors.admin)).json()
    audits = len(await audit_actions(db, rule_set["id"]))
    body = {"category_id": aspect["id"], "code": "9.9", "title": "新项目", **fields}
    response = await client.post(
        f"/api/v1/rule-sets/{rule_set['id']}/items", json=body, headers=actors.admin
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    after = (await client.get(f"/api/v1/rule-sets/{rule_set['id']}", headers=actors.admin)).json()
    assert after == before
    assert len(await audit_actions(db, rule_set["id"])) == audits


async def test_bad_edits_of_categories_and_policy(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    rid = rule_set["id"]
    root = rule_set["categories"][0]
    aspect = root["children"][0]
    before = (await client.get(f"/api/v1/rule-sets/{rid}", headers=actors.admin)).json()
    cases = [
        (
            await client.patch(
                f"/api/v1/rule-categories/{aspect['id']}", json={"cap": 10}, headers=actors.admin
            ),
            422,
            "rule_category.cap_below_item",
        ),
        (
            await client.patch(
                f"/api/v1/rule-categories/{aspect['id']}", json={"cap": 0}, headers=actors.admin
            ),
            422,
            "request.invalid",
        ),
        (
            await client.post(
                f"/api/v1/rule-sets/{rid}/categories",
                json={"name": "子类", "parent_id": aspect["id"]},
                headers=actors.admin,
            ),
            422,
            "rule_category.too_deep",
        ),
        (
            await client.post(
                f"/api/v1/rule-sets/{rid}/categories",
                json={"name": root["name"]},
                headers=actors.admin,
            ),
            409,
            "rule_category.name_taken",
        ),
        (
            await client.patch(
                f"/api/v1/rule-sets/{rid}",
                json={"policy": {"scoring_mode": "deductive"}},
                headers=actors.admin,
            ),
            422,
            "request.invalid",
        ),
        (
            await client.patch(
                f"/api/v1/rule-sets/{rid}",
                json={
                    "policy": {
                        "redemption": {
                            "tiers": [
                                {"label": "a", "min_score": 80},
                                {"label": "b", "min_score": 90},
                            ]
                        }
                    }
                },
                headers=actors.admin,
            ),
            422,
            "request.invalid",
        ),
        (
            await client.patch(
                f"/api/v1/rule-sets/{rid}",
                json={
                    "policy": {"scoring_mode": "deductive", "base_score": 100, "veto_scope": "year"}
                },
                headers=actors.admin,
            ),
            200,
            None,
        ),
    ]
    for response, status, code in cases[:-1]:
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
    after = (await client.get(f"/api/v1/rule-sets/{rid}", headers=actors.admin)).json()
    # Switching 张堰 to deduction is fine: its items' points become deductions, all positive.
    assert cases[-1][0].status_code == 200
    assert after["categories"] == before["categories"]


async def test_a_cap_nothing_can_reach_is_refused_at_submission(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    aspect = next(
        c for root in rule_set["categories"] for c in root["children"] if c["name"] == "宅前屋后"
    )
    deleted = await client.delete(
        f"/api/v1/rule-items/{aspect['items'][0]['id']}", headers=actors.admin
    )
    assert deleted.status_code == 204
    response = await client.post(f"/api/v1/rule-sets/{rule_set['id']}/submit", headers=actors.admin)
    assert response.status_code == 422
    assert response.json()["code"] == "rule_set.cap_unreachable"
    stored = await db.get(RuleSet, rule_set["id"])
    assert stored is not None
    await db.refresh(stored)
    assert stored.status is RuleSetStatus.DRAFT


async def test_a_set_without_inspection_items_cannot_be_submitted(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    rule_set = await create(client, actors, "jiuxian-living-environment-2022")
    response = await client.post(f"/api/v1/rule-sets/{rule_set['id']}/submit", headers=actors.admin)
    assert response.status_code == 422
    assert response.json()["code"] == "rule_set.no_items"


async def approved(client: httpx.AsyncClient, a: Actors, rule_set_id: str) -> None:
    assert (
        await client.post(f"/api/v1/rule-sets/{rule_set_id}/submit", headers=a.admin)
    ).status_code == 200
    assert (
        await client.post(f"/api/v1/rule-sets/{rule_set_id}/approve", headers=a.supervisor)
    ).status_code == 200


async def test_a_new_version_takes_effect_at_a_period_boundary_and_earlier_periods_keep_theirs(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors
) -> None:
    async def in_force(day: str) -> dict[str, Any]:
        response = await client.get(
            f"/api/v1/villages/{actors.village.id}/rules",
            params={"on": day},
            headers=actors.villager,
        )
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    v1 = await create(client, actors)
    await approved(client, actors, v1["id"])
    item_v1 = first_item(v1)
    # Read (and built, once per process) while v1 is the only set: July's answer moves to v2
    # the moment v2 is approved, and June's stays v1's as it was.
    july_before = await in_force(f"{YEAR}-07-01")
    assert july_before["version"] == 1
    v2 = await client.post(
        f"/api/v1/rule-sets/{v1['id']}/versions",
        json={"effective_from": f"{YEAR}-07-01"},
        headers=actors.admin,
    )
    assert v2.status_code == 201
    v2_body = v2.json()
    assert (v2_body["version"], v2_body["status"], v2_body["based_on_id"]) == (2, "draft", v1["id"])
    item_v2 = first_item(v2_body)
    assert item_v2["id"] != item_v1["id"]
    assert item_v2["lineage_id"] == item_v1["lineage_id"]
    changed = await client.patch(
        f"/api/v1/rule-items/{item_v2['id']}",
        json={"title": "无违章搭建（新）"},
        headers=actors.admin,
    )
    assert changed.status_code == 200
    await approved(client, actors, v2_body["id"])

    june, july = await in_force(f"{YEAR}-06-30"), await in_force(f"{YEAR}-07-01")
    assert (june["version"], july["version"]) == (1, 2)
    assert june == july_before
    assert first_item(june)["title"] == item_v1["title"]
    assert first_item(july)["title"] == "无违章搭建（新）"
    stored = await db.get(RuleItem, item_v1["id"])
    assert stored is not None
    await db.refresh(stored)
    assert stored.title == item_v1["title"]
    previous_year = await client.get(
        f"/api/v1/villages/{actors.village.id}/rules",
        params={"on": f"{YEAR - 1}-12-31"},
        headers=actors.villager,
    )
    assert previous_year.status_code == 404
    assert previous_year.json()["code"] == "rules.none_in_force"


@pytest.mark.parametrize(
    ("effective_from", "code"),
    [
        (f"{YEAR}-07-15", "rule_set.effective_not_period_start"),
        (f"{YEAR + 1}-01-01", "rule_set.effective_not_period_start"),
        (f"{YEAR}-01-01", "rule_set.effective_not_after_previous"),
    ],
)
async def test_bad_version_dates_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors, effective_from: str, code: str
) -> None:
    v1 = await create(client, actors)
    await approved(client, actors, v1["id"])
    response = await client.post(
        f"/api/v1/rule-sets/{v1['id']}/versions",
        json={"effective_from": effective_from},
        headers=actors.admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == code
    count = (
        await db.execute(
            select(func.count()).select_from(RuleSet).where(RuleSet.village_id == actors.village.id)
        )
    ).scalar_one()
    assert count == 1


async def test_quarterly_rules_change_only_at_a_quarter(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    v1 = await create(client, actors)
    patched = await client.patch(
        f"/api/v1/rule-sets/{v1['id']}",
        json={"policy": {"period": "quarter"}},
        headers=actors.admin,
    )
    assert patched.status_code == 200
    await approved(client, actors, v1["id"])
    may = await client.post(
        f"/api/v1/rule-sets/{v1['id']}/versions",
        json={"effective_from": f"{YEAR}-05-01"},
        headers=actors.admin,
    )
    assert may.json()["code"] == "rule_set.effective_not_period_start"
    april = await client.post(
        f"/api/v1/rule-sets/{v1['id']}/versions",
        json={"effective_from": f"{YEAR}-04-01"},
        headers=actors.admin,
    )
    assert april.status_code == 201
    again = await client.post(
        f"/api/v1/rule-sets/{v1['id']}/versions",
        json={"effective_from": f"{YEAR}-07-01"},
        headers=actors.admin,
    )
    assert again.status_code == 409
    assert again.json()["code"] == "rule_set.not_latest"


async def test_the_database_refuses_to_change_an_approved_set(
    db: AsyncSession, actors: Actors
) -> None:
    rule_set, _category, item = await f.create_rule_set(db, actors.village, year=YEAR)
    for statement in (
        text("UPDATE rule_item SET points = 99 WHERE id = :id"),
        text("DELETE FROM rule_item WHERE id = :id"),
    ):
        with pytest.raises(IntegrityError, match="frozen"):
            async with db.begin_nested():
                await db.execute(statement, {"id": item.id})
    with pytest.raises(IntegrityError, match="frozen"):
        async with db.begin_nested():
            await db.execute(
                text("UPDATE rule_set SET title = 'x' WHERE id = :id"), {"id": rule_set.id}
            )


async def test_next_year_starts_from_this_years_set(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    v1 = await create(client, actors)
    await approved(client, actors, v1["id"])
    response = await client.post(
        f"/api/v1/villages/{actors.village.id}/rule-sets",
        json={"year": YEAR + 1, "from_rule_set_id": v1["id"]},
        headers=actors.admin,
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["year"], body["version"], body["effective_from"], body["based_on_id"]) == (
        YEAR + 1,
        1,
        f"{YEAR + 1}-01-01",
        v1["id"],
    )
    assert first_item(body)["lineage_id"] == first_item(v1)["lineage_id"]


async def test_export_is_a_workbook_laid_out_like_the_seed(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    rule_set = await create(client, actors)
    response = await client.get(
        f"/api/v1/rule-sets/{rule_set['id']}/export", headers=actors.supervisor
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(BytesIO(response.content))["积分细则"]
    rows = list(sheet.iter_rows(min_row=4, values_only=True))
    assert list(next(sheet.iter_rows(min_row=3, max_row=3, values_only=True)))[:5] == [
        "类型",
        "指标名称",
        "序号",
        "具体内容",
        "分值",
    ]
    assert len(rows) == sum(len(_items(c)) for c in rule_set["categories"])
    assert sum(r[4] for r in rows if isinstance(r[4], int)) == 120
    assert rows[0][:3] == ("环境卫生", "宅前屋后 (45分)", "1.1")
    denied = await client.get(f"/api/v1/rule-sets/{rule_set['id']}/export", headers=actors.villager)
    assert denied.status_code == 403


async def test_unknown_template_is_404(client: httpx.AsyncClient, actors: Actors) -> None:
    response = await client.post(
        f"/api/v1/villages/{actors.village.id}/rule-sets",
        json={"year": YEAR, "template_code": "nowhere"},
        headers=actors.admin,
    )
    assert response.status_code == 404
    assert response.json()["code"] == "rule_template.not_found"
    assert (
        await client.get("/api/v1/rule-templates/nowhere", headers=actors.villager)
    ).status_code == 404
    listing = await client.get("/api/v1/rule-templates", headers=actors.villager)
    assert {t["code"] for t in listing.json()} == set(templates())


async def test_export_keeps_text_as_text(client: httpx.AsyncClient, actors: Actors) -> None:
    """A title a scorer typed must never run as a formula in the town's Excel."""
    rule_set = await create(client, actors)
    aspect = next(
        c for root in rule_set["categories"] for c in root["children"] if c["name"] == "宅前屋后"
    )
    added = await client.post(
        f"/api/v1/rule-sets/{rule_set['id']}/items",
        json={
            "category_id": aspect["id"],
            "code": "=1+1",
            "title": '=HYPERLINK("http://x")\u0007',
            "points": 1,
        },
        headers=actors.admin,
    )
    assert added.status_code == 201
    response = await client.get(f"/api/v1/rule-sets/{rule_set['id']}/export", headers=actors.admin)
    assert response.status_code == 200
    sheet = load_workbook(BytesIO(response.content))["积分细则"]
    cells = [row for row in sheet.iter_rows(min_row=4) if row[2].value == "'=1+1"]
    assert len(cells) == 1
    assert cells[0][3].data_type == "s"
    assert cells[0][3].value == '\'=HYPERLINK("http://x")'


def test_versions_never_reach_back_before_the_current_period() -> None:
    monthly, quarterly = Policy(), Policy(period="quarter")
    check_not_retroactive(date(2031, 7, 1), monthly, today=date(2031, 7, 15))
    check_not_retroactive(date(2031, 7, 1), quarterly, today=date(2031, 8, 10))
    for day, policy, today in (
        (date(2031, 6, 1), monthly, date(2031, 7, 15)),
        (date(2031, 4, 1), quarterly, date(2031, 8, 10)),
    ):
        with pytest.raises(Unprocessable) as refused:
            check_not_retroactive(day, policy, today=today)
        assert refused.value.code == "rule_set.effective_in_past"


async def test_a_version_cannot_take_effect_in_a_past_month(
    client: httpx.AsyncClient, db: AsyncSession, actors: Actors
) -> None:
    today = clock.today()
    rule_set, _, _ = await f.create_rule_set(db, actors.village, year=today.year)
    if today.month > 1:
        day, code = date(today.year, today.month - 1, 1), "rule_set.effective_in_past"
    else:  # in January the month before lies in another year
        day, code = date(today.year - 1, 12, 1), "rule_set.effective_not_period_start"
    response = await client.post(
        f"/api/v1/rule-sets/{rule_set.id}/versions",
        json={"effective_from": day.isoformat()},
        headers=actors.admin,
    )
    assert response.status_code == 422
    assert response.json()["code"] == code
