"""Translate driver exceptions at the repository edge, so services never see them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from predictd.errors import StorageUnavailable

# Errors that mean "the database is not there right now", not "the query is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    ConnectionError,
    OperationalError,
    DBAPIError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Turn connection-level failures into StorageUnavailable (503)."""
    try:
        yield
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"database unavailable while {what}", retry_after_s=5) from exc
