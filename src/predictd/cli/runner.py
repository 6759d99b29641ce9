"""How a command that needs the database runs: over the services the server builds
(``build_services``), closed afterwards, with one error path for every command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from predictd.cli.output import fail
from predictd.db import migrate
from predictd.errors import PredictdError
from predictd.observability import Metrics, redact
from predictd.services import Services, build_services
from predictd.settings import Settings

T = TypeVar("T")
_DRIVERS = ("sqlalchemy", "asyncpg", "alembic", "sqlite3")


def run_with_services(
    work: Callable[[Services], Awaitable[T]],
    *,
    settings: Settings | None = None,
    migrate_first: bool = False,
) -> T:
    """Run ``work`` with the configured services; an expected failure (ours, or the
    database's) is one line and exit 1, anything else escapes to the command group's
    `error:` line. ``migrate_first``: apply migrations first where the server would
    (PREDICTD_AUTO_MIGRATE; SQLite by default), so registry commands work on a new file."""
    settings = settings or Settings()

    async def runner() -> T:
        services = build_services(settings, Metrics.create())
        try:
            if migrate_first and settings.database.migrate_on_startup:
                await migrate.upgrade(services.db)
            return await work(services)
        finally:
            await services.close()

    try:
        return asyncio.run(runner())
    except PredictdError as exc:
        fail(exc.message)
    except (OSError, TimeoutError) as exc:
        fail(redact(f"database unreachable: {exc}"))
    except Exception as exc:
        if type(exc).__module__.startswith(_DRIVERS):
            fail(redact(f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
        raise
