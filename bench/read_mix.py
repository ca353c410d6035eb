"""A villager opening the phone: the reads it makes, against the ceiling of this stack, on a
county of a few villages and on one ten times larger.

Builds two throwaway databases (`--villages` and 10× as many villages, `--households` each,
`--months` published months of a 21-item rule set, a shop of 20 items per village, `--villagers`
villagers logged in, spread over the villages), then starts, each pinned to the server CPU:

- the ceiling: bench/ceiling.py, FastAPI answering `select 1` from a pooled asyncpg connection;
- the real `village-points serve`, one worker, on the small and on the large database,

and drives each in turn with wrk (pinned to the other CPU, `--connections` connections, one
thread), `--rounds` rounds interleaved, each run `--seconds` long. Each villager's requests
are real paths with their own token:

- `five`: GET /me, the rules in force, the ledger's first page, the balance, the shop's items;
- `seven`: those and the household's standing and the latest period's results (the whole
  village's publication list; their rank computation is being replaced under #12).

Then each read alone once, and the five at half the measured load for its p99: the same 32
connections, each idle between requests for an exponentially distributed time (wrk's delay()).
With `--profile DIR`, last, py-spy records the server under the five and the seven (apart from
the measured runs) and bench/spy_layers.py prints where its time went.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/read_mix.py
    ... bench/read_mix.py --villages 4 --households 1000 --months 12 --rounds 3 --seconds 10

Needs wrk (Debian: `apt-get install wrk`) and taskset. Uses the embedded PostgreSQL in a
temporary folder unless DATABASE_URL names a server.
"""

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import spy_layers
import wrkcpu
from approval import YEAR, build_village, logged_in_head  # bench/ is on sys.path when a script runs
from redemption import wait_ready
from sqlalchemy import insert, text
from throwaway import throwaway_database

from app import clock
from app.db import create_engine, create_sessionmaker
from app.models import (
    Person,
    Role,
    Shop,
    ShopItem,
    Town,
)
from app.security import Grant, Principal
from app.services import periods

API = "/api/v1"
BENCH = Path(__file__).parent
# The moment the server and the builder live at: after the months built, within their year.
NOW = datetime(YEAR, 12, 20, 2, 0, tzinfo=UTC)
SERVER_CPU, LOAD_CPU = "0", "1"

LUA = """
local requests = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local path, token = line:match("^(%S+) (%S+)$")
    requests[#requests + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
  end
  i = math.random(#requests)
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""
# The same requests, each connection pausing before each request for an exponentially
# distributed time of mean args[2] ms: as many phones, each reading, then idle a while.
PACED_LUA = (
    LUA
    + """
local pause = 0
local base_init = init
init = function(args)
  base_init(args)
  pause = tonumber(args[2])
end
delay = function()
  return -math.log(1 - math.random()) * pause
