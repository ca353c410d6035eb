"""Redemption day at one shop: 200 attendants scanning pay codes and confirming goods, over
real HTTP against a real `village-points serve` process.

Each redemption is two requests, as at the counter: POST /shops/{id}/scans (who is this
household, may they redeem) then POST /shops/{id}/counter-redemptions (points and stock move
in one transaction). The pay codes are made with the server's key, as the phones would have
fetched them, each for its own household, so every redemption is a fresh code.

Two phases, after a warm-up (`--warmup` seconds of the open loop, reported apart):

1. open loop: redemptions start at a fixed rate (Poisson arrivals, `--rate` per second) spread
   over the 200 attendants, whether or not earlier ones have finished, for `--seconds`. This
   is a redemption day as it happens: 200 counters, each serving a villager every so often;
2. closed loop: all 200 attendants redeem back to back as fast as the server answers, for
   `--seconds`: the most the shop can take, and the latency when it is saturated.

For each phase it prints requests, errors, throughput, and p50/p99/max latency per request
kind. Afterwards it checks the ledger chain verifies and that stock and balances add up.

    python3 -m uv run python bench/redemption.py                  # 200 attendants, 20/s, 20 s
    python3 -m uv run python bench/redemption.py --rate 10 --seconds 60 --warmup 0
    python3 -m uv run python bench/redemption.py --rate 30 --seconds 30

Uses the embedded PostgreSQL in a temporary folder unless DATABASE_URL names a server (a
database is created on it and dropped afterwards). The load generator runs on the same
machine as the server and PostgreSQL, so they share its CPUs.
"""

import argparse
import asyncio
import gc
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import httpx
from sqlalchemy import insert, text
from throwaway import throwaway_database  # bench/ is on sys.path when a script runs

from app import clock
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.models import (
    Household,
    LedgerKind,
    LoginMethod,
    Participation,
    Person,
    Role,
    RoleGrant,
    RuleSet,
    RuleSetStatus,
    Shop,
    ShopItem,
    Town,
    Village,
)
from app.schemas.rules import Policy
from app.services import ledger, shop_codes
from app.services.auth import start_login

API = "/api/v1"
ATTENDANTS = 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def seed(
    url: str, households: int
) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID], list[str]]:
    """One village with its shop, an item with plenty of stock, households with points, and
    ATTENDANTS attendants logged in. Returns (shop, item, households, attendant tokens)."""
    settings = get_settings()
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    today = clock.today()
    town_id, village_id, shop_id, item_id = (uuid.uuid4() for _ in range(4))
    household_ids = [uuid.uuid4() for _ in range(households)]
    attendant_ids = [uuid.uuid4() for _ in range(ATTENDANTS)]
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(Town).values(id=town_id, name="基准镇"))
        await session.execute(insert(Village).values(id=village_id, town_id=town_id, name="基准村"))
        await session.execute(
            insert(RuleSet).values(
                id=uuid.uuid4(), village_id=village_id, town_id=town_id, year=today.year,
                version=1, status=RuleSetStatus.APPROVED, title="细则",
                effective_from=today.replace(month=1, day=1),
                policy=Policy().model_dump(mode="json"),
            )
        )  # fmt: skip
        await session.execute(
            insert(Shop).values(
                id=shop_id, town_id=town_id, village_id=village_id,
                served_village_ids=[village_id], name="积分超市",
            )
        )  # fmt: skip
        await session.execute(
            insert(ShopItem).values(
                id=item_id, shop_id=shop_id, town_id=town_id, name="洗衣液", category="清洁用品",
                price_points=5, stock=1_000_000, active=True,
            )
        )  # fmt: skip
        await session.execute(
            insert(Household),
            [
                {"id": h, "village_id": village_id, "number": f"B{n:05d}",
                 "participation": Participation.ACTIVE}
                for n, h in enumerate(household_ids)
            ],
        )  # fmt: skip
        await session.execute(
            insert(Person),
            [{"id": a, "name": f"管理员{n}", "village_id": village_id}
             for n, a in enumerate(attendant_ids)],
        )  # fmt: skip
        await session.execute(
            insert(RoleGrant),
            [{"id": uuid.uuid4(), "person_id": a, "role": Role.SHOP_ATTENDANT, "town_id": town_id,
              "village_id": village_id, "shop_id": shop_id, "village_group_ids": []}
             for a in attendant_ids],
        )  # fmt: skip
        await ledger.post(
            session,
            village_id,
            [
                ledger.NewEntry(
                    household_id=h, kind=LedgerKind.BONUS, points=100_000, counts_score=True,
                    counts_balance=True, year=today.year, source_type="bench",
                )
                for h in household_ids
            ],
        )  # fmt: skip
        tokens = [
            (await start_login(session, settings, a, LoginMethod.PASSWORD)).access_token
            for a in attendant_ids
        ]
    await engine.dispose()
    return shop_id, item_id, household_ids, tokens


