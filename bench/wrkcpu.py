"""wrk driving prepared requests, and the CPU each request cost the server and its database.

Shared by bench/redeem_ceiling.py and bench/peer.py. The servers and their databases run pinned
to CPU 0 and wrk to CPU 1, so a server's requests per second is about one over what a request
costs the server and its database together, and the CPU time each spent (from /proc/<pid>/stat,
utime + stime, the processes' own children included where named) is the per-request cost
however busy the rest of the machine is.

A requests file has one request a line, tab-separated: method, path, bearer token (or `-`) and
a JSON body (or nothing). wrk sends them in order, each once, from the first line, so a
single-use code is sent once as long as the file holds more lines than the run sends.
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_CPU, LOAD_CPU = "0", "1"
HZ = os.sysconf("SC_CLK_TCK")

LUA = r"""
local requests = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^(%S+)\t(%S+)\t(%S+)\t?(.*)$")
    local headers = {}
    if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
    if body ~= "" then
      headers["Content-Type"] = "application/json"
    else
      body = nil
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def requests_file(folder: Path, name: str, lines: Iterable[tuple[str, str, str, str]]) -> Path:
    path = folder / f"{name}.txt"
    path.write_text("".join("\t".join(line) + "\n" for line in lines))
    (folder / "req.lua").write_text(LUA)
    return path


def children(pid: int) -> list[int]:
    """The process and its descendants."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parent[int(entry)] = int(stat[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        found += frontier
    return found


def ticks(pids: Iterable[int]) -> int:
    """CPU ticks of the processes, and of their children that have exited (a database server's
    backends and workers come and go; the root counts them once reaped)."""
    total = 0
    for n, pid in enumerate(pids):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            if n == 0:
                total += int(fields[13]) + int(fields[14])
    return total


def pin(pid: int, cpu: str = SERVER_CPU) -> None:
    """Pin a running process tree (every thread); processes it forks later inherit it."""
    for p in children(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(p)], capture_output=True, check=False)


def settle(pid: int, timeout: float = 60) -> None:
    """Wait until the server has used no CPU for half a second: the previous run's requests
    are done and none of their work counts in the next."""
    deadline = time.monotonic() + timeout
    last = ticks(children(pid))
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        now = ticks(children(pid))
        quiet = quiet + 1 if now == last else 0
        last = now


@dataclass
class Run:
    rate: float
    p99_ms: float
    requests: int
    errors: int
    app_ms: float  # CPU per request of the server process
    db_ms: float  # CPU per request of the database server

    @property
    def cpu_ms(self) -> float:
        return self.app_ms + self.db_ms


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(figure: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", figure)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")


def py_spy(pid: int, seconds: float, profile: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` at 200 Hz into `profile` (raw, for spy_layers.py)."""
    profile.parent.mkdir(parents=True, exist_ok=True)  # py-spy writes nothing without it
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "200", "-f", "raw",
         "-o", str(profile), "-p", str(pid), "-d", str(round(seconds))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wrk(
    url: str,
    seconds: float,
    requests: Path | None,
    *,
    app: int,
    db: int,
    connections: int = 32,
    profile: Path | None = None,
) -> Run:
    """Drive `url` (with the prepared requests, or plain GETs of it) and measure the server
    `app` and the database server `db` (each a process tree)."""
    command = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s"]
    command += ["--latency", "--timeout", "10s"]
    if requests is not None:
        command += ["-s", str(requests.parent / "req.lua"), url, "--", str(requests)]
    else:
        command.append(url)
    settle(app)
    app0, db0 = ticks(children(app)), ticks(children(db))
    profiler = None if profile is None else py_spy(app, seconds, profile)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if profiler is not None:
        profiler.wait()
    # The requests still in flight when wrk stops (one per connection) are answered to no one,
    # but worked on all the same: their CPU is counted once the server is idle, and they are.
    settle(app)
    app1, db1 = ticks(children(app)), ticks(children(db))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Run(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        requests=n,
        errors=errors,
        app_ms=1000 * (app1 - app0) / HZ / (n + connections),
        db_ms=1000 * (db1 - db0) / HZ / (n + connections),
    )


@contextlib.contextmanager
def embedded_postgres() -> Iterator[tuple[str, int]]:
    """A private PostgreSQL in a temporary folder, pinned to the servers' CPU: (URL, pid)."""
    from app.database_server import start_embedded

    folder = Path(tempfile.mkdtemp(prefix="vp-bench-"))
    holder, url = start_embedded(folder / "pgdata", "postgres")
    try:
        pid = int((folder / "pgdata" / "postmaster.pid").read_text().split()[0])
        pin(pid)
        yield url, pid
    finally:
        holder.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
