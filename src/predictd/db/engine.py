"""The async engine: created lazily, never connected at import, so a server starts while the
database is down and the recorder keeps retrying."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from predictd.settings import Settings

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def to_async_url(raw: str) -> URL:
    """Accept what users type (`postgresql://…`, `sqlite:///…`) and pick the async driver."""
    url = make_url(raw)
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    if url.drivername in _DRIVERS:
        url = url.set(drivername=_DRIVERS[url.drivername])
    return url


def to_display_url(raw: str) -> str:
    """The URL with any password hidden, safe for logs and status output."""
    return (
        to_async_url(raw)
        .set(drivername=make_url(raw).drivername)
        .render_as_string(hide_password=True)
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """Owns the engine for one process; built in the lifespan, disposed on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = to_async_url(settings.database_url)
        self.dialect = self.url.get_backend_name()
        self.display_url = to_display_url(settings.database_url)
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = self._create()
        return self._engine

    def _create(self) -> AsyncEngine:
        s = self.settings
        if self.dialect == "sqlite":
            engine = create_async_engine(self.url, connect_args={"timeout": s.db_connect_timeout_s})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        server_settings = {"application_name": "predictd"}
        if s.db_statement_timeout_ms:
            server_settings["statement_timeout"] = str(s.db_statement_timeout_ms)
        return create_async_engine(
            self.url,
            pool_size=s.db_pool_size,
            max_overflow=s.db_max_overflow,
            pool_pre_ping=s.db_pool_pre_ping,
            pool_timeout=s.db_connect_timeout_s,
            connect_args={"timeout": s.db_connect_timeout_s, "server_settings": server_settings},
        )

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
