"""API test fixtures: the app on the session's PostgreSQL and Temporal dev server, driven in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from db.repository import JobRepository
from settings import Settings
from tests.support.api import serve
from tests.support.jobs import Jobs


@pytest.fixture
def api_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Test settings with rate limits out of the way unless a test sets them."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "rate_limit_write_per_minute": 100_000,
            "rate_limit_read_per_minute": 100_000,
        }
        return make_settings(**(values | overrides))

    return build


@pytest_asyncio.fixture
async def api(
    clean_db: AsyncEngine, api_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(api_settings()) as http:
        yield http


@pytest.fixture
def jobs(repo: JobRepository) -> Jobs:
    return Jobs(repo)
