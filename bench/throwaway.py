"""A migrated database that exists for one benchmark run, on the server in DATABASE_URL or on
an embedded PostgreSQL in a temporary folder, and is dropped afterwards."""

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.database_server import start_embedded
from app.db import async_url, create_engine
from app.migrate import upgrade_on


@asynccontextmanager
async def throwaway_database() -> AsyncIterator[str]:
    """Yields the new database's URL."""
    server_url = os.environ.get("DATABASE_URL")
    holder = None
    if not server_url:
        folder = Path(tempfile.mkdtemp(prefix="vp-bench-"))
        holder, server_url = start_embedded(folder / "pgdata", "postgres")
    name = f"vp_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(
        async_url(server_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(async_url(server_url)).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_on)
        await engine.dispose()
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
        del holder
