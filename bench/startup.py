"""Startup time and memory of `village-points serve --demo` on its embedded PostgreSQL.

Runs the real console script in a temporary DATA_DIR (DATABASE_URL unset), first on a fresh
data folder, then on the same folder again, then (optionally) with several workers. For each
run it measures the time from launch to the first 200 of /healthz and of /readyz, the time to
the milestones the server prints, the memory of the API processes and of the embedded
PostgreSQL, and whether a signal stops both cleanly. Everything it starts, it stops.

    .venv/bin/python bench/startup.py [--workers 2] [--timeout 180] [--keep]
"""

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

MIB = 1024 * 1024
# Lines the server prints, in order, and the column they fill.
MILESTONES = {
    "Embedded PostgreSQL:": "pg up",
    "Demo data": "seeded",
    "Application startup complete": "app up",
}


@dataclass
class Memory:
    processes: int = 0
    rss: float = 0.0
    pss: float | None = 0.0

    def add(self, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self.processes += 1
            self.rss += proc.memory_info().rss / MIB
            try:
                pss = proc.memory_full_info().pss / MIB
            except (psutil.AccessDenied, AttributeError):
                self.pss = None
            else:
                if self.pss is not None:
                    self.pss += pss


@dataclass
class Run:
    name: str
    workers: int
    stop_signal: signal.Signals
    milestones: dict[str, float] = field(default_factory=dict)
    healthz: float | None = None
    readyz: float | None = None
    api: Memory = field(default_factory=Memory)
    postgres: Memory = field(default_factory=Memory)
    stop_seconds: float | None = None
    exit_code: int | None = None
    postgres_stopped: bool | None = None
    error: str | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def postmaster(data_dir: Path) -> psutil.Process | None:
    """The embedded server's main process, from its pid file (gone once it has stopped)."""
    try:
        pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return None


def village_points() -> str:
    local = Path(sys.executable).with_name("village-points")
    found = str(local) if local.exists() else shutil.which("village-points")
    if not found:
        sys.exit("village-points is not installed in this environment (uv sync first)")
    return found


def measure(run: Run, data_dir: Path, timeout: float) -> None:
    port, wechat_port = free_port(), free_port()
    env = {**os.environ, "DATA_DIR": str(data_dir), "ENVIRONMENT": "dev", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    command = [village_points(), "serve", "--demo", "--port", str(port)]
    command += ["--wechat-port", str(wechat_port), "--workers", str(run.workers)]
    output: list[str] = []
    started = time.perf_counter()
    # Its own session, so a Ctrl-C at this terminal reaches the bench only; and the working
    # directory is the data folder, so no project .env supplies a DATABASE_URL.
    proc = subprocess.Popen(
        command,
        cwd=data_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            for marker, column in MILESTONES.items():
                if marker in line and column not in run.milestones:
                    run.milestones[column] = time.perf_counter() - started

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pg: psutil.Process | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = started + timeout
        while (run.healthz is None or run.readyz is None) and time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode} before it was ready")
            if run.healthz is None and ok(f"{base}/healthz"):
                run.healthz = time.perf_counter() - started
            if run.readyz is None and ok(f"{base}/readyz"):
                run.readyz = time.perf_counter() - started
            time.sleep(0.02)
        if run.readyz is None:
            raise RuntimeError(f"not ready after {timeout:.0f} s")

        time.sleep(1.0)  # let the pools and the first requests settle
        server = psutil.Process(proc.pid)
        pg = postmaster(data_dir)
        for p in [server, *server.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() != "postgres":
                    run.api.add(p)
        if pg is not None:
            for p in [pg, *pg.children(recursive=True)]:
                run.postgres.add(p)

        stopping = time.perf_counter()
        proc.send_signal(run.stop_signal)
        run.exit_code = proc.wait(timeout=60)
        run.stop_seconds = time.perf_counter() - stopping
        if pg is not None:
            gone, _ = psutil.wait_procs([pg], timeout=10)
            run.postgres_stopped = bool(gone) and postmaster(data_dir) is None
    except (RuntimeError, subprocess.TimeoutExpired, psutil.Error) as exc:
        run.error = str(exc)
        tail = "\n".join(output[-30:])
        print(f"[{run.name}] {exc}; last output:\n{tail}", file=sys.stderr)
    finally:
        cleanup(proc, data_dir)
        reader.join(timeout=5)


def cleanup(proc: subprocess.Popen[str], data_dir: Path) -> None:
    """Stop whatever this run left behind: the server's process group, then its PostgreSQL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    pg = postmaster(data_dir)
    if pg is not None:
        print(f"PostgreSQL {pg.pid} outlived the server; stopping it", file=sys.stderr)
        with contextlib.suppress(psutil.NoSuchProcess):
            pg.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            _, alive = psutil.wait_procs([pg], timeout=10)
            for p in alive:
                p.kill()


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(runs: list[Run]) -> None:
    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    columns = [
        "run",
        "pg up",
        "seeded",
        "app up",
        "/healthz",
        "/readyz",
        "stop",
        "exit",
        "pg stopped",
    ]
    rows = []
    for r in runs:
        rows.append(
            [
                r.name,
                *(seconds(r.milestones.get(c)) for c in ("pg up", "seeded", "app up")),
                seconds(r.healthz),
                seconds(r.readyz),
                f"{seconds(r.stop_seconds)} ({r.stop_signal.name})",
                "-" if r.exit_code is None else str(r.exit_code),
                {None: "-", True: "yes", False: "NO"}[r.postgres_stopped],
            ]
        )
    table(columns, rows)
    print("(seconds from launch; 'stop' is from the signal to the server's exit)\n")

    columns = ["run", "API procs", "API RSS MiB", "API PSS MiB", "PG procs", "PG RSS MiB"]
    columns.append("PG PSS MiB")
    rows = [
        [
            r.name,
            str(r.api.processes),
            mib(r.api.rss),
            mib(r.api.pss),
            str(r.postgres.processes),
            mib(r.postgres.rss),
            mib(r.postgres.pss),
        ]
        for r in runs
    ]
    table(columns, rows)
    print("(one second after /readyz; PostgreSQL's RSS counts its shared memory once per process)")


def table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=2, help="a third run with this many workers (0: skip)"
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for /readyz")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    plan = [
        Run("fresh data folder", 1, signal.SIGTERM),
        Run("reused data folder", 1, signal.SIGINT),
    ]
    if args.workers > 1:
        plan.append(Run(f"reused, {args.workers} workers", args.workers, signal.SIGTERM))
    runs = []
    try:
        for run in plan:
            print(f"{run.name}: starting…", file=sys.stderr, flush=True)
            measure(run, data_dir, args.timeout)
            runs.append(run)
            if run.error:
                break
    finally:
        if args.keep:
            print(f"data folder kept: {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(runs)
    if any(r.error or r.postgres_stopped is False or r.exit_code != 0 for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
