"""The ceiling: the least any endpoint of this stack can cost. FastAPI under uvicorn, one
`select 1` on a pooled asyncpg connection per request, nothing else.

    DATABASE_URL=postgresql://... python bench/ceiling.py --port 8161

bench/read_mix.py starts it beside the real server and measures both the same way.
"""

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI


def create_app(url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The size of the real server's pool (app/db.py), so both queue the same way.
        app.state.pool = await asyncpg.create_pool(url, min_size=10, max_size=10)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/select1")
    async def select1() -> dict[str, int]:
        async with app.state.pool.acquire() as connection:
            return {"one": await connection.fetchval("SELECT 1")}

    @app.get("/select1/{statements}")
    async def select1_in_transaction(statements: int) -> dict[str, int]:
        """A write's shape at no cost of its own: `statements` round trips between BEGIN and
        COMMIT (bench/redeem_ceiling.py's floor for a redemption's statement count)."""
        async with app.state.pool.acquire() as connection, connection.transaction():
            for _ in range(statements):
                await connection.fetchval("SELECT 1")
        return {"statements": statements}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    # The same uvicorn options as `village-points serve` (app/cli.py), access log included.
    uvicorn.run(create_app(url), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
