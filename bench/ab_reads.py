"""Two checkouts of this repository served side by side on one county, the phone's reads
alternated between them: what a change costs or saves a read, in the API process's CPU per
request, which moves far less than its rate with whatever else the machine runs.

    .venv/bin/python bench/ab_reads.py ../before . --rounds 6 --seconds 6          # the five
    .venv/bin/python bench/ab_reads.py ../before . --reads "shop items"

A is the first folder, B the second (`git worktree add ../before <commit>`); both run with this
checkout's virtualenv. The county is bench/read_mix.py's (4 villages × 100 households × 3
months, 400 villagers logged in) in a throwaway PostgreSQL; each server is pinned to CPU 0 and
wrk to CPU 1, A and B taking turns first.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

from read_mix import FIVE, SEVEN, Server, build, requests_file, start, wrk
from redemption import wait_ready
from throwaway import throwaway_database


async def main_async(args: argparse.Namespace) -> None:
    async with throwaway_database() as url:
        people = await build(url, 4, 100, 3, 400)
        reads = {"five": FIVE, "seven": SEVEN}.get(args.reads, (args.reads,))
        path = requests_file(Path(tempfile.mkdtemp(prefix="vp-ab-")), "ab", people, reads)
        servers: dict[str, Server] = {}
        processes = []
        try:
            for name, folder, port in (("A", args.a, args.port), ("B", args.b, args.port + 1)):
                serve = f"serve --workers 1 --port {port}"
                command = f"cd {folder.resolve()} && exec {sys.executable} -m app.cli {serve}"
                processes.append(start(["bash", "-c", command], url))
                base = f"http://127.0.0.1:{port}"
                await wait_ready(base)
                servers[name] = Server(base, processes[-1].pid)
            for server in servers.values():
                wrk(server, 32, 3, path)  # every statement prepared first
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            for r in range(args.rounds):
                for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    run = wrk(servers[name], 32, args.seconds, path)
                    cpu[name].append(run.cpu_ms)
                    print(
                        f"  {name} {run.rate:8.1f} req/s  cpu {run.cpu_ms:.3f} ms/req"
                        f"  errors {run.errors}",
                        flush=True,
                    )
            for name, figures in cpu.items():
                print(f"{name}: median CPU {sorted(figures)[len(figures) // 2]:.3f} ms/req")
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def main() -> None:
    os.environ.setdefault("ACCESS_TOKEN_MINUTES", "240")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--reads", default="five", help="five, seven, or one read's name")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--port", type=int, default=8301)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
