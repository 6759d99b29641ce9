"""Once per interval across replicas: a periodic task claims its `schedules` row with one
statement (insert, or update only when the last run is due), so whichever replica's timer
fires first runs it and the others see the claim and skip, on PostgreSQL and SQLite alike."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from predictd.db.engine import Database

# Timers on different replicas drift; a pass that comes due a little early still runs, so an
# interval is never skipped for a few milliseconds.
SLACK = 0.05

_CLAIM = text(
    "INSERT INTO schedules (name, last_run_at, run_by) VALUES (:name, :now, :me) "
    "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, "
    "run_by = excluded.run_by WHERE schedules.last_run_at <= :due RETURNING name"
)


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def claim(db: Database, name: str, interval: timedelta, now: datetime | None = None) -> bool:
    """True when this process runs ``name`` now: its last run is ``interval`` old (less the
    slack), or it never ran."""
    now = now or datetime.now(UTC)
    due = now - interval * (1 - SLACK)
    async with db.engine.begin() as conn:
        row = await conn.execute(
            _CLAIM, {"name": name, "now": now, "me": runner_name(), "due": due}
        )
        return row.first() is not None
