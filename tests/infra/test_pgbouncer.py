"""DATABASE_PGBOUNCER: the app through a real PgBouncer (Debian's package) in transaction mode,
where one client connection's transactions land on whichever server connection is free.

The fixture starts PgBouncer itself on a free loopback port in front of the test PostgreSQL.
Without the binary the test is skipped on a developer's machine and fails in CI (CI=true),
whose .ci/run installs it.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.db import create_engine, create_sessionmaker
from app.models import LedgerKind
from app.services import ledger
from tests import factories as f
from tests.conftest import database_of_its_own

CLIENTS = 12
SERVER_CONNECTIONS = 2


def pgbouncer_binary() -> str | None:
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def bouncer(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(host, port) of a PgBouncer in transaction mode in front of the test server."""
    binary = pgbouncer_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed; .ci/run installs Debian's pgbouncer package")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer); CI runs this test")
    server = make_url(server_url)
    # The embedded server listens on a socket in its data folder (?host=/path), the machine's
    # server on TCP.
    host = server.host or server.query.get("host") or "127.0.0.1"
    if isinstance(host, tuple):
        host = host[0]
    folder = tmp_path_factory.mktemp("pgbouncer")
    # PgBouncer refuses to run as root; it switches to a user who must read these (and reach
    # the server's socket: its owner, for the embedded server).
    folder.chmod(0o755)
    port = free_port()
    users = folder / "users.txt"
    users.write_text(f'"{server.username}" "{server.password or ""}"\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        f"""[databases]
* = host={host} port={server.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
server_reset_query = DISCARD ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits
"""
    )
    for path in (users, config):
        path.chmod(0o644)
    command = [binary, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", Path(host).owner() if host.startswith("/") else "postgres"]
    log = (folder / "pgbouncer.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pgbouncer did not start: {(folder / 'pgbouncer.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="module")
async def bounced_url(database_url: str, bouncer: tuple[str, int]) -> AsyncIterator[str]:
    async with database_of_its_own(database_url, "vp_bouncer") as url:
        host, port = bouncer
        through = make_url(url).difference_update_query(["host"]).set(host=host, port=port)
        yield through.render_as_string(hide_password=False)


async def test_the_app_runs_through_pgbouncer_in_transaction_mode(bounced_url: str) -> None:
    engine = create_engine(bounced_url, pgbouncer=True)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session, session.begin():
            village = await f.create_village(session)
            homes = [await f.create_household(session, village) for _ in range(CLIENTS)]

        async def client(home: object) -> None:
            # Many short transactions, each with parameters (prepared statements) and the
            # ledger's COPY, from more clients than PgBouncer has server connections.
            for points in (5, 7, -3):
                async with sessionmaker() as session, session.begin():
                    await ledger.post(
                        session,
                        village.id,
                        [
                            ledger.NewEntry(
                                household_id=home.id,  # type: ignore[attr-defined]
                                kind=LedgerKind.BONUS if points > 0 else LedgerKind.ADJUSTMENT,
                                points=points,
                                counts_score=True,
                                counts_balance=True,
                                year=2026,
                                source_type="test",
                            )
                        ],
                    )
                async with sessionmaker() as session:
                    households = await session.execute(
                        text("SELECT count(*) FROM household WHERE village_id = :v"),
                        {"v": village.id},
                    )
                    assert households.scalar_one() == CLIENTS

        await asyncio.gather(*(client(home) for home in homes))

        async with sessionmaker() as session:
            verification = await ledger.verify_village_chain(session, village.id)
            balances = (
                await session.execute(
                    text("SELECT sum(balance) FROM household_balance WHERE village_id = :v"),
                    {"v": village.id},
                )
            ).scalar_one()
        assert verification.ok, verification
        assert verification.entries_checked == CLIENTS * 3
        assert balances == CLIENTS * 9
    finally:
        await engine.dispose()


async def test_without_the_setting_statements_collide_behind_pgbouncer(bounced_url: str) -> None:
    """The setting is what makes the difference: asyncpg's own statement names clash on the
    server connections PgBouncer shares out."""
    engine = create_engine(bounced_url, pool_size=CLIENTS)
    try:

        async def client(n: int) -> None:
            async with engine.connect() as conn:
                for _ in range(5):
                    await conn.execute(text("SELECT :n::int + 1"), {"n": n})
                    await conn.commit()

        with pytest.raises(DBAPIError):
            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    finally:
        await engine.dispose()
