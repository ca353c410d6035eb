"""Every staff page and form, who may use it, and what the others get: the web's counterpart
of tests/authz/test_matrix.py (whose routes are the API's), over the same worlds.

A page added without a row here fails `test_every_web_route_has_a_row`."""

import re
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.config import Settings
from app.models import (
    LoginAttempt,
    LoginSession,
    Objection,
    ObjectionStatus,
    Person,
    Role,
    Scorecard,
    ScoringPeriod,
    ShopItem,
    ShopOrder,
)
from app.security import ACCESS, decode_token, encode_token, hash_password
from app.web.pages import router
from app.web.session import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, WEB
from tests.authz.test_matrix import ROLES, VILLAGER, World, build_world

DA, TS, VA = Role.DISTRICT_ADMIN.value, Role.TOWN_SUPERVISOR.value, Role.VILLAGE_ADMIN.value
SL, SC, SA = Role.SCORING_LEADER.value, Role.SCORER.value, Role.SHOP_ATTENDANT.value
STAFF = {DA, TS, VA, SL, SC, SA}
CSRF = "c" * 43

# (method, path) -> roles served (district admins pass every gate).
PAGES: dict[tuple[str, str], set[str]] = {
    ("GET", "/web/"): STAFF,
    ("GET", "/web/villages/{village_id}/scoring"): {VA, SL, SC},
    ("GET", "/web/periods/{period_id}/worklist"): {VA, SL, SC},
    ("GET", "/web/villages/{village_id}/claims"): {SL, SC},
    ("GET", "/web/shops/{shop_id}/counter"): {VA, SA},
    ("GET", "/web/villages/{village_id}/admin"): {VA},
    ("GET", "/web/shops/{shop_id}/stock"): {VA},
    ("GET", "/web/towns/{town_id}"): {TS},
    ("GET", "/web/villages/{village_id}/overview"): {TS, VA},
}
# Forms: the role gate only (what they do is the browser tests' business).
FORMS: dict[tuple[str, str], set[str]] = {
    ("POST", "/web/logout"): STAFF,
    ("GET", "/web/periods/{period_id}/households/{household_id}"): {VA, SL, SC},
    ("POST", "/web/periods/{period_id}/households/{household_id}"): {VA, SL, SC},
    ("POST", "/web/villages/{village_id}/photos"): {VA, SL, SC},
    ("GET", "/web/photos/{photo_id}"): STAFF,
    ("POST", "/web/claims/{claim_id}/review"): {SL, SC},
    ("POST", "/web/shops/{shop_id}/scan"): {VA, SA},
    ("POST", "/web/shops/{shop_id}/redeem"): {VA, SA},
    ("POST", "/web/shops/{shop_id}/collect"): {VA, SA},
    ("POST", "/web/villages/{village_id}/periods"): {VA},
    ("POST", "/web/periods/{period_id}/{action}"): {VA},
    ("GET", "/web/periods/{period_id}/results"): STAFF,
    ("POST", "/web/shop-items/{item_id}/stock"): {VA},
    ("POST", "/web/objections/{objection_id}/ruling"): {VA},
}
OPEN = {("GET", "/web/login"), ("POST", "/web/login")}


def _path(world: World, template: str) -> str:
    return template.replace("{action}", "submit").format(
        **{**world.__dict__, "item_id": world.shop_item_id}
    )


def _cookies(settings: Settings, world: World, role: str) -> dict[str, str]:
    """The web session cookie for the world's caller in `role`, on the login the API gave it."""
    access = world.headers[role]["Authorization"].removeprefix("Bearer ")
    claims = decode_token(settings, access, kind=ACCESS)
    token, _ = encode_token(
        settings, subject=claims["sub"], kind=WEB, ttl=timedelta(hours=1), sid=claims["sid"]
    )
    return {SESSION_COOKIE: token, CSRF_COOKIE: CSRF}


async def _call(
    client: httpx.AsyncClient, settings: Settings, method: str, path: str, cookies: dict[str, str]
) -> httpx.Response:
    client.cookies.clear()
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    data = {CSRF_FIELD: CSRF} if method == "POST" else None
    return await client.request(method, path, headers={"Cookie": header}, data=data)


def _served(role: str, allowed: set[str]) -> bool:
    return role == DA or role in allowed


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    return await build_world(db, settings)


