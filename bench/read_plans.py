"""The plan of every statement a villager's seven opening reads send, and the village's
ranking (a year's top 50, a quarter's with its months), on a built county.

Builds a county as bench/read_mix.py does (`--villages`, `--households`, `--months`), then sends
each read once through the app in this process, records every statement it sends, through
SQLAlchemy or straight to the driver, and prints `EXPLAIN (ANALYZE)` of each (the principal's
one statement is explained apart). A statement sent straight to the driver is prepared once per
connection and runs a generic plan (parameters unknown to the planner; the read pool forces
it, app/db.py): its plan is shown as that generic plan, from a named prepared statement. A scan of a
whole table in these plans is a read that grows with the county rather than the village.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/read_plans.py
"""

import argparse
import asyncio
import os
import re
from typing import Any

import httpx
from read_mix import API, NOW, SEVEN, build  # bench/ is on sys.path when a script runs
from sqlalchemy import event
from throwaway import throwaway_database

from app import clock
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.main import create_app
from app.security import _PRINCIPAL, decode_token

EXPLAIN = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "


def literal(value: Any) -> str:
    """A parameter as SQL text for EXECUTE of a named prepared statement, which gives it the
    type the statement's parameter has."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        elements = ",".join('"' + str(v).replace('"', '\\"') + '"' for v in value)
        return literal("{" + elements + "}")
    return "'" + str(value).replace("'", "''") + "'"


async def explain_generic(driver: Any, statement: str, params: Any) -> list[str]:
    """The generic plan the driver's prepared statement settles on, run with these values."""
    await driver.execute("SET plan_cache_mode = force_generic_plan")
    await driver.execute(f"PREPARE planned AS {statement}")
    try:
        values = ", ".join(literal(v) for v in params)
        return [line for (line,) in await driver.fetch(f"{EXPLAIN}EXECUTE planned({values})")]
    finally:
        await driver.execute("DEALLOCATE planned")
        await driver.execute("RESET plan_cache_mode")


async def explain(url: str, args: argparse.Namespace) -> None:
    people = await build(url, args.villages, args.households, args.months, args.villages)
    person = people[0]
    clock.set_now(NOW)
    settings = get_settings()
    app = create_app(settings)
    engine = create_engine(url, pool_size=1)
    # (statement, parameters, sent straight to the driver)
    sent: list[tuple[str, Any, bool]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        sent.append((statement, params, False))

    def record_raw(query: Any) -> None:
        # SQLAlchemy's own statements run as prepared statements, which the driver does not
        # log; what it logs is what the app sent it directly (every such statement takes
        # parameters), the driver's introspection of types it meets for the first time (with
        # JIT off around it), and this script's EXPLAINs.
        own = query.query.startswith("EXPLAIN") or any(
            mark in query.query for mark in ("typeinfo_tree", "set_config('jit'")
        )
        if query.args and query.query != _PRINCIPAL and not own:
            sent.append((query.query, query.args, True))

    @event.listens_for(engine.sync_engine, "connect")
    def log_raw(dbapi_connection: Any, entry: Any) -> None:
        entry.driver_connection.add_query_logger(record_raw)

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
        town_id = await driver.fetchval(
            "SELECT town_id FROM village WHERE id = $1", person.village_id
        )
        reads = {
            **person.reads(),
            "ranking, year": f"{API}/villages/{person.village_id}/rankings?span=year&limit=50",
            "ranking, quarter": f"{API}/villages/{person.village_id}/rankings"
            "?span=quarter&number=1&limit=50",
            "ranking, town": f"{API}/towns/{town_id}/rankings?span=quarter&number=1",
        }
        for read in (*SEVEN, "ranking, year", "ranking, quarter", "ranking, town"):
            path = reads[read]
            sent.clear()
            response = await client.get(path, headers=headers)
            await asyncio.sleep(0)  # the driver hands its log records over on the next turn
            shown = re.sub(r"[0-9a-f-]{36}", "{id}", path)
            print(
                f"\n######## {read}: GET {shown} -> {response.status_code}, "
                f"{len(response.content):,} bytes, {len(sent)} statements besides the principal"
            )
            for statement, params, raw in list(sent):
                print("--", " ".join(statement.split())[:160])
                if raw:
                    lines = await explain_generic(driver, statement, params)
                else:
                    lines = [line for (line,) in await driver.fetch(EXPLAIN + statement, *params)]
                for line in lines:
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
