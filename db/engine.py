"""Async engine construction and the mapping of driver errors to catalogue codes."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from domain.errors import AppError, ErrorCode


def make_engine(database_url: str, pool_size: int = 10, pool_timeout: float = 10) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_timeout=pool_timeout,
        connect_args={"connect_timeout": 5},
    )


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # pool exhausted
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    return isinstance(exc, (ConnectionError, OSError))


def db_error(exc: BaseException) -> AppError:
    """A database failure as the catalogue code the spec gives it (details never carry driver text)."""
    code = ErrorCode.DATABASE_CONNECTION_ERROR if is_connection_error(exc) else ErrorCode.DATABASE_ERROR
    return AppError(code, internal=f"{type(exc).__name__}")
