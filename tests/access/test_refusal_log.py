"""Refusals counted in memory and written as one growing row per address and minute; a
write that fails loses nothing."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from predictd.access.audit import Actor, RefusalLog
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.settings import Settings

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


async def refused(db: Database) -> tuple[Counter[tuple[str, str | None]], int]:
    """Refusals per (client, key name), and how many rows hold them."""
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.client, audit_log.c.key_name, audit_log.c.times).where(
                    audit_log.c.allowed.is_(False)
                )
            )
        ).all()
    counts: Counter[tuple[str, str | None]] = Counter()
    for client, key_name, times in rows:
        counts[(client, key_name)] += times
    return counts, len(rows)


async def test_counts_survive_a_failed_write_and_grow_one_row(db: Database) -> None:
    log = RefusalLog()
    for _ in range(3):
        log.note("10.0.0.1", Actor(None, "predict", "r1"), "POST /predict")
    log.note("10.0.0.2", Actor("reader", "predict", "r2"), "POST /predict")

    away = Database(Settings(database_url=UNREACHABLE, db_connect_timeout_s=0.5))
    try:
        await log.flush(away)  # warns; the counts stay
    finally:
        await away.dispose()
    await log.flush(db)
    counts, rows = await refused(db)
    assert counts == {("10.0.0.1", None): 3, ("10.0.0.2", "reader"): 1}
    assert rows <= 3  # 2, or 3 if a minute ended among the first three notes

    log.note("10.0.0.1", Actor(None, "predict", "r3"), "GET /analytics/summary")
    log.note("10.0.0.1", Actor(None, "predict", "r4"), "POST /predict")
    await log.flush(db)
    await log.flush(db)  # nothing new: nothing written twice
    counts, rows = await refused(db)
    assert counts == {("10.0.0.1", None): 5, ("10.0.0.2", "reader"): 1}
    assert rows <= 4  # one per address and minute: 2, more only across a minute's end
