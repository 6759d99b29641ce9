"""A periodic task runs once per interval however many replicas' timers fire: each claims the
task's `schedules` row with one statement, and only a due claim wins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from predictd.db import schedules
from predictd.db.engine import Database
from predictd.settings import Settings

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


async def test_a_claim_wins_once_per_interval(db: Database) -> None:
    assert await schedules.claim(db, "monitor", MINUTE, now=T0)  # never ran
    assert not await schedules.claim(db, "monitor", MINUTE, now=T0 + timedelta(seconds=30))
    assert await schedules.claim(db, "other", MINUTE, now=T0)  # a task of its own
    # A timer that fires a little early (within the slack) still runs the next interval.
    assert await schedules.claim(db, "monitor", MINUTE, now=T0 + timedelta(seconds=58))
    assert not await schedules.claim(db, "monitor", MINUTE, now=T0 + timedelta(seconds=59))


async def test_of_racing_replicas_exactly_one_wins(db_url: str, db: Database) -> None:
    """Three processes' engines (three pools) claim at the same instant, ten times over."""
    replicas = [Database(Settings(database_url=db_url).database) for _ in range(3)]
    try:
        for n in range(10):
            now = T0 + n * MINUTE
            won = await asyncio.gather(
                *(schedules.claim(r, "monitor", MINUTE, now=now) for r in replicas)
            )
            assert sum(won) == 1, (n, won)
    finally:
        for replica in replicas:
            await replica.dispose()


async def test_without_a_given_clock_the_database_clock_decides(db: Database) -> None:
    """A replica's own clock plays no part on PostgreSQL: the row holds the database's time,
    and a claim is due by the database's time too (SQLite: this machine's clock)."""
    assert await schedules.claim(db, "monitor", MINUTE)
    assert not await schedules.claim(db, "monitor", MINUTE)
    async with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            lag = (await conn.execute(text(
                "SELECT extract(epoch FROM now() - last_run_at) FROM schedules "
                "WHERE name = 'monitor'"))).scalar_one()  # fmt: skip
            assert 0 <= float(lag) < 5
        # The last run is pushed back one interval: the next claim is due.
        await conn.execute(
            text("UPDATE schedules SET last_run_at = :then WHERE name = 'monitor'"),
            {"then": datetime.now(UTC) - MINUTE - timedelta(seconds=1)},
        )
    assert await schedules.claim(db, "monitor", MINUTE)
    assert not await schedules.claim(db, "monitor", MINUTE)
