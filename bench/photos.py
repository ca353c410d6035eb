"""Peak memory of N photo decodes started at once.

A small file can decode to a large image: a 6300×6300 PNG of one colour is ~150 KB on the
wire and ~150 MB decoded (RGBA). The script makes one, then in a fresh interpreter per mode
starts N re-encodes at once, as N parallel uploads would, and prints the process's peak RSS:

- `limited`: what an upload runs, `photos.reencode_in_turn` (at most `photos.DECODES` at a time);
- `pool`: the same `photos.reencode` on anyio's default thread pool (40 threads), as uploads
  ran before the limiter.

    python3 -m uv run python bench/photos.py                 # 8 at once, 6300×6300 RGBA PNG
    python3 -m uv run python bench/photos.py --parallel 16 --side 7000
"""

import argparse
import asyncio
import io
import resource
import subprocess
import sys
import time

from PIL import Image


def big_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), (30, 120, 60, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(mode: str, parallel: int, side: int) -> None:
    import anyio.to_thread

    from app.services import photos

    data = big_png(side)
    before = peak_rss_mib()
    started = time.perf_counter()
    if mode == "limited":
        calls = [photos.reencode_in_turn(data, side * side) for _ in range(parallel)]
    else:
        calls = [
            anyio.to_thread.run_sync(photos.reencode, data, side * side) for _ in range(parallel)
        ]
    results = await asyncio.gather(*calls)
    elapsed = time.perf_counter() - started
    assert all(r.width == side for r in results)
    print(
        f"{mode:8} {parallel:3} at once  file {len(data) / 1024:6.0f} KiB  "
        f"peak RSS {peak_rss_mib():7.0f} MiB (before: {before:4.0f})  {elapsed:5.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--mode", choices=["limited", "pool"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        asyncio.run(run(args.mode, args.parallel, args.side))
        return
    for mode in ("limited", "pool"):
        # A fresh interpreter each: peak RSS only ever grows within a process.
        subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--parallel", str(args.parallel),
             "--side", str(args.side)],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
