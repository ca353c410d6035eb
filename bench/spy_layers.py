"""Where a process's time went, from a py-spy raw profile (`py-spy record -f raw`): each sample
counted once, for the innermost frame (the code that was running), summed by layer (asyncpg,
SQLAlchemy, FastAPI, our app's modules…) and by function.

    .venv/bin/python bench/spy_layers.py /tmp/prof/five-large.txt [--top 25]
"""

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# The first of these found in a frame's file names its layer; the app by its module.
_LAYERS = (
    "asyncpg", "sqlalchemy", "fastapi", "starlette", "uvicorn", "pydantic", "httptools",
    "h11", "anyio", "jwt", "prometheus_client", "orjson", "asyncio", "logging", "json",
)  # fmt: skip


def layer(file: str) -> str:
    app = re.search(r"(?:^|/)(app/[\w/]+?)\.py$", file)
    if app:
        return app.group(1)
    for name in _LAYERS:
        if f"/{name}/" in file or file.startswith(f"{name}/") or file.endswith(f"/{name}.py"):
            return name
    return "other (stdlib, idle)" if file else "native"


def read(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        folded, _, count = line.rpartition(" ")
        if not folded or not count.isdigit():
            continue
        frames = []
        for frame in folded.split(";"):
            found = _FRAME.match(frame.strip())
            if found:
                frames.append((found["function"], found["file"]))
        stacks.append((frames, int(count)))
    return stacks


def summary(path: Path, top: int = 25) -> str:
    stacks = read(path)
    total = sum(count for _, count in stacks) or 1
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for frames, count in stacks:
        function, file = frames[-1] if frames else ("?", "")
        layers[layer(file)] += count
        functions[f"{function} ({file})"] += count
    lines = [f"{path.name}: {total} samples", "  running, by layer:"]
    lines += [f"    {n * 100 / total:5.1f}%  {name}" for name, n in layers.most_common(top)]
    lines.append("  running, by function:")
    lines += [f"    {n * 100 / total:5.1f}%  {name}" for name, n in functions.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summary(args.profile, args.top))


if __name__ == "__main__":
    main()
