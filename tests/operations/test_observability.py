"""Metrics, request ids and logs: what an operator's dashboards and log search rely on."""

import io
import json
import logging
import logging.config
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.logs import JsonFormatter, logging_config, redact
from app.models import Notification, NotificationKind, NotificationStatus, Role
from tests import factories as f
from tests.conftest import TEST_SECRET

API = "/api/v1"


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", re.MULTILINE)
    found = pattern.search(metrics)
    return float(found.group(1)) if found else 0.0


async def test_metrics_count_requests_by_route_template_and_status(
    client: httpx.AsyncClient, db: AsyncSession, settings: object
) -> None:
    route = f"{API}/villages/{{village_id}}/households"
    before = (await client.get("/metrics")).text
    villages = [uuid.uuid4(), uuid.uuid4()]
    for village_id in villages:
        # Two different villages, one route: label values stay bounded.
        response = await client.get(f"{API}/villages/{village_id}/households")
        assert response.status_code == 401
    await client.get(f"{API}/no/such/route")
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    requests = {"method": "GET", "route": route, "status": "401"}
    assert sample(after, "http_requests_total", **requests) == (
        sample(before, "http_requests_total", **requests) + 2
    )
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert sample(after, "http_requests_total", **unmatched) == (
        sample(before, "http_requests_total", **unmatched) + 1
    )
    assert not any(str(village_id) in after for village_id in villages)
    latency = {"method": "GET", "route": route}
    assert sample(after, "http_request_duration_seconds_count", **latency) >= 2
    assert sample(after, "http_request_duration_seconds_bucket", le="+Inf", **latency) >= 2


async def test_metrics_show_the_outbox_backlog_and_the_pool(
    app_and_client: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, engine: AsyncEngine
) -> None:
    app, client = app_and_client
    village = await f.create_village(db)
    person = await f.create_person(db, village)
    before = sample(
        (await client.get("/metrics")).text, "notification_outbox_messages", status="queued"
    )
    for _ in range(3):
        db.add(
            Notification(
                person_id=person.id,
                village_id=village.id,
                openid=f"openid-{uuid.uuid4().hex}",
                kind=NotificationKind.CLAIM_DECIDED,
                data={},
                status=NotificationStatus.QUEUED,
            )
        )
    await db.flush()
    app.state.engine = engine
    try:
        metrics = (await client.get("/metrics")).text
    finally:
        del app.state.engine
    assert sample(metrics, "notification_outbox_messages", status="queued") == before + 3
    assert sample(metrics, "notification_outbox_messages", status="failed") == 0
    assert sample(metrics, "db_pool_connections", state="size") == 20
    assert "notification_deliveries_total" in metrics
    assert "job_runs_total" in metrics


async def test_a_request_id_is_accepted_or_made_and_echoed(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.42"})
    assert given.headers["X-Request-ID"] == "lb-7f3a.42"
    made = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    others = {(await client.get("/healthz")).headers["X-Request-ID"] for _ in range(100)}
    assert made.headers["X-Request-ID"] not in others
    assert len(others) == 100


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The production logging configuration, writing into a buffer; put back afterwards."""
    stream = io.StringIO()
    config = logging_config()
    config["handlers"]["stderr"]["stream"] = stream
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_levels = {name: logging.getLogger(name).level for name in config["loggers"]}
    logging.config.dictConfig(config)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


async def test_one_json_line_per_request_without_credentials(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: object,
    wechat: object,
    json_logs: io.StringIO,
) -> None:
    village = await f.create_village(db)
    person = await f.create_person(db, village, password="a-long-password-1")
    await f.grant(db, person, Role.VILLAGE_ADMIN, village=village)
    headers = await f.login_headers(db, settings, person)  # type: ignore[arg-type]
    token = headers["Authorization"].removeprefix("Bearer ")

    seen = await client.get(
        f"{API}/villages/{village.id}", headers={**headers, "X-Request-ID": "req-seen-1"}
    )
    assert seen.status_code == 200
    login = await client.post(
        f"{API}/auth/password/login",
        json={"username": person.username, "password": "a-long-password-1"},
        headers={"X-Request-ID": "req-login-1"},
    )
    assert login.status_code == 200
    # A WeChat login: the app calls code2Session with the app secret in the query string.
    wechat_code = f"openid-{uuid.uuid4().hex}#js-code-{uuid.uuid4().hex}"
    await client.post(f"{API}/auth/wechat/login", json={"code": wechat_code})

    text = json_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    by_id = {
        line.get("request_id"): line for line in lines if line["logger"] == "village_points.access"
    }
    assert by_id["req-seen-1"] | {"duration_ms": 0} == by_id["req-seen-1"] | {
        "route": f"{API}/villages/{{village_id}}",
        "method": "GET",
        "status": 200,
        "principal_id": str(person.id),
        "duration_ms": 0,
    }
    assert by_id["req-seen-1"]["duration_ms"] > 0
    assert by_id["req-login-1"]["principal_id"] is None
    for secret in (TEST_SECRET, token, login.json()["refresh_token"], "a-long-password-1"):
        assert secret not in text
    assert "js-code-" not in text
    assert "jscode2session" not in text


def test_secrets_in_messages_and_fields_are_redacted() -> None:
    url = (
        "HTTP Request: GET https://api.weixin.qq.com/sns/jscode2session?appid=wx1"
        f"&secret={TEST_SECRET}&js_code=0a1b2c&grant_type=authorization_code"
    )
    assert TEST_SECRET not in redact(url)
    assert "0a1b2c" not in redact(url)
    assert "appid=wx1" in redact(url)
    record = logging.makeLogRecord(
        {
            "name": "httpx",
            "msg": "%s",
            "args": (url,),
            "levelname": "INFO",
            "headers": {"Authorization": "Bearer eyJ.abc.def"},
            "body": {"session_key": "k3y==", "password": "hunter2-long"},
        }
    )
    line = JsonFormatter().format(record)
    for secret in (TEST_SECRET, "0a1b2c", "eyJ.abc.def", "k3y==", "hunter2-long"):
        assert secret not in line
    assert json.loads(line)["logger"] == "httpx"
