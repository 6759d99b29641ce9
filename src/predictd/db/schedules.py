"""Once per interval across replicas: a periodic task claims its `schedules` row with one
statement (insert, or update only when the last run is due), so whichever replica's timer
fires first runs it and the others see the claim and skip, on PostgreSQL and SQLite alike.

On PostgreSQL the database's clock decides, not the replica's: pods on different nodes
disagree by more than the slack now and then, and a replica whose clock ran ahead would
otherwise take the next interval early and run it twice."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from predictd.db.engine import Database

# Timers on different replicas drift; a pass that comes due a little early still runs, so an
# interval is never skipped for a few milliseconds.
SLACK = 0.05

_UPSERT = (
    "INSERT INTO schedules (name, last_run_at, run_by) VALUES (:name, {now}, :me) "
    "ON CONFLICT (name) DO UPDATE SET last_run_at = excluded.last_run_at, "
    "run_by = excluded.run_by WHERE schedules.last_run_at <= {due} RETURNING name"
)
_CLAIM = text(_UPSERT.format(now=":now", due=":due"))
_CLAIM_DB_CLOCK = text(_UPSERT.format(now="now()", due="now() - make_interval(secs => :seconds)"))


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def claim(db: Database, name: str, interval: timedelta, now: datetime | None = None) -> bool:
    """True when this process runs ``name`` now: its last run is ``interval`` old (less the
    slack), or it never ran. ``now`` replaces the clock (tests); without it PostgreSQL's
    clock is used, and SQLite's file is on this machine, so this machine's clock is."""
    due_after = interval * (1 - SLACK)
    params: dict[str, Any]
    async with db.engine.begin() as conn:
        if now is None and conn.dialect.name == "postgresql":
            statement = _CLAIM_DB_CLOCK
            params = {"seconds": due_after.total_seconds()}
        else:
            now = now or datetime.now(UTC)
            statement, params = _CLAIM, {"now": now, "due": now - due_after}
        row = await conn.execute(statement, {"name": name, "me": runner_name(), **params})
        return row.first() is not None
