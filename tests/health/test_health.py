import httpx
from sqlalchemy.pool import AsyncAdaptedQueuePool

from app.config import Settings
from app.main import create_app


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
