"""A counter redemption and an order ahead with its pickup, against the select-1 ceiling (#17).

    .venv/bin/python bench/redeem_ceiling.py                       # 3 rounds of 5 s
    .venv/bin/python bench/redeem_ceiling.py --rounds 1 --seconds 3 --port 8330

In a private PostgreSQL (a temporary folder, pinned to CPU 0 with the servers) it seeds
bench/redemption.py's shop: one village, one item with a million in stock, 2,000 households
with 100,000 points, 200 attendants logged in, and besides them 200 villagers (a household's
head each) logged in. Then bench/ceiling.py and `village-points serve --workers 1` run pinned
to CPU 0 and wrk (one thread, 32 connections) pinned to CPU 1 drives, in each round:

- the ceiling: GET /select1;
- counter redemptions: POST …/scans then POST …/counter-redemptions, each pay code fresh and
  signed with the server's key (sent in blocks of 64 scans then their 64 confirms, so a scan
  comes before its code is spent);
- orders ahead: POST /shops/{id}/orders by the villagers, for twice the round's seconds;
- pickups of those orders: POST …/scans then POST …/pickups on each order's pickup code.

A redemption's time is the sum of its requests' (counter: 2 / pair rate; order + pickup:
1 / order rate + 2 / pickup pair rate), and its ratio to the ceiling is the ceiling's time per
request over it (≥ 0.3 is the goal).

The floor: the ceiling app sending each of those requests' statement count (FLOOR: the caller's
included, BEGIN and COMMIT around them) as `SELECT 1`s in one transaction, GET /select1/{n}.
What the same requests would cost this stack if every statement were free in PostgreSQL and
every line of the app's own work were gone: no redemption of that many statements can be
cheaper here. Beside each rate: CPU per request of the API process and
of PostgreSQL. Afterwards the shop is checked (chain verifies, stock and balances agree).
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import wrkcpu  # bench/ is on sys.path when a script runs
from approval import logged_in_head
from redemption import check, seed, wait_ready
from sqlalchemy import text
from throwaway import throwaway_database

from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.services import shop_codes

API = "/api/v1"
BENCH = Path(__file__).parent
BLOCK = 64
# Statements per request (bench/README.md, "Statements per request"): a scan, a counter
# confirm; an order ahead, a pickup's scan, the pickup.
FLOOR = {"counter redemption": (2, 11), "order + pickup": (10, 4, 5)}


async def villagers(url: str, households: list[uuid.UUID], count: int) -> list[str]:
    """A head for each of the first `count` households, logged in: their tokens."""
    engine = create_engine(url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    tokens = []
    async with sessionmaker() as session, session.begin():
        village_id = (
            await session.execute(
                text("SELECT village_id FROM household WHERE id = :h"), {"h": households[0]}
            )
        ).scalar_one()
        for n, household_id in enumerate(households[:count]):
            tokens.append(await logged_in_head(session, village_id, household_id, f"村民{n}"))
    await engine.dispose()
    return tokens


def paired(
    codes: list[str], first: str, then: str, body_then: object, tokens: list[str]
) -> list[tuple[str, str, str, str]]:
    """Blocks of BLOCK `first` requests then the same codes' `then` requests."""
    lines = []
    for start in range(0, len(codes), BLOCK):
        block = codes[start : start + BLOCK]
        for n, code in enumerate(block):
            lines.append(("POST", first, tokens[(start + n) % len(tokens)], _json({"code": code})))
        for n, code in enumerate(block):
            body = {"code": code, **(body_then if isinstance(body_then, dict) else {})}
            lines.append(("POST", then, tokens[(start + n) % len(tokens)], _json(body)))
    return lines


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


async def reserved_orders(url: str, shop_id: uuid.UUID) -> list[uuid.UUID]:
    engine = create_engine(url, pool_size=1)
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                text(
                    "SELECT id FROM shop_order WHERE shop_id = :s AND status = 'reserved'"
                    " ORDER BY created_at"
                ),
                {"s": shop_id},
            )
        ).scalars()
        ids = list(found)
    await engine.dispose()
    return ids