def _problem(response: httpx.Response) -> str:
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    return f"{response.status_code} {code or response.text[:80]}"


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.redemptions = 0

    async def call(
        self, client: httpx.AsyncClient, kind: str, path: str, body: object, token: str
    ) -> bool:
        started = time.perf_counter()
        try:
            response = await client.post(
                path, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        else:
            error = "" if response.status_code < 300 else _problem(response)
        self.latencies[kind].append(time.perf_counter() - started)
        if error:
            self.errors[f"{kind}: {error}"] += 1
        return not error

    def report(self, title: str, elapsed: float) -> None:
        total = sum(len(v) for v in self.latencies.values())
        errors = sum(self.errors.values())
        print(f"\n{title}: {self.redemptions} redemptions in {elapsed:.1f} s")
        print(
            f"  requests {total}, errors {errors}, throughput {total / elapsed:.1f} req/s "
            f"({self.redemptions / elapsed:.1f} redemptions/s)"
        )
        for error, count in sorted(self.errors.items()):
            print(f"  error {error} × {count}")
        every = sorted(x for v in self.latencies.values() for x in v)
        for kind, values in [*sorted(self.latencies.items()), ("all requests", every)]:
            ordered = sorted(values)
            if not ordered:
                continue
            p50 = ordered[len(ordered) // 2] * 1000
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
            print(
                f"  {kind:22s} n={len(ordered):6d}  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                f"max {ordered[-1] * 1000:6.1f} ms"
            )


class Counter:
    def __init__(
        self, base: str, shop_id: uuid.UUID, item_id: uuid.UUID, households: list[uuid.UUID]
    ) -> None:
        self.settings = get_settings()
        self.shop_id, self.item_id = shop_id, item_id
        self.households = households
        self.next_household = 0
        self.client = httpx.AsyncClient(
            base_url=base,
            timeout=30,
            # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them
            # from its side, or a request sent as it does fails with a read error.
            limits=httpx.Limits(max_connections=ATTENDANTS, keepalive_expiry=2),
        )

    async def redeem(self, recorder: Recorder, token: str) -> None:
        household = self.households[self.next_household % len(self.households)]
        self.next_household += 1
        code, _ = shop_codes.pay_code(self.settings, self.shop_id, household)
        shop = f"{API}/shops/{self.shop_id}"
        if await recorder.call(self.client, "scan", f"{shop}/scans", {"code": code}, token):
            body = {"code": code, "lines": [{"item_id": str(self.item_id), "quantity": 1}]}
            if await recorder.call(
                self.client, "counter-redemption", f"{shop}/counter-redemptions", body, token
            ):
                recorder.redemptions += 1


async def open_loop(
    counter: Counter, tokens: list[str], rate: float, seconds: float, phase: str = "open loop"
) -> None:
    recorder = Recorder()
    tasks = []
    started = time.perf_counter()
    deadline = started + seconds
    at = started
    while at < deadline:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        tasks.append(asyncio.create_task(counter.redeem(recorder, random.choice(tokens))))
        at += random.expovariate(rate)
    await asyncio.gather(*tasks)
    recorder.report(
        f"{phase}, {rate:g} redemptions/s arriving over {len(tokens)} attendants",
        time.perf_counter() - started,
    )


async def ceiling_loop(base: str, clients: int, seconds: float) -> float:
    """bench/ceiling.py's `select 1` driven by the same closed loop: requests per second."""
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def one() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                if (await client.get("/select1")).status_code == 200:
                    done += 1

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.perf_counter() - started)


async def closed_loop(counter: Counter, tokens: list[str], seconds: float) -> float:
    recorder = Recorder()
    started = time.perf_counter()
    deadline = started + seconds

    async def attendant(token: str) -> None:
        while time.perf_counter() < deadline:
            await counter.redeem(recorder, token)

    await asyncio.gather(*(attendant(t) for t in tokens))
    elapsed = time.perf_counter() - started
    recorder.report(f"closed loop, {len(tokens)} attendants back to back", elapsed)
    return recorder.redemptions / elapsed


async def check(url: str, shop_id: uuid.UUID, item_id: uuid.UUID) -> bool:
    """Whether the run left the shop consistent: chain, stock and balances."""
    engine = create_engine(url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        village_id = (
            await session.execute(text("SELECT village_id FROM shop WHERE id = :s"), {"s": shop_id})
        ).scalar_one()
        verified = await ledger.verify_village_chain(session, village_id)
        sold = (
            await session.execute(
                text(
                    "SELECT coalesce(sum(l.quantity), 0) FROM shop_order_line l"
                    " JOIN shop_order o ON o.id = l.order_id WHERE o.shop_id = :s"
                ),
                {"s": shop_id},
            )
        ).scalar_one()
        stock = (
            await session.execute(text("SELECT stock FROM shop_item WHERE id = :i"), {"i": item_id})
        ).scalar_one()
        mismatched = (
            await session.execute(
                text(
                    "SELECT count(*) FROM household_balance b WHERE b.village_id = :v AND"
                    " b.balance <> (SELECT coalesce(sum(points), 0) FROM ledger_entry e"
                    " WHERE e.household_id = b.household_id AND e.counts_balance)"
                ),
                {"v": village_id},
            )
        ).scalar_one()
    await engine.dispose()
    print(
        f"\nafterwards: chain verified {verified.ok} ({verified.entries_checked} entries), "
        f"{sold} units sold, stock {stock} (1,000,000 - sold = {1_000_000 - sold}), "
        f"balances differing from their entries: {mismatched}"
    )
    return verified.ok and stock == 1_000_000 - sold and mismatched == 0


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url}
    command = [
        sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


async def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def run(url: str, args: argparse.Namespace) -> bool:
    shop_id, item_id, households, tokens = await seed(url, args.households)
    port = free_port()
    server = start_server(url, port, args.workers)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base)
        counter = Counter(base, shop_id, item_id, households)
        # The load generator's own full collections would count as the server's latency.
        gc.collect()
        gc.freeze()
        print(
            f"one shop, {len(tokens)} attendants, {len(households)} households; server: "
            f"`village-points serve --workers {args.workers}` on {base}"
        )
        if args.warmup:
            # A server just started opens its pool's connections and prepares each statement
            # on each of them as requests first need them; reported apart, as the opening
            # minutes of a redemption day, not the hours after.
            await open_loop(counter, tokens, args.rate, args.warmup, "warm-up")
        await open_loop(counter, tokens, args.rate, args.seconds)
        redemptions = await closed_loop(counter, tokens, args.seconds)
        await counter.client.aclose()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    if args.ceiling:
        await compare_with_ceiling(url, redemptions, args.seconds)
    return await check(url, shop_id, item_id)


async def compare_with_ceiling(url: str, redemptions: float, seconds: float) -> None:
    """The closed loop's redemptions against the ceiling's requests under the same loop, the
    API server stopped so the two do not share the CPUs."""
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "ceiling.py")
    ceiling = subprocess.Popen(
        [sys.executable, script, "--port", str(port)],
        env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base, timeout=1) as client:
            while True:
                try:
                    if (await client.get("/select1")).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.1)
        rate = await ceiling_loop(base, ATTENDANTS, seconds)
    finally:
        os.killpg(ceiling.pid, signal.SIGTERM)
        ceiling.wait(timeout=30)
    print(
        f"\nceiling (select 1, same closed loop of {ATTENDANTS}): {rate:.0f} req/s; a counter "
        f"redemption (scan + confirm) costs {rate / redemptions:.1f} select-1 requests: "
        f"{redemptions / rate:.3f}× the ceiling"
    )


async def with_database(args: argparse.Namespace) -> bool:
    async with throwaway_database() as url:
        return await run(url, args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20, help="open loop: redemptions per second")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds of open loop first, reported apart"
    )
    parser.add_argument("--households", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    parser.add_argument(
        "--ceiling", action="store_true", help="then bench/ceiling.py under the same closed loop"
    )
    args = parser.parse_args()
    if not asyncio.run(with_database(args)):
        sys.exit("the shop was left inconsistent: see 'afterwards' above")


if __name__ == "__main__":
    main()
