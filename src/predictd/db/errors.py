"""Translate driver exceptions at the repository edge, so services never see them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from predictd.errors import Conflict, StorageUnavailable


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Integrity errors become Conflict (409); anything else from the database, or the
    network to it, becomes StorageUnavailable (503)."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"conflicting change while {what}; retry") from exc
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"database unavailable while {what}", retry_after_s=5) from exc


def is_row_error(exc: BaseException) -> bool:
    """A row the database refuses (SQLSTATE class 22 data / 23 integrity), as opposed to a
    database that is unavailable: retrying the same row would never succeed."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("22", "23")
