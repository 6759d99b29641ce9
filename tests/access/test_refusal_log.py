"""Refusals counted in memory and written as one growing row per address and minute; a
write that fails loses nothing; a full log is written in chunks, so a slow link still makes
progress; refusals beyond what is held are one warning, not one each."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from sqlalchemy import select

from predictd.access.audit import REFUSALS_HELD, Actor, RefusalLog
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.settings import Settings
from tests.access.conftest import SlowLink

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

    away = Database(Settings(database_url=UNREACHABLE, db_connect_timeout_s=0.5).database)
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


def test_refusals_beyond_what_is_held_are_one_warning_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RefusalLog()
    actor = Actor(None, "predict", None)
    for n in range(REFUSALS_HELD):
        log.note(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", actor, "POST /predict")
    with caplog.at_level(logging.WARNING, "predictd.audit"):
        for n in range(500):
            log.note(f"192.0.{n >> 8}.{n & 255}", actor, "POST /predict")
    warnings = [r for r in caplog.records if r.name == "predictd.audit"]
    assert len(warnings) == 1  # not one line per refusal: the flood must not move to the log
    assert log.dropped == 500


ACTOR = Actor(None, "predict", None)


def full_log() -> RefusalLog:
    """As many refusals as a log holds, each from its own address."""
    log = RefusalLog()
    for n in range(REFUSALS_HELD):
        log.note(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", ACTOR, "POST /predict")
    return log


async def test_a_full_log_is_written_over_a_slow_link(slow_link: SlowLink) -> None:
    log = full_log()
    slow_link.proxy.delay_s = 0.002  # every round trip 2 ms: one statement a row never ends
    await log.flush(slow_link.slow)
    counts, rows = await refused(slow_link.direct)
    assert sum(counts.values()) == REFUSALS_HELD
    assert rows == REFUSALS_HELD
    for n in range(3):  # more on the same rows: added to them (new rows only if a minute
        log.note(f"10.0.0.{n}", ACTOR, "POST /predict")  # ended meanwhile)
    await log.flush(slow_link.slow)
    counts, rows = await refused(slow_link.direct)
    assert sum(counts.values()) == REFUSALS_HELD + 3
    assert rows <= REFUSALS_HELD + 3


async def test_a_bounded_flush_stops_in_time_and_keeps_the_rest(slow_link: SlowLink) -> None:
    """At shutdown the whole flush is bounded, not only each chunk: a slow database cannot
    hold the process for chunks x 5 s. What did not fit stays counted."""
    log = full_log()
    slow_link.proxy.delay_s = 0.5  # each round trip half a second: 20 chunks cannot fit
    await log.flush(slow_link.slow, within_s=0.2)
    counts, _ = await refused(slow_link.direct)
    assert sum(counts.values()) < REFUSALS_HELD
    slow_link.proxy.delay_s = 0
    await log.flush(slow_link.slow)
    counts, _ = await refused(slow_link.direct)
    assert sum(counts.values()) == REFUSALS_HELD
