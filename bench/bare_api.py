"""The smallest FastAPI app that answers the status read, for ``bench.status_reads``: what HTTP costs on
this machine before any of the service's own work.

One route reads the row as the benchmark's floor does (the same SELECT, a psycopg pool, no ORM) and
answers it as JSON with orjson, under uvicorn with uvloop and httptools as the API runs; no
authentication, rate limit, ownership check, telemetry or error envelope. Served by
``uvicorn bench.bare_api:app`` with BARE_DATABASE_URL (a libpq URL) and BARE_POOL_SIZE.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import orjson
from fastapi import FastAPI, Request, Response
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

FLOOR_SQL = "SELECT * FROM processing_states WHERE id = %s"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ["BARE_POOL_SIZE"])
    async with AsyncConnectionPool(os.environ["BARE_DATABASE_URL"], min_size=size, max_size=size) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> Response:
    return Response(b"{}", media_type="application/json")


@app.get("/status/{process_id}")
async def status(process_id: UUID, request: Request) -> Response:
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        cur = await conn.cursor(row_factory=dict_row).execute(FLOOR_SQL, (process_id,), prepare=True)
        row = await cur.fetchone()
    return Response(orjson.dumps(row), media_type="application/json", status_code=200 if row else 404)
