"""Prometheus metrics of the API and the jobs, and the middleware that counts and logs requests.

Metrics go through prometheus-client. With several worker processes each one counts for
itself; PROMETHEUS_MULTIPROC_DIR, set before the first import of prometheus_client (the `serve`
command sets it for --workers above 1), makes every process write its counts there and
`/metrics` add them all up, whichever worker answers.
"""

import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import ACCESS_LOGGER, request_id_var
from app.models.notifications import Notification, NotificationStatus

_ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_POOL = Gauge(
    "db_pool_connections",
    "Database connections of the API processes' pools, by state",
    ["state"],
    multiprocess_mode="livesum",
)
NOTIFICATION_OUTCOMES = Counter(
    "notification_deliveries_total",
    "WeChat subscribe-message delivery attempts, by outcome",
    ["outcome"],
)
JOB_RUNS = Counter("job_runs_total", "Runs of the operator's jobs, by outcome", ["job", "outcome"])
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "How long a job ran",
    ["job"],
    buckets=(0.1, 1, 5, 15, 60, 300, 900, 3600),
)
JOB_LAST_SUCCESS = Gauge(
    "job_last_success_timestamp_seconds",
    "When a job last finished without error (Unix time)",
    ["job"],
    multiprocess_mode="max",
)


def notification_outcome(status: NotificationStatus) -> None:
    # A message put back in the queue will be tried again.
    outcome = "retry" if status is NotificationStatus.QUEUED else status.value
    NOTIFICATION_OUTCOMES.labels(outcome).inc()


@contextmanager
def job_run(job: str) -> Iterator[None]:
    """Count a run of `job` (ok or failed) and how long it took."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        JOB_RUNS.labels(job, "failed").inc()
        raise
    finally:
        JOB_DURATION.labels(job).observe(time.monotonic() - started)
    JOB_RUNS.labels(job, "ok").inc()
    JOB_LAST_SUCCESS.labels(job).set(time.time())


def route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label values), or "unmatched"."""
    # FastAPI keeps the full template of a route inside included routers (prefixes and all)
    # in its own part of the scope; the route itself knows only its router's part.
    context = scope.get("fastapi", {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if template is None:
        template = getattr(scope.get("route"), "path_format", None)
    return str(template) if template else "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _ACCEPTED_REQUEST_ID.match(text):
                return text
            break
    return _new_request_ids.next()


class _RequestIds:
    """32 hex digits like a uuid4's, unique without asking the kernel for randomness on every
    request: a random half per process (drawn again in a forked child), then a count."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix, self._count = (
                os.getpid(),
                secrets.token_hex(8),
                itertools.count(),
            )
        return f"{self._prefix}{next(self._count):016x}"


_new_request_ids = _RequestIds()


access_log = logging.getLogger(ACCESS_LOGGER)


class RequestTelemetry:
    """Outermost middleware: a request id (the caller's X-Request-ID when sane, else a new one)
    echoed on the response and in every log line of the request, a count and a duration per
    route template, and one log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._gauges_due = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(duration)
            # Every worker keeps its own share of the gauge current, not only the one scraped;
            # to the second is current enough for a scrape every few seconds, and reading the
            # pools on every request was a few percent of a cheap one.
            if started >= self._gauges_due:
                self._gauges_due = started + 1.0
                _pool_gauges(scope["app"])
            if access_log.isEnabledFor(logging.INFO):
                principal_id = scope.get("state", {}).get("principal_id")
                # Made and handled here rather than by access_log.info, which looks up its
                # caller's file and line in the stack for a line that never shows them.
                record = access_log.makeRecord(
                    ACCESS_LOGGER,
                    logging.INFO,
                    __file__,
                    0,
                    "%s %s %s",
                    (method, route, status),
                    None,
                    extra={
                        "route": route,
                        "method": method,
                        "status": status,
                        "duration_ms": round(duration * 1000, 1),
                        "principal_id": str(principal_id) if principal_id else None,
                    },
                )
                access_log.handle(record)
            request_id_var.reset(token)


class _OutboxCollector(Collector):
    """Queued notifications by status, read from the database at scrape time (every process
    sees the same outbox, so it is not added up across workers)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "notification_outbox_messages",
            "Notifications in the outbox, by status",
            labels=["status"],
        )
        for status in NotificationStatus:
            family.add_metric([status.value], self.counts.get(status.value, 0))
        yield family


def _pool_gauges(app: FastAPI) -> None:
    # The pool of the writes' engine and that of the reads' (GET requests), added up.
    pools = [
        engine.pool
        for engine in (getattr(app.state, "engine", None), getattr(app.state, "read_engine", None))
        if engine is not None
    ]
    # Behind PgBouncer there is no pool of ours: PgBouncer's own statistics tell.
    queues = [pool for pool in pools if isinstance(pool, QueuePool)]
    if not queues:
        return
    DB_POOL.labels("checked_out").set(sum(pool.checkedout() for pool in queues))
    DB_POOL.labels("idle").set(sum(pool.checkedin() for pool in queues))
    DB_POOL.labels("size").set(sum(pool.size() for pool in queues))


async def metrics(app: FastAPI) -> Response:
    _pool_gauges(app)
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(col(Notification.status), func.count()).group_by(col(Notification.status))
        )
        counts = {str(getattr(status, "value", status)): n for status, n in rows.all()}
    processes: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
    outbox = CollectorRegistry()
    outbox.register(_OutboxCollector(counts))
    return Response(
        generate_latest(processes) + generate_latest(outbox), media_type=CONTENT_TYPE_LATEST
    )


def mark_process_dead() -> None:
    """Drop this process's live gauges from the shared folder when it stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
