"""Our ranking top-50, a household's history and one redemption, side by side with the peer of
#17: a plain Node/Express + MySQL points shop with no authentication (bench/peer/server.js).

    .venv/bin/python bench/peer.py                          # 50 and 1,000 households, 3 × 5 s
    .venv/bin/python bench/peer.py --sizes 50 --rounds 1 --seconds 3 --port 8332

For each village size it builds, in a private PostgreSQL (temporary folder), one village with
bench/read_mix.py's builder (`--months` months approved and published, ranks stored), 200
villagers (a household's head each) and 20 attendants logged in, 100,000 balance-only points
per household and a million of each of the shop's 20 items; and it loads the same village into
a private MariaDB (mariadb-install-db in a temporary folder, its own socket and port): the
households with their balance, every ledger entry as a row of the peer's `points_log`, the
items. The peer's node_modules are installed with npm into a temporary folder.

Both servers and both databases run pinned to CPU 0, wrk (one thread, 32 connections) to
CPU 1. Per operation and size, interleaved for `--rounds`: requests per second, and CPU per
request of the server and of its database (utime + stime from /proc, bench/wrkcpu.py):

- ranking top-50: ours GET /villages/{id}/rankings?limit=50 (a villager's token); the peer's
  SELECT … ORDER BY points DESC LIMIT 50;
- history: ours GET /households/{id}/ledger?limit=50 (the household's own villager); the
  peer's SELECT … FROM points_log WHERE household_id = ? ORDER BY id DESC LIMIT 50;
- redemption: ours POST /shops/{id}/counter-redemptions on a fresh pay code (an attendant's
  token: the spend on the village's hash chain, stock, allowance, balance, the code's nonce);
  the peer's transaction (balance and stock read FOR UPDATE, both updated, order and log rows
  inserted). Ours also with its scan first, as at the counter (reported per redemption);
- select 1, each stack's floor: bench/ceiling.py (FastAPI, uvicorn, an asyncpg pool) on the
  same PostgreSQL as ours, and the peer's GET /select1 (Express, its mysql2 pool) on its
  MariaDB. What the stacks cost before any work, so each operation's ratio reads against the
  ratio of the floors.
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import wrkcpu  # bench/ is on sys.path when a script runs
from read_mix import NOW, build
from redemption import wait_ready
from sqlalchemy import insert, text
from throwaway import throwaway_database

from app import clock
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.models import LedgerKind, LoginMethod, Person, Role, RoleGrant
from app.services import ledger, shop_codes
from app.services.auth import start_login

API = "/api/v1"
BENCH = Path(__file__).parent
ATTENDANTS = 20
OPERATIONS = ("select 1", "ranking top-50", "history", "redemption", "scan + redemption")


class Village:
    """What both sides need to drive one village."""

    def __init__(self) -> None:
        self.village_id = uuid.uuid4()
        self.shop_id = uuid.uuid4()
        self.item_ids: list[uuid.UUID] = []
        self.households: list[uuid.UUID] = []
        self.villagers: list[tuple[str, uuid.UUID]] = []  # (token, own household)
        self.attendants: list[str] = []


async def build_ours(url: str, households: int, months: int) -> Village:
    settings = get_settings()
    people = await build(url, 1, households, months, min(households, 200))
    village = Village()
    village.village_id, village.shop_id = people[0].village_id, people[0].shop_id
    village.villagers = [(p.token, p.household_id) for p in people]
    engine = create_engine(url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    with clock.frozen(NOW):
        async with sessionmaker() as session, session.begin():
            town_id = (
                await session.execute(
                    text("SELECT town_id FROM village WHERE id = :v"), {"v": village.village_id}
                )
            ).scalar_one()
            await session.execute(
                text("UPDATE shop_item SET stock = 1000000 WHERE shop_id = :s"),
                {"s": village.shop_id},
            )
            village.item_ids = list(
                (
                    await session.execute(
                        text("SELECT id FROM shop_item WHERE shop_id = :s ORDER BY price_points"),
                        {"s": village.shop_id},
                    )
                ).scalars()
            )
            village.households = list(
                (
                    await session.execute(
                        text("SELECT id FROM household WHERE village_id = :v ORDER BY number"),
                        {"v": village.village_id},
                    )
                ).scalars()
            )
            # Balance-only points (ranks and scores unchanged), so no redemption runs short.
            await ledger.post(
                session,
                village.village_id,
                [
                    ledger.NewEntry(
                        household_id=h, kind=LedgerKind.BONUS, points=100_000, counts_score=False,
                        counts_balance=True, year=NOW.year, source_type="bench",
                    )
                    for h in village.households
                ],
            )  # fmt: skip
            for n in range(ATTENDANTS):
                person_id = uuid.uuid4()
                await session.execute(
                    insert(Person).values(
                        id=person_id, name=f"管理员{n}", village_id=village.village_id
                    )
                )
                await session.execute(
                    insert(RoleGrant).values(
                        id=uuid.uuid4(), person_id=person_id, role=Role.SHOP_ATTENDANT,
                        town_id=town_id, village_id=village.village_id, shop_id=village.shop_id,
                        village_group_ids=[],
                    )
                )  # fmt: skip
                pair = await start_login(session, settings, person_id, LoginMethod.PASSWORD)
                village.attendants.append(pair.access_token)
            await session.execute(text("ANALYZE"))
    await engine.dispose()
    return village


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


async def export_for_peer(url: str, village: Village, folder: Path) -> dict[str, Path]:
    """The village as the peer's tables hold it, one TSV file per table."""
    engine = create_engine(url, pool_size=1)
    files = {name: folder / f"{name}.tsv" for name in ("household", "item", "points_log")}
    queries = {
        "household": (
            "SELECT h.id, h.village_id, h.number, coalesce((SELECT p.name FROM household_member m"
            " JOIN person p ON p.id = m.person_id WHERE m.household_id = h.id LIMIT 1), h.number),"
            " coalesce(b.balance, 0) FROM household h"
            " LEFT JOIN household_balance b ON b.household_id = h.id WHERE h.village_id = :v"
        ),
        "item": "SELECT id, name, price_points, stock FROM shop_item WHERE shop_id = :s",
        "points_log": (
            "SELECT household_id, kind, points, coalesce(memo, item_title, ''),"
            " to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') FROM ledger_entry"
            " WHERE village_id = :v ORDER BY seq"
        ),
    }
    async with engine.connect() as conn:
        for name, query in queries.items():
            rows = await conn.execute(text(query), {"v": village.village_id, "s": village.shop_id})
            files[name].write_text("".join("\t".join(_tsv(v) for v in row) + "\n" for row in rows))
    await engine.dispose()
    return files