end
"""
)


@dataclass
class Villager:
    token: str
    village_id: uuid.UUID
    household_id: uuid.UUID
    shop_id: uuid.UUID
    period_id: uuid.UUID

    def reads(self) -> dict[str, str]:
        return {
            "me": f"{API}/me",
            "rules": f"{API}/villages/{self.village_id}/rules",
            "ledger": f"{API}/households/{self.household_id}/ledger",
            "balance": f"{API}/households/{self.household_id}/balance",
            "shop items": f"{API}/shops/{self.shop_id}/items",
            "standing": f"{API}/households/{self.household_id}/standing",
            "results": f"{API}/periods/{self.period_id}/results",
        }


FIVE = ("me", "rules", "ledger", "balance", "shop items")
SEVEN = (*FIVE, "standing", "results")


async def add_month(session, first_period: uuid.UUID, number: int) -> uuid.UUID:
    """Another month of the village's period, its cards copied from the first one's."""
    period_id = uuid.uuid4()
    after = date(YEAR, number + 1, 1) if number < 12 else date(YEAR + 1, 1, 1)
    await session.execute(
        text(
            "INSERT INTO scoring_period (id, village_id, town_id, rule_set_id, year, kind,"
            " number, starts_on, ends_on, status)"
            " SELECT :new, village_id, town_id, rule_set_id, year, kind, :number, :starts,"
            " :ends, status FROM scoring_period WHERE id = :old"
        ),
        {
            "new": period_id,
            "old": first_period,
            "number": number,
            "starts": date(YEAR, number, 1),
            "ends": after - timedelta(days=1),
        },
    )
    await session.execute(
        text(
            "WITH m AS (SELECT id AS old_id, gen_random_uuid() AS new_id, household_id,"
            " village_id, scorer_id, note, revision, created_at FROM scorecard"
            " WHERE period_id = :old),"
            " c AS (INSERT INTO scorecard (id, period_id, household_id, village_id, scorer_id,"
            " note, revision, created_at) SELECT new_id, :new, household_id, village_id,"
            " scorer_id, note, revision, created_at FROM m)"
            " INSERT INTO scorecard_line (id, scorecard_id, village_id, rule_item_id, outcome,"
            " points, note, photos) SELECT gen_random_uuid(), m.new_id, l.village_id,"
            " l.rule_item_id, l.outcome, l.points, l.note, l.photos"
            " FROM scorecard_line l JOIN m ON m.old_id = l.scorecard_id"
        ),
        {"new": period_id, "old": first_period},
    )
    return period_id


async def build(url: str, villages: int, households: int, months: int, villagers: int):
    """The county; returns its logged-in villagers."""
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    admin = Principal(
        person_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        grants=(Grant(Role.DISTRICT_ADMIN, None, None),),
    )
    town_id = uuid.uuid4()
    # Per village: its households, its shop and its latest published period.
    built: list[tuple[uuid.UUID, list[uuid.UUID], uuid.UUID, uuid.UUID]] = []
    with clock.frozen(NOW):
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(Town).values(id=town_id, name="基准镇"))
            await session.execute(insert(Person).values(id=admin.person_id, name="管理员"))
        for v in range(villages):
            async with sessionmaker() as session, session.begin():
                # The builder's month 3, then copies of it for the year's other months.
                village_id, first = await build_village(session, town_id, f"村{v:02d}", households)
                numbers = [n for n in range(1, 13) if n != 3][: months - 1]
                period_ids = [first, *[await add_month(session, first, n) for n in numbers]]
                shop_id = uuid.uuid4()
                await session.execute(
                    insert(Shop).values(
                        id=shop_id, town_id=town_id, village_id=village_id,
                        served_village_ids=[village_id], name="积分超市",
                    )
                )  # fmt: skip
                await session.execute(
                    insert(ShopItem),
                    [
                        {"id": uuid.uuid4(), "shop_id": shop_id, "town_id": town_id,
                         "name": f"商品{i:02d}", "category": f"类{i % 4}",
                         "price_points": 5 + 10 * i, "stock": 1000, "active": True}
                        for i in range(20)
                    ],
                )  # fmt: skip
            for period_id in period_ids:
                async with sessionmaker() as session, session.begin():
                    await periods.approve(session, admin, period_id)
                    await periods.publish(session, admin, period_id)
            async with sessionmaker() as session:
                homes = list(
                    (
                        await session.execute(
                            text("SELECT id FROM household WHERE village_id = :v ORDER BY number"),
                            {"v": village_id},
                        )
                    ).scalars()
                )
            built.append((village_id, homes, shop_id, period_ids[-1]))
            print(f"  village {v + 1}/{villages} built", end="\r", flush=True)
        people: list[Villager] = []
        async with sessionmaker() as session, session.begin():
            for n in range(villagers):
                village_id, homes, shop_id, period_id = built[n % villages]
                household_id = homes[(n // villages) % len(homes)]
                token = await logged_in_head(session, village_id, household_id, f"村民{n}")
                people.append(Villager(token, village_id, household_id, shop_id, period_id))
        async with sessionmaker() as session, session.begin():
            await session.execute(text("ANALYZE"))
            entries = (await session.execute(text("SELECT count(*) FROM ledger_entry"))).scalar()
    await engine.dispose()
    print(
        f"\n  {villages} villages × {households} households × {months} months: {entries:,} entries"
    )
    return people


def start(command: list[str], url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "CLOCK_NOW": NOW.isoformat()}
    return subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *command], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@dataclass
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User and system CPU time the server process has used so far: unlike its rate, what
        one request costs it hardly moves with what else the machine runs."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def running(command: list[str], url: str, port: int) -> AsyncIterator[Server]:
    # taskset execs the command: the process started is the server (one worker: no children).
    server = start(command, url)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base) if "app.cli" in command else await wait_up(base)
        yield Server(base, server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


async def wait_up(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=1) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/select1")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the ceiling app did not start")


@dataclass
class Run:
    rate: float
    p50: float
    p99: float
    requests: int
    errors: int
    # The server's CPU milliseconds per request, when measured.
    cpu_ms: float = float("nan")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(figure: str) -> float:
    """wrk's latency figure; nan when no request finished (it prints -nan then)."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", figure)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def wrk(
    server: Server,
    connections: int,
    seconds: float,
    requests_file: Path | None,
    pause_ms: float | None = None,
) -> Run:
    """A closed loop: each connection sends its next request as the last one is answered, or
    with `pause_ms`, after an idle time of that mean."""
    url = server.base if requests_file is not None else f"{server.base}/select1"
    cpu_before = server.cpu_seconds()
    command = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s"]
    command += ["--latency", "--timeout", "10s"]
    if requests_file is not None and pause_ms is not None:
        script = requests_file.with_suffix(".paced.lua")
        script.write_text(PACED_LUA)
        command += ["-s", str(script), url, "--", str(requests_file), f"{pause_ms:.3f}"]
    elif requests_file is not None:
        command += ["-s", str(requests_file.with_suffix(".lua")), url, "--", str(requests_file)]
    else:
        command.append(url)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Run(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50=_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        p99=_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        requests=(requests := int(re.search(r"(\d+) requests in", out).group(1))),  # type: ignore[union-attr]
        errors=errors,
        cpu_ms=cpu * 1000 / max(requests, 1),
    )