def test_every_web_route_has_a_row(app: FastAPI) -> None:
    routes = {
        (method, route.path)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert routes == set(PAGES) | set(FORMS) | OPEN
    assert all(not path.startswith("/web") for path in app.openapi()["paths"])


@pytest.mark.parametrize(("method", "template"), sorted({**PAGES, **FORMS}))
async def test_without_a_session_the_sign_in_page(
    client: httpx.AsyncClient, settings: Settings, world: World, method: str, template: str
) -> None:
    response = await _call(client, settings, method, _path(world, template), {CSRF_COOKIE: CSRF})
    assert response.status_code == 303
    assert response.headers["location"] == "/web/login"


@pytest.mark.parametrize(("method", "template"), sorted({**PAGES, **FORMS}))
async def test_roles_outside_the_row_are_403(
    client: httpx.AsyncClient, settings: Settings, world: World, method: str, template: str
) -> None:
    allowed = {**PAGES, **FORMS}[(method, template)]
    for role in ROLES:
        if _served(role, allowed):
            continue
        response = await _call(
            client, settings, method, _path(world, template), _cookies(settings, world, role)
        )
        assert response.status_code == 403, role
        expected = "web.staff_only" if role == VILLAGER else "auth.forbidden"
        assert f'data-code="{expected}"' in response.text, role


@pytest.mark.parametrize(("method", "template"), sorted(PAGES))
async def test_allowed_roles_are_served_in_scope_and_404_outside(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    world: World,
    method: str,
    template: str,
) -> None:
    other = await build_world(db, settings)
    for role in sorted(PAGES[(method, template)] | {DA}):
        cookies = _cookies(settings, world, role)
        response = await _call(client, settings, method, _path(world, template), cookies)
        assert response.status_code == 200, (role, response.text[:500])
        assert response.headers["x-frame-options"] == "DENY"
        if template == "/web/" or role == DA:
            continue
        response = await _call(client, settings, method, _path(other, template), cookies)
        assert response.status_code == 404, role


async def test_a_form_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, world: World
) -> None:
    cookies = _cookies(settings, world, VA)
    sessions = select(func.count()).where(col(LoginSession.revoked_at).is_not(None))
    before = (await db.execute(sessions)).scalar_one()
    for sent in ({}, {CSRF_FIELD: "not-the-cookie"}):
        client.cookies.clear()
        header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        response = await client.post("/web/logout", headers={"Cookie": header}, data=sent)
        assert response.status_code == 403
        assert 'data-code="web.csrf_invalid"' in response.text
    assert (await db.execute(sessions)).scalar_one() == before


async def _post(
    client: httpx.AsyncClient, cookies: dict[str, str], path: str, data: dict[str, str]
) -> httpx.Response:
    client.cookies.clear()
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return await client.post(path, headers={"Cookie": header}, data={CSRF_FIELD: CSRF, **data})


async def test_a_wrong_password_shows_the_sign_in_page_and_is_counted(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await _post(
        client, {CSRF_COOKIE: CSRF}, "/web/login", {"username": "nobody", "password": "x"}
    )
    assert response.status_code == 401
    assert 'data-code="auth.bad_credentials"' in response.text
    assert SESSION_COOKIE not in response.cookies
    attempts = select(func.count()).where(
        col(LoginAttempt.username) == "nobody", col(LoginAttempt.succeeded).is_(False)
    )
    assert (await db.execute(attempts)).scalar_one() == 1


@pytest.mark.parametrize(
    ("role", "template", "data", "code"),
    [
        (SC, "/web/periods/{period_id}/households/{household_id}", {}, "web.card_invalid"),
        (SA, "/web/shops/{shop_id}/redeem", {"code": "x"}, "web.redemption_invalid"),
        (VA, "/web/shop-items/{item_id}/stock", {"kind": "restock", "delta": "-2", "reason": "x"},
         "web.stock_change_invalid"),
        (VA, "/web/villages/{village_id}/periods", {"starts_on": "not a day"}, "request.invalid"),
        (VA, "/web/objections/{objection_id}/ruling", {"decision": "dismiss", "reason": " "},
         "web.ruling_invalid"),
        (VA, "/web/objections/{objection_id}/ruling", {"decision": "annul", "reason": "x"},
         "web.ruling_invalid"),
    ],
)  # fmt: skip
async def test_bad_forms_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    world: World,
    role: str,
    template: str,
    data: dict[str, str],
    code: str,
) -> None:
    if template.endswith("/households/{household_id}"):
        item = f"outcome-{world.item_id}"
        data = {item: "excellent"}
    tables = (Scorecard, ScoringPeriod, ShopOrder, Objection)
    before = [(await db.execute(select(func.count()).select_from(t))).scalar_one() for t in tables]
    stock = select(col(ShopItem.stock)).where(col(ShopItem.id) == world.shop_item_id)
    stock_before = (await db.execute(stock)).scalar_one()
    response = await _post(client, _cookies(settings, world, role), _path(world, template), data)
    assert response.status_code == 422, response.text[:500]
    assert f'data-code="{code}"' in response.text
    after = [(await db.execute(select(func.count()).select_from(t))).scalar_one() for t in tables]
    assert after == before
    assert (await db.execute(stock)).scalar_one() == stock_before
    objection = await db.get(Objection, world.objection_id, populate_existing=True)
    assert objection is not None
    assert objection.status is ObjectionStatus.OPEN


