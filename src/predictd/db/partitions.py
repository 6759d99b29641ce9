"""Time partitions of `predictions` on PostgreSQL (migration 0015 makes the table partitioned).

Partitions are created ahead of time by `predictd db partitions ensure` and the monitor pass.
A row whose period has no partition yet lands in `predictions_default` (an insert never
fails for want of one); creating that period's partition later moves those rows into it.
Retention drops whole partitions (instant, no vacuum debt) and deletes row by row only in the
partition the cut-off falls inside. SQLite has one plain table and none of this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from predictd.db.engine import Database

log = logging.getLogger("predictd.partitions")

Interval = Literal["day", "week", "month"]

TABLE = "predictions"
DEFAULT = "predictions_default"
PARTITION_LOCK = 0x7072_7074  # advisory lock key: one partition change at a time
# Bounds as PostgreSQL prints them with TimeZone=UTC: FROM ('2026-12-01 00:00:00+00') TO (...)
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
_NAME = re.compile(r"predictions_p\d{8}")  # fullmatch: the only names this module touches
# DDL on `predictions` queues behind long readers (a pg_dump, a wide query) and every insert
# then queues behind it: give up after this and try again at the next pass instead.
LOCK_TIMEOUT_MS = 2000
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: datetime
    end: datetime


def period_start(ts: datetime, interval: Interval) -> datetime:
    """The start (UTC midnight; Monday for weeks, the 1st for months) of ``ts``'s period."""
    day = ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_start(start: datetime, interval: Interval) -> datetime:
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def partition_name(start: datetime) -> str:
    return f"predictions_p{start:%Y%m%d}"


def _parse_bound(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)  # '2026-12-01 00:00:00+00'


async def is_partitioned(conn: AsyncConnection) -> bool:
    kind = await conn.scalar(
        text("SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass(:t)"), {"t": TABLE}
    )
    return bool(kind == "p")


async def _session(conn: AsyncConnection) -> None:
    """This transaction's settings: bounds printed in ISO form and UTC (parsed below), no
    statement limit (moving or counting rows), a short wait for locks."""
    for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, MDY'", "statement_timeout = 0",
                    f"lock_timeout = {LOCK_TIMEOUT_MS}"):  # fmt: skip
        await conn.execute(text(f"SET LOCAL {setting}"))


def _lock_timed_out(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE


async def list_partitions(conn: AsyncConnection) -> list[Partition]:
    """The range partitions this module made, oldest first (not the default partition, and
    not one an operator attached under another name: those are left alone)."""
    await _session(conn)
    rows = await conn.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": TABLE},
    )
    found: list[Partition] = []
    for name, bound in rows:
        match = _BOUNDS.search(bound or "")
        if match is None or not _NAME.fullmatch(name):
            continue  # DEFAULT, or not ours
        found.append(Partition(name, _parse_bound(match[1]), _parse_bound(match[2])))
    return sorted(found, key=lambda p: p.start)


def planned(
    existing: Sequence[Partition], interval: Interval, now: datetime, ahead: int
) -> list[Partition]:
    """The partitions to create so that the current period and ``ahead`` more are covered.
    Where a period overlaps partitions made before (under another interval), only its
    uncovered part is made, so ranges never overlap and leave no gap."""
    taken = sorted(existing, key=lambda p: p.start)
    wanted: list[Partition] = []
    start = period_start(now, interval)
    for _ in range(ahead + 1):
        end = next_start(start, interval)
        lo = start
        for part in taken:  # the uncovered stretches of [start, end)
            if part.end <= lo or part.start >= end:
                continue
            if part.start > lo:
                wanted.append(Partition(partition_name(lo), lo, part.start))
            lo = max(lo, part.end)
        if lo < end:
            wanted.append(Partition(partition_name(lo), lo, end))
        start = end
    return wanted