def requests_file(folder: Path, name: str, people: list[Villager], reads: tuple[str, ...]) -> Path:
    """Each villager's reads in the order the phone makes them, villagers shuffled."""
    order = list(people)
    random.Random(7).shuffle(order)
    path = folder / f"{name}.txt"
    path.write_text(
        "".join(f"{person.reads()[r]} {person.token}\n" for person in order for r in reads)
    )
    path.with_suffix(".lua").write_text(LUA)
    return path


@dataclass
class Table:
    rows: dict[str, list[Run]] = field(default_factory=dict)

    def add(self, name: str, run: Run) -> None:
        self.rows.setdefault(name, []).append(run)
        print(
            f"  {name:28s} {run.rate:8.1f} req/s  p50 {run.p50:7.1f} ms  p99 {run.p99:7.1f} ms"
            f"  cpu {run.cpu_ms:5.2f} ms/req  errors {run.errors}",
            flush=True,
        )

    def mean(self, name: str) -> float:
        return sum(r.rate for r in self.rows[name]) / len(self.rows[name])

    def mean_cpu(self, name: str) -> float:
        return sum(r.cpu_ms for r in self.rows[name]) / len(self.rows[name])


async def measure(small: str, large: str, people: dict[str, list[Villager]], args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vp-read-mix-"))
    files = {
        (db, mix): requests_file(folder, f"{db}-{mix}", people[db], reads)
        for db in ("small", "large")
        for mix, reads in (("five", FIVE), ("seven", SEVEN))
    }
    serve = [sys.executable, "-m", "app.cli", "serve", "--workers", "1", "--port"]
    ports = [args.port + i for i in range(3)]
    ceiling_cmd = [sys.executable, str(BENCH / "ceiling.py"), "--port", str(ports[0])]
    table = Table()
    async with (
        running(ceiling_cmd, small, ports[0]) as ceiling,
        running([*serve, str(ports[1])], small, ports[1]) as on_small,
        running([*serve, str(ports[2])], large, ports[2]) as on_large,
    ):
        # Each statement prepared on each pooled connection before anything counts.
        for db, server in (("small", on_small), ("large", on_large)):
            wrk(server, args.connections, 3, files[(db, "seven")])
        wrk(ceiling, args.connections, 3, None)
        for r in range(args.rounds):
            print(f"round {r + 1}", flush=True)
            table.add(
                "select 1 (ceiling)",
                wrk(ceiling, args.connections, args.seconds, None),
            )
            for mix in ("five", "seven"):
                for db, server in (("small", on_small), ("large", on_large)):
                    name = f"{mix}, {db}"
                    table.add(name, wrk(server, args.connections, args.seconds, files[(db, mix)]))
        ceiling_rate = table.mean("select 1 (ceiling)")
        ceiling_cpu = table.mean_cpu("select 1 (ceiling)")
        print(
            f"\nmeans over {args.rounds} rounds; ceiling {ceiling_rate:.0f} req/s,"
            f" {ceiling_cpu:.3f} CPU ms/req"
        )
        for mix in ("five", "seven"):
            s, g = table.mean(f"{mix}, small"), table.mean(f"{mix}, large")
            print(
                f"  {mix}: small {s:.0f} req/s = {s / ceiling_rate:.2f}× ceiling, "
                f"large {g:.0f} req/s = {g / ceiling_rate:.2f}× ceiling, "
                f"large/small {g / s:.3f}; CPU per request: small"
                f" {ceiling_cpu / table.mean_cpu(f'{mix}, small'):.2f}× ceiling's,"
                f" large {ceiling_cpu / table.mean_cpu(f'{mix}, large'):.2f}×"
            )
        print(
            "\neach read alone (large database), cost in select-1 requests, by rate and by the"
            " server's CPU time:"
        )
        for read in SEVEN:
            path = requests_file(
                folder, f"alone-{read.replace(' ', '-')}", people["large"], (read,)
            )
            run = wrk(on_large, args.connections, max(3, args.seconds // 2), path)
            print(
                f"  {read:12s} {run.rate:8.1f} req/s  {ceiling_rate / run.rate:6.1f}×"
                f"  cpu {run.cpu_ms:5.2f} ms/req {run.cpu_ms / ceiling_cpu:6.1f}×"
                f"  p99 {run.p99:6.1f} ms  errors {run.errors}",
                flush=True,
            )
        half = table.mean("five, large") / 2
        # Each of the connections idles between its requests long enough that together they
        # offer half the rate measured: the server is busy half the time.
        run = wrk(
            on_large, args.connections, args.seconds * 2, files[("large", "five")],
            pause_ms=args.connections / half * 1000,
        )  # fmt: skip
        print(
            f"\nfive at half load ({half:.0f} req/s offered by {args.connections} paced"
            f" connections, large database): {run.rate:.0f} req/s, p50 {run.p50:.1f} ms,"
            f" p99 {run.p99:.1f} ms, errors {run.errors}"
        )
        if args.profile:
            for mix in ("five", "seven"):
                # Apart from the measured runs: the sampler slows the process it samples.
                profile = Path(args.profile) / f"{mix}-large.txt"
                spy = wrkcpu.py_spy(on_large.pid, args.seconds, profile)
                wrk(on_large, args.connections, args.seconds, files[("large", mix)])
                spy.wait()
                print("\n" + spy_layers.summary(profile))


async def main_async(args: argparse.Namespace) -> None:
    async with throwaway_database() as small, throwaway_database() as large:
        people = {}
        for db, url, villages in (
            ("small", small, args.villages),
            ("large", large, args.villages * 10),
        ):
            started = time.perf_counter()
            print(f"building the {db} county", flush=True)
            people[db] = await build(url, villages, args.households, args.months, args.villagers)
            print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
        await measure(small, large, people, args)


def main() -> None:
    # Tokens are minted while the counties are built, minutes before the last run uses them.
    os.environ.setdefault("ACCESS_TOKEN_MINUTES", "240")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--villages", type=int, default=4, help="the small county; large is 10×")
    parser.add_argument("--households", type=int, default=200)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--villagers", type=int, default=400, help="logged in, per county")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8160)
    parser.add_argument(
        "--profile", help="a folder: py-spy records the five and the seven there, summarised"
    )
    args = parser.parse_args()
    # A stopped run still drops its databases and stops its servers (the finally blocks).
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
