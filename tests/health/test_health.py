from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import AsyncAdaptedQueuePool

from app.config import Settings
from app.db import get_session
from app.main import create_app
from app.models import LoginMethod
from app.services.auth import start_login
from tests import factories
from tests.conftest import database_of_its_own


async def test_healthz_answers_without_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reaches_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "route.not_found"
    assert body["title"]


async def test_the_served_app_keeps_the_configured_pool(settings: Settings) -> None:
    """DATABASE_POOL_SIZE is how many connections each API process keeps open."""
    configured = settings.model_copy(
        update={"database_pool_size": 3, "notify_worker_in_app": False}
    )
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        pool = app.state.engine.pool
        assert isinstance(pool, AsyncAdaptedQueuePool)
        assert pool.size() == 3
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/readyz")).status_code == 200


async def _session_for(
    app: FastAPI, method: str
) -> tuple[AsyncSession, AsyncIterator[AsyncSession]]:
    request = Request({"type": "http", "method": method, "app": app, "headers": []})
    dependency = get_session(request)
    return await anext(dependency), dependency


async def _transaction_times(session: AsyncSession) -> int:
    first = (await session.execute(text("SELECT now()"))).scalar()
    await session.execute(text("SELECT pg_sleep(0.01)"))
    second = (await session.execute(text("SELECT now()"))).scalar()
    return len({first, second})


async def test_gets_read_outside_a_transaction_on_connections_that_refuse_writes(
    settings: Settings,
) -> None:
    """A GET pays no BEGIN and COMMIT, and PostgreSQL itself refuses it a write; other methods
    keep their one transaction per request."""
    app = create_app(settings.model_copy(update={"notify_worker_in_app": False}))
    async with app.router.lifespan_context(app):
        session, dependency = await _session_for(app, "GET")
        assert (await session.execute(text("SHOW transaction_read_only"))).scalar() == "on"
        # now() is when the transaction began: each statement is one of its own.
        assert await _transaction_times(session) == 2
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await session.execute(text("CREATE TEMPORARY TABLE refused (n int)"))
        await dependency.aclose()

        session, dependency = await _session_for(app, "POST")
        assert (await session.execute(text("SHOW transaction_read_only"))).scalar() == "off"
        assert await _transaction_times(session) == 1
        await dependency.aclose()


async def test_a_villager_reads_through_the_read_pools_and_logs_out_through_the_other(
    settings: Settings, database_url: str
) -> None:
    """The served app end to end, on committed data: the GET answers from the read-only pool,
    the logout (a write) commits through the other, and the next GET sees it."""
    async with database_of_its_own(database_url, "vp_reads") as url:
        app = create_app(
            settings.model_copy(update={"notify_worker_in_app": False}), database_url=url
        )
        async with app.router.lifespan_context(app):
            async with app.state.sessionmaker() as db, db.begin():
                village = await factories.create_village(db)
                person = await factories.create_person(db, village)
                household = await factories.create_household(db, village)
                await factories.add_member(db, household, person, is_head=True)
                tokens = await start_login(db, settings, person.id, LoginMethod.PASSWORD)
            headers = {"Authorization": f"Bearer {tokens.access_token}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                periods = await client.get(
                    f"/api/v1/villages/{village.id}/periods", headers=headers
                )
                assert periods.status_code == 200
                assert periods.json() == []
                assert app.state.read_engine.pool.checkedin() == 1
                me = await client.get("/api/v1/me", headers=headers)
                assert me.status_code == 200
                assert me.json()["person"]["id"] == str(person.id)
                # A hot read (one statement on asyncpg's own read pool): the caller is read
                # there too, and the village has no rules yet.
                rules = await client.get(f"/api/v1/villages/{village.id}/rules", headers=headers)
                assert rules.status_code == 404
                assert rules.json()["code"] == "rules.none_in_force"
                assert app.state.read_pool.get_size() == 1
                assert (
                    await client.post("/api/v1/auth/logout", headers=headers)
                ).status_code == 204
                after = await client.get("/api/v1/me", headers=headers)
                assert after.status_code == 401
                assert after.json()["code"] == "auth.session_revoked"
