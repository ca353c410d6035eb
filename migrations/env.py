import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import app.models  # noqa: F401  (registers every table)
from app.config import get_settings
from app.database_server import resolve_database_url
from app.db import async_url, metadata, pgbouncer_connect_args

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


# Any constant will do; it only has to be the same in every process that migrates.
MIGRATION_LOCK = 0x56505F4D


def run_with_connection(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        # Several replicas starting at once each run `serve`, which migrates: one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    server = None
    if not url:
        url, server = resolve_database_url(get_settings())
    connect_args = pgbouncer_connect_args() if get_settings().database_pgbouncer else {}
    engine = create_async_engine(async_url(url), poolclass=NullPool, connect_args=connect_args)
    async with engine.connect() as connection:
        await connection.run_sync(run_with_connection)
    await engine.dispose()
    del server


# The test suite and `serve` hand over a live connection so migrations run inside their loop.
connection = config.attributes.get("connection")
if connection is not None:
    run_with_connection(connection)
else:
    asyncio.run(run_online())