async def _create(conn: AsyncConnection, part: Partition) -> int:
    """Create one partition; rows of its range already in the default partition move into it.
    Returns how many moved."""
    if not _NAME.fullmatch(part.name):
        raise ValueError(f"not a partition name: {part.name!r}")
    bounds = {"lo": part.start, "hi": part.end}
    values = f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
    # Held until commit: no row can land in this range of the default partition between the
    # count and the attach (the attach would then fail).
    await conn.execute(text(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE"))
    stray = await conn.scalar(
        text(f"SELECT count(*) FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi"), bounds
    )
    if not stray:
        # Made on its own, then attached: ATTACH takes only a SHARE UPDATE EXCLUSIVE lock on
        # `predictions`, so inserts into the other partitions go on meanwhile. The CHECK
        # spares the attach a scan of the new table.
        lo, hi = part.start.isoformat(), part.end.isoformat()  # our datetimes, not input
        await conn.execute(
            text(
                f'CREATE TABLE "{part.name}" (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING '
                f'CONSTRAINTS, CONSTRAINT "{part.name}_range" '
                f"CHECK (ts >= '{lo}' AND ts < '{hi}'))"
            )
        )
        await conn.execute(text(f'ALTER TABLE {TABLE} ATTACH PARTITION "{part.name}" {values}'))
        await conn.execute(text(f'ALTER TABLE "{part.name}" DROP CONSTRAINT "{part.name}_range"'))
        return 0
    # The default partition holds rows of this range, so the new partition cannot be attached
    # beside it: take it out, create, move the rows through the parent, put it back. Inserts
    # wait on the parent's lock meanwhile (the recorder's spool absorbs them).
    await conn.execute(text(f"ALTER TABLE {TABLE} DETACH PARTITION {DEFAULT}"))
    await conn.execute(text(f'CREATE TABLE "{part.name}" PARTITION OF {TABLE} {values}'))
    await conn.execute(
        text(f"INSERT INTO {TABLE} SELECT * FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi"), bounds
    )
    await conn.execute(text(f"DELETE FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi"), bounds)
    await conn.execute(text(f"ALTER TABLE {TABLE} ATTACH PARTITION {DEFAULT} DEFAULT"))
    return int(stray)


@dataclass(frozen=True, slots=True)
class Ensured:
    created: list[str]
    moved: int
    skipped: bool = False  # another process held the lock, or the table is not partitioned


async def ensure(
    db: Database, interval: Interval, ahead: int, now: datetime | None = None
) -> Ensured:
    """Create the partitions for the current period and ``ahead`` more (idempotent)."""
    if db.dialect != "postgresql":
        return Ensured([], 0, skipped=True)
    now = now or datetime.now(UTC)
    async with db.engine.begin() as conn:
        if not await is_partitioned(conn):
            return Ensured([], 0, skipped=True)
        await _session(conn)
        locked = await conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK}
        )
        if not locked:
            return Ensured([], 0, skipped=True)
        created: list[str] = []
        moved = 0
        for part in planned(await list_partitions(conn), interval, now, ahead):
            moved += await _create(conn, part)
            created.append(part.name)
        return Ensured(created, moved)


@dataclass(frozen=True, slots=True)
class Dropped:
    partitions: list[str]
    rows: int  # rows in the dropped partitions (counted before they went)


async def drop_before(db: Database, cutoff: datetime) -> Dropped:
    """Detach and drop every partition wholly older than ``cutoff``, one per transaction (a
    lock is held only for one). One that cannot be locked in time is left for row deletes."""
    if db.dialect != "postgresql":
        return Dropped([], 0)
    async with db.engine.begin() as conn:
        if not await is_partitioned(conn):
            return Dropped([], 0)
        doomed = [p for p in await list_partitions(conn) if p.end <= cutoff]
    dropped: list[str] = []
    rows = 0
    for part in doomed:
        try:
            async with db.engine.begin() as conn:
                await _session(conn)
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK})
                # Counted before the detach, which is what takes the exclusive lock.
                counted = int(await conn.scalar(text(f'SELECT count(*) FROM "{part.name}"')) or 0)
                await conn.execute(text(f'ALTER TABLE {TABLE} DETACH PARTITION "{part.name}"'))
                await conn.execute(text(f'DROP TABLE "{part.name}"'))
        except DBAPIError as exc:
            if not _lock_timed_out(exc):
                raise
            log.warning("partition not dropped: a lock was not free in time",
                        extra={"partition": part.name})  # fmt: skip
            break
        dropped.append(part.name)
        rows += counted
    return Dropped(dropped, rows)


@dataclass(frozen=True, slots=True)
class Coverage:
    """How far the partitions reach: how many start after now (0: the next period's rows
    will land in the default partition), and whether the default partition holds rows (a
    period nobody made; the next ``ensure`` moves them out)."""

    ahead: int
    default_used: bool


async def coverage(conn: AsyncConnection, now: datetime) -> Coverage | None:
    """None on SQLite, or before migration 0015."""
    if conn.dialect.name != "postgresql" or not await is_partitioned(conn):
        return None
    parts = await list_partitions(conn)
    used = await conn.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{DEFAULT}")'))
    return Coverage(sum(1 for part in parts if part.start > now), bool(used))


async def describe(db: Database) -> list[dict[str, Any]]:
    """Each partition (and the default) with its range and estimated row count."""
    async with db.engine.begin() as conn:
        if db.dialect != "postgresql" or not await is_partitioned(conn):
            return []
        parts = await list_partitions(conn)
        names = [p.name for p in parts] + [DEFAULT]
        estimates: dict[str, float] = dict(
            (
                await conn.execute(
                    text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:n)"),
                    {"n": names},
                )
            ).all()
        )
        out = [
            {"name": p.name, "start": p.start, "end": p.end,
             "rows_estimate": max(0, int(estimates.get(p.name, 0)))}
            for p in parts
        ]  # fmt: skip
        out.append({"name": DEFAULT, "start": None, "end": None,
                    "rows_estimate": max(0, int(estimates.get(DEFAULT, 0)))})  # fmt: skip
        return out
