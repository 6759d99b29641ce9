"""Registry change notifications over PostgreSQL LISTEN/NOTIFY.

Every lifecycle change sends ``NOTIFY predictd_registry`` inside its own transaction, so the
notice goes out exactly when the change commits. Servers listen on a connection of their own
and re-read the registry at once instead of at the next poll. Polling stays the guarantee:
a notice lost while the listener reconnects only costs up to one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.tls import split_tls
from predictd.settings import DatabaseSettings

log = logging.getLogger("predictd.registry")

CHANNEL = "predictd_registry"
RECONNECT_S = 5.0


async def publish(conn: AsyncConnection, name: str) -> None:
    """Announce a change to ``name``; delivered when the caller's transaction commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :name)"), {"channel": CHANNEL, "name": name}
        )


def _connect_args(settings: DatabaseSettings) -> tuple[str, dict[str, Any]]:
    """asyncpg's DSN and keywords: TLS from the URL's libpq parameters, as the engine's."""
    url, tls = split_tls(make_url(settings.url).set(drivername="postgresql"))
    options: dict[str, Any] = {"timeout": settings.connect_timeout_s}
    if tls is not None:
        options["ssl"] = tls
    return url.render_as_string(hide_password=False), options


class RegistryListener:
    """Sets ``wake`` on every registry notice, reconnecting for as long as the server runs."""

    def __init__(self, settings: DatabaseSettings, wake: asyncio.Event) -> None:
        self.settings = settings
        self.wake = wake
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Returns at once on SQLite, where there is nothing to listen to."""
        if self.settings.is_sqlite:
            return
        while True:
            await self._listen_once()
            await asyncio.sleep(RECONNECT_S)

    async def _listen_once(self) -> None:
        conn: Any = None
        try:
            dsn, options = _connect_args(self.settings)
            conn = await asyncpg.connect(dsn, **options)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, lambda *_args: self.wake.set())
            self.connected.set()
            self.wake.set()  # anything may have changed while we were not listening
            await lost.wait()
            log.warning("registry listener connection closed; reconnecting")
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.debug("registry listener unavailable", extra={"error": repr(exc)})
        finally:
            self.connected.clear()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)
