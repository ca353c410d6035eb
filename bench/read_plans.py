"""The plan of every statement a villager's seven opening reads send, on a built county.

Builds a county as bench/read_mix.py does (`--villages`, `--households`, `--months`), then sends
each read once through the app in this process, records every statement SQLAlchemy sends, and
those app.driver sends straight to asyncpg, and prints `EXPLAIN (ANALYZE)` of each (the
principal's one statement goes straight to the driver and is explained apart). A scan of a
whole table in these plans is a read that grows with the county rather than the village.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/read_plans.py
"""

import argparse
import asyncio
import os
import re
from typing import Any

import httpx
from read_mix import NOW, SEVEN, build  # bench/ is on sys.path when a script runs
from sqlalchemy import event
from throwaway import throwaway_database

from app import clock
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.driver import DriverStatement
from app.main import create_app
from app.security import _PRINCIPAL, decode_token

EXPLAIN = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "


async def explain(url: str, args: argparse.Namespace) -> None:
    people = await build(url, args.villages, args.households, args.months, args.villages)
    person = people[0]
    clock.set_now(NOW)
    settings = get_settings()
    app = create_app(settings)
    engine = create_engine(url, pool_size=1)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        sent.append((statement, params))

    fetchrow = DriverStatement.fetchrow

    async def recorded_fetchrow(statement: DriverStatement, session: Any, **values: Any) -> Any:
        sent.append((statement.sql, statement._args(values)))
        return await fetchrow(statement, session, **values)

    DriverStatement.fetchrow = recorded_fetchrow  # type: ignore[method-assign]
    app.state.sessionmaker = create_sessionmaker(engine)
    headers = {"Authorization": f"Bearer {person.token}"}
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        engine.connect() as connection,
    ):
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        session_id = decode_token(settings, person.token, kind="access")["sid"]
        print("######## the principal (every authenticated request)")
        for (line,) in await driver.fetch(EXPLAIN + _PRINCIPAL, session_id):
            print("   ", line)
        for read in SEVEN:
            path = person.reads()[read]
            sent.clear()
            response = await client.get(path, headers=headers)
            shown = re.sub(r"[0-9a-f-]{36}", "{id}", path)
            print(
                f"\n######## {read}: GET {shown} -> {response.status_code}, "
                f"{len(response.content):,} bytes, {len(sent)} statements besides the principal"
            )
            for statement, params in sent:
                print("--", " ".join(statement.split())[:160])
                for (line,) in await driver.fetch(EXPLAIN + statement, *params):
                    print("   ", line)
    await engine.dispose()


async def main_async(args: argparse.Namespace) -> None:
    async with throwaway_database() as url:
        await explain(url, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--villages", type=int, default=40)
    parser.add_argument("--households", type=int, default=100)
    parser.add_argument("--months", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("ACCESS_TOKEN_MINUTES", "240")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