class MariaDB:
    """A private MariaDB in a temporary folder, on its own socket and port, pinned to CPU 0."""

    def __init__(self, port: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="vp-peer-mariadb-"))
        self.socket = str(self.folder / "sock")
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.folder / 'data'}",
             "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.process = subprocess.Popen(
            ["taskset", "-c", wrkcpu.SERVER_CPU, "mariadbd", "--no-defaults",
             f"--datadir={self.folder / 'data'}", f"--socket={self.socket}", f"--port={port}",
             "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
             "--innodb-buffer-pool-size=256M", "--max-connections=100", "--local-infile=1",
             f"--log-error={self.folder / 'error.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while self.sql("SELECT 1", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("MariaDB did not start")
            time.sleep(0.2)

    def sql(
        self, statement: str, database: str = "", *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mariadb", "--no-defaults", "-S", self.socket, "-uroot", "--local-infile=1",
             "-e", statement, *([database] if database else [])],
            check=check, capture_output=True, text=True,
        )  # fmt: skip

    def load(self, database: str, files: dict[str, Path]) -> None:
        self.sql(f"CREATE DATABASE {database}")
        schema = (BENCH / "peer" / "schema.sql").read_text()
        self.sql(schema, database)
        columns = {
            "household": "(id, village_id, number, head_name, points)",
            "item": "(id, name, price, stock)",
            "points_log": "(household_id, kind, points, memo, created_at)",
        }
        for name, path in files.items():
            self.sql(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {name} CHARACTER SET utf8mb4"
                f" {columns[name]}",
                database,
            )
        self.sql("ANALYZE TABLE household, item, points_log", database)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def peer_folder() -> Path:
    """The peer's code with its node_modules, installed with npm into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="vp-peer-node-"))
    for name in ("package.json", "server.js"):
        shutil.copy(BENCH / "peer" / name, folder / name)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    return folder


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", wrkcpu.SERVER_CPU, *command], env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _json(value: object) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def our_requests(village: Village, codes: int) -> dict[str, list[tuple[str, str, str, str]]]:
    settings = get_settings()
    shop = f"{API}/shops/{village.shop_id}"
    item = village.item_ids[0]
    body = {"lines": [{"item_id": str(item), "quantity": 1}]}
    homes, attendants = village.households, village.attendants
    pay = [
        shop_codes.pay_code(settings, village.shop_id, homes[n % len(homes)])[0]
        for n in range(2 * codes)
    ]
    pairs = []
    for start_ in range(0, codes, 64):
        block = pay[codes + start_ : codes + start_ + 64]
        pairs += [("POST", f"{shop}/scans", attendants[n % ATTENDANTS], _json({"code": c}))
                  for n, c in enumerate(block)]  # fmt: skip
        pairs += [("POST", f"{shop}/counter-redemptions", attendants[n % ATTENDANTS],
                   _json({"code": c, **body})) for n, c in enumerate(block)]  # fmt: skip
    return {
        # Sent to bench/ceiling.py, beside our server on the same database.
        "select 1": [("GET", "/select1", "-", "")],
        "ranking top-50": [
            ("GET", f"{API}/villages/{village.village_id}/rankings?limit=50", token, "")
            for token, _ in village.villagers
        ],
        "history": [
            ("GET", f"{API}/households/{home}/ledger?limit=50", token, "")
            for token, home in village.villagers
        ],
        "redemption": [
            (
                "POST",
                f"{shop}/counter-redemptions",
                attendants[n % ATTENDANTS],
                _json({"code": code, **body}),
            )
            for n, code in enumerate(pay[:codes])
        ],  # fmt: skip
        "scan + redemption": pairs,
    }


def peer_requests(village: Village, codes: int) -> dict[str, list[tuple[str, str, str, str]]]:
    homes = village.households
    item = village.item_ids[0]
    return {
        "select 1": [("GET", "/select1", "-", "")],
        "ranking top-50": [("GET", f"/villages/{village.village_id}/ranking", "-", "")],
        "history": [("GET", f"/households/{h}/history", "-", "") for h in homes],
        "redemption": [
            (
                "POST",
                "/redemptions",
                "-",
                _json(
                    {
                        "household_id": str(homes[n % len(homes)]),
                        "item_id": str(item),
                        "quantity": 1,
                    }
                ),
            )
            for n in range(codes)
        ],  # fmt: skip
    }


async def measure_size(
    households: int, args: argparse.Namespace, mariadb: MariaDB, node: Path, pg: tuple[str, int]
) -> dict[tuple[str, str], list[wrkcpu.Run]]:
    server_url, pg_pid = pg
    os.environ["DATABASE_URL"] = server_url
    results: dict[tuple[str, str], list[wrkcpu.Run]] = {}
    async with throwaway_database() as url:
        print(f"\n{households} households: building")
        village = await build_ours(url, households, args.months)
        folder = Path(tempfile.mkdtemp(prefix="vp-peer-"))
        database = f"peer_{households}"
        mariadb.load(database, await export_for_peer(url, village, folder))
        api_port, peer_port = args.port, args.port + 1
        # The server's clock and the pay codes' start at NOW together and tick on alike.
        clock.set_now(NOW)
        ours = start(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(api_port)],
            {"DATABASE_URL": url, "CLOCK_NOW": NOW.isoformat()},
        )
        peer = start(["node", str(node / "server.js"), str(peer_port), mariadb.socket, database])
        ceiling_port = args.port + 3
        ceiling = start(
            [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ceiling_port)],
            {"DATABASE_URL": url},
        )
        try:
            await wait_ready(f"http://127.0.0.1:{api_port}")
            await wait_http(f"http://127.0.0.1:{ceiling_port}/select1")
            await wait_http(f"http://127.0.0.1:{peer_port}/households/x/history")
            for round_ in range(args.warmup + args.rounds):
                warm = round_ < args.warmup
                print(f"  {'warm-up' if warm else 'round'} {round_ + 1}")
                files = {
                    ("ours", op): wrkcpu.requests_file(folder, f"ours-{n}", lines)
                    for n, (op, lines) in enumerate(our_requests(village, args.codes).items())
                }
                files |= {
                    ("peer", op): wrkcpu.requests_file(folder, f"peer-{n}", lines)
                    for n, (op, lines) in enumerate(peer_requests(village, args.codes).items())
                }
                for op in OPERATIONS:
                    ours_server = ceiling if op == "select 1" else ours
                    ours_port = ceiling_port if op == "select 1" else api_port
                    for side, port, app, db in (
                        ("peer", peer_port, peer.pid, mariadb.process.pid),
                        ("ours", ours_port, ours_server.pid, pg_pid),
                    ):
                        if (side, op) not in files:
                            continue
                        run = wrkcpu.wrk(
                            f"http://127.0.0.1:{port}", args.seconds, files[(side, op)],
                            app=app, db=db,
                        )  # fmt: skip
                        print(
                            f"    {side} {op:18s} {run.rate:8.1f} req/s  p99 {run.p99_ms:7.1f} ms"
                            f"  app {run.app_ms:5.2f} + db {run.db_ms:5.2f} = {run.cpu_ms:5.2f}"
                            f" ms/req  errors {run.errors}"
                        )
                        if not warm:
                            results.setdefault((side, op), []).append(run)
        finally:
            stop(ours)
            stop(peer)
            stop(ceiling)
            clock.set_now(None)
            shutil.rmtree(folder, ignore_errors=True)
        mariadb.sql(f"DROP DATABASE {database}")
    return results


def report(all_results: dict[int, dict[tuple[str, str], list[wrkcpu.Run]]]) -> None:
    def mean(runs: list[wrkcpu.Run], attr: str) -> float:
        return sum(getattr(r, attr) for r in runs) / len(runs)

    print(
        "\n| households | operation | ours req/s | peer req/s | ours CPU ms/req (app + db) "
        "| peer CPU ms/req (app + db) | ours / peer CPU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for size, results in all_results.items():
        for op in OPERATIONS:
            ours = results.get(("ours", op))
            if not ours:
                continue
            peer = results.get(("peer", "redemption" if op == "scan + redemption" else op))
            # A scan + redemption is two requests: per redemption, twice a request's figures.
            k = 2 if op == "scan + redemption" else 1
            o_cpu = k * mean(ours, "cpu_ms")
            o_text = f"{k * mean(ours, 'app_ms'):.2f} + {k * mean(ours, 'db_ms'):.2f} = {o_cpu:.2f}"
            o_rate = mean(ours, "rate") / k
            if peer:
                p_cpu = mean(peer, "cpu_ms")
                p_text = f"{mean(peer, 'app_ms'):.2f} + {mean(peer, 'db_ms'):.2f} = {p_cpu:.2f}"
                ratio = f"{o_cpu / p_cpu:.2f}×"
                p_rate = f"{mean(peer, 'rate'):.0f}"
            else:
                p_text, ratio, p_rate = "—", "—", "—"
            print(f"| {size:,} | {op} | {o_rate:.0f} | {p_rate} | {o_text} | {p_text} | {ratio} |")


async def main_async(args: argparse.Namespace) -> None:
    node = peer_folder()
    mariadb = MariaDB(args.port + 2)
    try:
        all_results = {}
        with wrkcpu.embedded_postgres() as pg:
            for size in args.sizes:
                all_results[size] = await measure_size(size, args, mariadb, node, pg)
        report(all_results)
    finally:
        mariadb.stop()
        shutil.rmtree(node, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 1000])
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="rounds first, not counted")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--codes", type=int, default=6000, help="redemptions prepared per run")
    parser.add_argument(
        "--port", type=int, default=8332, help="ours; the peer's is +1, MariaDB's +2"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