async def test_a_villager_with_a_password_gets_no_web_session(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    person = await db.get(Person, world.person_id)
    assert person is not None
    person.username, person.password_hash = "villager-web", hash_password("a-password")
    await db.flush()
    sessions = select(func.count()).where(col(LoginSession.person_id) == person.id)
    before = (await db.execute(sessions)).scalar_one()
    response = await _post(
        client,
        {CSRF_COOKIE: CSRF},
        "/web/login",
        {"username": "villager-web", "password": "a-password"},
    )
    assert response.status_code == 403
    assert 'data-code="web.staff_only"' in response.text
    assert SESSION_COOKIE not in response.cookies
    assert (await db.execute(sessions)).scalar_one() == before


async def test_the_ruling_form_rules_in_scope_only_and_with_the_csrf_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, world: World
) -> None:
    """Another village's admin does not find the objection; a post without the CSRF token is
    refused; the village's admin dismisses it as the API's ruling does, reason kept."""
    other = await build_world(db, settings)
    path = f"/web/objections/{world.objection_id}/ruling"
    ruling = {"decision": "dismiss", "reason": "经核实评分无误"}

    async def status() -> ObjectionStatus:
        objection = await db.get(Objection, world.objection_id, populate_existing=True)
        assert objection is not None
        return objection.status

    response = await _post(client, _cookies(settings, other, VA), path, ruling)
    assert response.status_code == 404
    assert 'data-code="objection.not_found"' in response.text
    assert await status() is ObjectionStatus.OPEN

    cookies = _cookies(settings, world, VA)
    client.cookies.clear()
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    response = await client.post(path, headers={"Cookie": header}, data=ruling)
    assert response.status_code == 403
    assert 'data-code="web.csrf_invalid"' in response.text
    assert await status() is ObjectionStatus.OPEN

    response = await _post(client, cookies, path, ruling)
    assert response.status_code == 303
    assert response.headers["location"] == f"/web/villages/{world.village_id}/admin#objections"
    objection = await db.get(Objection, world.objection_id, populate_existing=True)
    assert objection is not None
    assert objection.status is ObjectionStatus.DISMISSED
    assert objection.ruling_reason == "经核实评分无误"
    assert objection.escalation_closes_on is not None


async def test_the_town_console_counts_the_objections_waiting(
    client: httpx.AsyncClient, settings: Settings, world: World
) -> None:
    """The world's open objection is its village's one waiting on the console; dismissed on
    the admin's page, none."""
    cookies = _cookies(settings, world, TS)

    async def waiting() -> int:
        response = await _call(client, settings, "GET", f"/web/towns/{world.town_id}", cookies)
        assert response.status_code == 200
        row = re.search(
            rf'data-village="{world.village_id}".*?<td class="objections">(\d+)</td>',
            response.text,
            re.DOTALL,
        )
        assert row is not None
        return int(row.group(1))

    assert await waiting() == 1
    ruling = {"decision": "dismiss", "reason": "经核实评分无误"}
    path = f"/web/objections/{world.objection_id}/ruling"
    response = await _post(client, _cookies(settings, world, VA), path, ruling)
    assert response.status_code == 303
    assert await waiting() == 0
