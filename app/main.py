import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from app import clock, metrics
from app.body_limit import BodyLimit, Limit, route_limits
from app.conditional import ConditionalGet, declare_not_modified
from app.config import Settings, get_settings
from app.contract import declare_problem_responses
from app.db import PooledReads, SessionReads, create_engine, create_sessionmaker, open_read_pool
from app.errors import (
    PROBLEM_RESPONSES,
    install_error_handlers,
    problem_media_type,
    problem_response,
)
from app.idempotency import install_replay_handler
from app.routers import (
    activities,
    auth,
    awards,
    claims,
    households,
    ledger,
    notifications,
    objections,
    organisation,
    people,
    periods,
    photos,
    rankings,
    rules,
    scorecards,
    shop,
    supervision,
)
from app.routers.photos import MULTIPART_OVERHEAD
from app.routing import include_indexed
from app.security import AccessTokens, KnownCallers
from app.services import photos as photos_service
from app.services.household_import import MAX_FILE_BYTES
from app.services.notification_delivery import running_worker
from app.web import install_web

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> FastAPI:
    """Build the app; the lifespan opens the engine, the WeChat HTTP client and, unless
    NOTIFY_WORKER_IN_APP is false, a notification worker.

    Tests call this without running the lifespan and set `app.state` themselves.
    """
    settings = settings or get_settings()
    if settings.clock_now is not None:
        clock.set_now(settings.clock_now)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or settings.database_url
        engine = create_engine(
            url, pool_size=settings.database_pool_size, pgbouncer=settings.database_pgbouncer
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        # Behind PgBouncer's transaction pooling a connection's settings do not last, so
        # reads keep their transactions there.
        read_engine = None
        if not settings.database_pgbouncer:
            read_engine = create_engine(url, pool_size=settings.database_pool_size, read_only=True)
            app.state.read_engine = read_engine
            app.state.read_sessionmaker = create_sessionmaker(read_engine)
            app.state.read_pool = await open_read_pool(url, settings.database_pool_size)
            app.state.hot_reads = PooledReads(app.state.read_pool)
        async with httpx.AsyncClient(timeout=settings.wechat_timeout_seconds) as http:
            app.state.http = http
            try:
                async with AsyncExitStack() as background:
                    if settings.notify_worker_in_app:
                        await background.enter_async_context(
                            running_worker(app.state.sessionmaker, http, settings)
                        )
                    # Everything loaded so far (modules, models, routes) lives as long as the
                    # process: frozen, the collector stops scanning it, and a full collection no
                    # longer stalls every request in flight for a tenth of a second or more.
                    gc.collect()
                    gc.freeze()
                    yield
            finally:
                gc.unfreeze()
                await engine.dispose()
                if read_engine is not None:
                    app.state.hot_reads = SessionReads(app.state)
                    await read_engine.dispose()
                    await app.state.read_pool.close()
                metrics.mark_process_dead()

    app = FastAPI(
        title="Village Points API",
        version="1.0.0",
        summary="乡村治理积分制 backend for the WeChat mini-program and staff web.",
        lifespan=lifespan,
        # Metrics are Prometheus's (/metrics) and logs our JSON lines; FastAPI's own
        # OpenTelemetry would look its providers up in the environment on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.access_tokens = AccessTokens(settings)
    app.state.callers = KnownCallers()
    app.state.hot_reads = SessionReads(app.state)
    install_error_handlers(app)
    install_replay_handler(app)
    app.add_middleware(
        BodyLimit,
        limit_for=route_limits(
            API_PREFIX,
            settings.request_max_bytes,
            import_max_bytes=MAX_FILE_BYTES + MULTIPART_OVERHEAD,
            photo=Limit(
                settings.photo_max_bytes + MULTIPART_OVERHEAD,
                photos_service.TOO_LARGE_CODE,
                photos_service.TOO_LARGE_TITLE,
            ),
        ),
    )

    app.add_middleware(ConditionalGet, prefix=API_PREFIX)

    # Outermost, so that its count and log line include the body limit's refusals.
    app.add_middleware(metrics.RequestTelemetry)

    # Prometheus exposition, not part of the API; keep it off the public network.
    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return await metrics.metrics(app)

    @app.get("/healthz", tags=["health"], operation_id="healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        operation_id="readyz",
        responses={503: {"description": "Database unreachable"}},
        response_model=None,
    )
    async def readyz() -> dict[str, str] | JSONResponse:
        try:
            async with app.state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return problem_response(503, "database.unavailable", "数据库暂时不可用")
        return {"status": "ready"}

    include_indexed(
        app,
        (
            module.router
            for module in (
                *(auth, organisation, households, people, rules, ledger, periods, scorecards),
                *(notifications, photos, claims, objections, activities, shop, supervision),
                *(rankings, awards),
            )
        ),
        prefix=API_PREFIX,
        responses=PROBLEM_RESPONSES,
    )
    install_web(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = declare_problem_responses(app, FastAPI.openapi(app))
            spec = declare_not_modified(spec, API_PREFIX)
            app.openapi_schema = problem_media_type(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
