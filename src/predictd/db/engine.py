"""The async engine: created lazily, never connected at import, so a server starts while the
database is down and the recorder keeps retrying."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from predictd.db.tls import TlsArgument, split_tls
from predictd.settings import DatabaseSettings

log = logging.getLogger("predictd.db")
REPLICA_RETRY_S = 30.0  # an unreachable read replica is skipped this long

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

    def __init__(self, settings: DatabaseSettings, *, writer_connections: int = 2) -> None:
        """``writer_connections``: the recorder's pool (its PREDICTD_RECORD_CONCURRENCY)."""
        self.settings = settings
        self.writer_connections = writer_connections
        self.url = to_async_url(settings.url)
        self.dialect = self.url.get_backend_name()
        self._tls: TlsArgument | None = None
        if self.dialect == "postgresql":  # libpq's sslmode & co. become asyncpg's `ssl`
            self.url, self._tls = split_tls(self.url)
        self.display_url = to_display_url(settings.url)
        self._engine: AsyncEngine | None = None
        self._writer_engine: AsyncEngine | None = None
        self._replica: Database | None = None
        self._replica_down_until = 0.0  # time.monotonic() before which reads skip it
        if settings.analytics_url is not None:
            self._replica = Database(
                settings.model_copy(update={"url": settings.analytics_url, "analytics_url": None})
            )

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            # Analytics filter by time windows that change with every call: a cached generic
            # plan cannot see how wide the window is, and on a 30-day window of rollups it
            # took twice the time of a plan made for the actual dates (benchmarks, part D).
            self._engine = self._create(plan_cache_mode="force_custom_plan")
        return self._engine

    @property
    def writer_engine(self) -> AsyncEngine:
        """The recorder's own small pool: no pre-ping and no reset on return, because every
        batch runs in an explicit transaction and a failed one is retried on a fresh
        connection anyway — per-batch round trips are what bound ingest."""
        if self.dialect != "postgresql":
            return self.engine
        if self._writer_engine is None:
            self._writer_engine = self._create(
                pool_size=self.writer_connections,
                max_overflow=0,
                pool_pre_ping=False,
                pool_reset_on_return=None,
            )
        return self._writer_engine

    @property
    def read_engine(self) -> AsyncEngine:
        """Analytics, drift and performance reads: the read replica's engine when
        PREDICTD_ANALYTICS_DATABASE_URL names one, else the main engine. Nothing writes
        through it (a replica would refuse)."""
        return self.engine if self._replica is None else self._replica.engine

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for analytics, drift and performance reads: the replica's, or the
        primary's while the replica cannot be reached, so that a replica outage never stops
        analytics or the monitor pass (and with it every alert)."""
        if self._replica is None or time.monotonic() < self._replica_down_until:
            async with self.engine.connect() as conn:
                yield conn
            return
        conn = self._replica.engine.connect()
        try:
            await conn.start()
        except (OSError, TimeoutError, DBAPIError) as exc:
            # Not tried again for a while: a replica that times out would otherwise cost
            # every read its connect timeout.
            self._replica_down_until = time.monotonic() + REPLICA_RETRY_S
            log.warning(
                "read replica unreachable; reading from the primary",
                extra={"replica": self._replica.display_url, "error": type(exc).__name__,
                       "retry_in_s": REPLICA_RETRY_S},
            )  # fmt: skip
            async with self.engine.connect() as primary:
                yield primary
            return
        try:
            yield conn
        finally:
            await conn.close()

    def _create(self, plan_cache_mode: str | None = None, **overrides: Any) -> AsyncEngine:
        s = self.settings
        if self.dialect == "sqlite":
            engine = create_async_engine(self.url, connect_args={"timeout": s.connect_timeout_s})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        server_settings = {"application_name": "predictd"}
        if s.statement_timeout_ms:
            server_settings["statement_timeout"] = str(s.statement_timeout_ms)
        if plan_cache_mode is not None:
            server_settings["plan_cache_mode"] = plan_cache_mode
        options: dict[str, Any] = {
            "pool_size": s.pool_size,
            "max_overflow": s.max_overflow,
            "pool_pre_ping": s.pool_pre_ping,
            "pool_timeout": s.connect_timeout_s,
            "connect_args": {
                "timeout": s.connect_timeout_s,
                "server_settings": server_settings,
            },
        }
        if self._tls is not None:
            options["connect_args"]["ssl"] = self._tls
        options.update(overrides)
        return create_async_engine(self.url, **options)

    async def dispose(self) -> None:
        for engine in (self._writer_engine, self._engine):
            if engine is not None:
                await engine.dispose()
        self._engine = self._writer_engine = None
        if self._replica is not None:
            await self._replica.dispose()