def start(command: list[str], url: str, checkout: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url}
    if checkout is not None:
        # The other checkout's `app` package first: `-m` puts the working folder on the path.
        env["PYTHONPATH"] = checkout
    return subprocess.Popen(
        ["taskset", "-c", wrkcpu.SERVER_CPU, *command], env=env, cwd=checkout,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


async def measure(url: str, pg_pid: int, args: argparse.Namespace) -> bool:
    settings = get_settings()
    shop_id, item_id, households, attendants = await seed(url, 2000)
    heads = await villagers(url, households, 200)
    shop = f"{API}/shops/{shop_id}"
    line = {"lines": [{"item_id": str(item_id), "quantity": 1}]}
    folder = Path(tempfile.mkdtemp(prefix="vp-redeem-"))
    ceiling = start([sys.executable, str(BENCH / "ceiling.py"), "--port", str(args.port)], url)
    ceiling_url = f"http://127.0.0.1:{args.port}"
    # This checkout's server, and with --base another checkout's on the same database.
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    for n, (name, checkout) in enumerate((("ours", None), ("base", args.base))):
        if name == "base" and checkout is None:
            continue
        port = args.port + 1 + n
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        servers[name] = (start(command, url, checkout), f"http://127.0.0.1:{port}")
    rows: dict[str, list[wrkcpu.Run]] = {}
    try:
        for _, base in servers.values():
            await wait_ready(base)
        await asyncio.sleep(1)

        def run(name: str, url_: str, seconds: float, path: Path | None, app: int) -> None:
            profile = None
            if args.profile and app != ceiling.pid:
                profile = Path(args.profile) / f"{name.replace(' ', '-')}.txt"
            result = wrkcpu.wrk(url_, seconds, path, app=app, db=pg_pid, profile=profile)
            rows.setdefault(name, []).append(result)
            print(
                f"  {name:27s} {result.rate:8.1f} req/s  p99 {result.p99_ms:7.1f} ms  "
                f"app {result.app_ms:5.2f} + pg {result.db_ms:5.2f} ms/req  "
                f"errors {result.errors}"
            )

        for round_ in range(args.warmup + args.rounds):
            warm = round_ < args.warmup
            print(f"{'warm-up' if warm else 'round'} {round_ + 1 - (0 if warm else args.warmup)}")
            run("ceiling", f"{ceiling_url}/select1", args.seconds, None, ceiling.pid)
            for n in sorted({n for counts in FLOOR.values() for n in counts}):
                run(f"floor, {n} statements", f"{ceiling_url}/select1/{n}", args.seconds, None,
                    ceiling.pid)  # fmt: skip
            for side, (server, api) in servers.items():
                codes = [
                    shop_codes.pay_code(settings, shop_id, households[n % len(households)])[0]
                    for n in range(args.codes)
                ]
                counter = wrkcpu.requests_file(
                    folder, "counter",
                    paired(codes, f"{shop}/scans", f"{shop}/counter-redemptions", line,
                           attendants),
                )  # fmt: skip
                run(f"{side} counter scan+confirm", api, args.seconds, counter, server.pid)
                orders = wrkcpu.requests_file(
                    folder, "orders",
                    (("POST", f"{shop}/orders", heads[n % len(heads)], _json(line))
                     for n in range(args.codes)),
                )  # fmt: skip
                before = set(await reserved_orders(url, shop_id))
                run(f"{side} order ahead", api, 2 * args.seconds, orders, server.pid)
                placed = [o for o in await reserved_orders(url, shop_id) if o not in before]
                pickup_codes = [shop_codes.pickup_code(settings, shop_id, o) for o in placed]
                pickups = wrkcpu.requests_file(
                    folder, "pickups",
                    paired(pickup_codes, f"{shop}/scans", f"{shop}/pickups", {}, attendants),
                )  # fmt: skip
                run(f"{side} pickup scan+collect", api, args.seconds, pickups, server.pid)
            if warm:
                rows.clear()
    finally:
        for server, _ in servers.values():
            stop(server)
        stop(ceiling)

    def mean(name: str, attr: str) -> float:
        values = [getattr(r, attr) for r in rows[name]]
        # A run too short for any answer (a cold server) gives no rate, not a division error.
        return max(sum(values) / len(values), 1e-9)

    ceiling_rate = mean("ceiling", "rate")
    ceiling_cpu = mean("ceiling", "cpu_ms")
    print(
        f"\nmean of {args.rounds} rounds; ceiling {ceiling_rate:.0f} req/s, "
        f"{ceiling_cpu:.2f} ms CPU (app+pg) per request"
    )
    for name, counts in FLOOR.items():
        seconds = sum(1 / mean(f"floor, {n} statements", "rate") for n in counts)
        cpu = sum(mean(f"floor, {n} statements", "cpu_ms") for n in counts)
        print(
            f"  floor {name:19s} {1 / seconds:7.1f} redemptions/s = "
            f"{1 / seconds / ceiling_rate:.3f}× the ceiling; CPU {cpu:.2f} ms (app+pg) = "
            f"{cpu / ceiling_cpu:.1f} select-1 requests ({' + '.join(map(str, counts))}"
            " statements, each in a transaction)"
        )
    for side in servers:
        counter_s = 2 / mean(f"{side} counter scan+confirm", "rate")
        counter_cpu = 2 * mean(f"{side} counter scan+confirm", "cpu_ms")
        ahead_s = 1 / mean(f"{side} order ahead", "rate") + 2 / mean(
            f"{side} pickup scan+collect", "rate"
        )
        ahead_cpu = mean(f"{side} order ahead", "cpu_ms") + 2 * mean(
            f"{side} pickup scan+collect", "cpu_ms"
        )
        for name, seconds, cpu in (
            ("counter redemption", counter_s, counter_cpu),
            ("order + pickup", ahead_s, ahead_cpu),
        ):
            print(
                f"  {side} {name:20s} {1 / seconds:7.1f} redemptions/s = "
                f"{1 / seconds / ceiling_rate:.3f}× the ceiling; CPU {cpu:.2f} ms (app+pg) = "
                f"{cpu / ceiling_cpu:.1f} select-1 requests"
            )
    return await check(url, shop_id, item_id)


async def main_async(args: argparse.Namespace) -> bool:
    with wrkcpu.embedded_postgres() as (server_url, pg_pid):
        os.environ["DATABASE_URL"] = server_url
        async with throwaway_database() as url:
            return await measure(url, pg_pid, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="rounds first, not counted")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--codes", type=int, default=6000, help="requests prepared per run")
    parser.add_argument("--profile", help="a folder: py-spy records the API in each run there")
    parser.add_argument(
        "--base", help="another checkout (say /work/main) served beside, same rounds and data"
    )
    parser.add_argument(
        "--port", type=int, default=8330, help="the ceiling's; the API's +1, the base's +2"
    )
    args = parser.parse_args()
    if not asyncio.run(main_async(args)):
        sys.exit("the shop was left inconsistent: see 'afterwards' above")


if __name__ == "__main__":
    main()
