"""The staff web in a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright, against the app served by uvicorn on loopback over a demo database of its own."""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app import clock
from app.db import create_engine
from app.demo import seed_demo
from app.timeutil import SHANGHAI
from tests.conftest import ROOT, database_of_its_own

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# A Monday in June: the demo's April and May are published, June is still to be opened.
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=SHANGHAI)
SECRET = "web-browser-tests-jwt-secret-0123456789abcdef"
# Where the README's screenshots are written when asked for (WEB_SCREENSHOTS=1).
SCREENS = ROOT / "docs" / "screens"


def _browser_missing() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (uv sync)"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    return CHROMIUM


@dataclass
class WebServer:
    base_url: str
    database_url: str
    engine: AsyncEngine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _until_healthy(server: subprocess.Popen[bytes], base: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                pytest.fail("the web server exited at start")
            await asyncio.sleep(0.1)
    pytest.fail("the web server did not answer within a minute")


@pytest.fixture(scope="session")
async def web_server(
    chromium_path: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WebServer]:
    async with database_of_its_own(database_url, "vp_web") as url:
        clock.set_now(NOW)
        try:
            await seed_demo(url)
        finally:
            clock.set_now(None)
        engine = create_engine(url, pool_size=2)
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "ENVIRONMENT": "test",
            "CLOCK_NOW": NOW.isoformat(),
            "JWT_SECRET": SECRET,
            "NOTIFY_WORKER_IN_APP": "false",
            "PHOTO_DIR": str(tmp_path_factory.mktemp("web-photos")),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            await _until_healthy(server, base)
            yield WebServer(base, url, engine)
        finally:
            server.terminate()
            server.wait(10)
            await engine.dispose()


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path)
        yield browser
        await browser.close()
