"""Console entry point: `village-points serve|migrate|openapi|demo`."""

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from app.config import Settings, get_settings
from app.database_server import resolve_database_url


def _prepare_database(settings: Settings) -> tuple[str, Any]:
    from app import migrate

    url, server = resolve_database_url(settings)
    migrate.upgrade(url)
    return url, server


def _seed_demo(url: str) -> None:
    from app.demo import seed_demo

    asyncio.run(seed_demo(url))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    url, server = _prepare_database(settings)
    # Worker processes build their settings from the environment, so hand them the choices.
    os.environ["DATABASE_URL"] = url
    fake = None
    if args.demo:
        from app.integrations.fake_wechat import FakeWechatServer

        fake = FakeWechatServer(
            settings.wechat_appid, settings.wechat_secret, port=args.wechat_port
        ).start()
        os.environ["WECHAT_API_BASE"] = fake.base_url
        _seed_demo(url)
        print(
            f"Fake WeChat server: {fake.base_url}  (POST /__fake/fail to inject failures)",
            flush=True,
        )
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
            log_level="info",
        )
    finally:
        if fake is not None:
            fake.stop()
        del server  # the embedded PostgreSQL stops when this process exits


def migrate_command(args: argparse.Namespace) -> None:
    _prepare_database(get_settings())
    print("database is at the latest migration")


def openapi_command(args: argparse.Namespace) -> None:
    from app.main import create_app

    spec = create_app(Settings(environment="dev")).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")


def demo_command(args: argparse.Namespace) -> None:
    url, _server = _prepare_database(get_settings())
    _seed_demo(url)


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

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
