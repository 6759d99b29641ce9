"""Time partitions of `predictions` on PostgreSQL (migration 0015 makes the table partitioned).

Partitions are created ahead of time by `predictd db partitions ensure` and the monitor pass.
A row whose period has no partition yet lands in `predictions_default` (an insert never
fails for want of one); the next `ensure` makes that period's partition, whether the period is
ahead or past, and moves those rows into it. Retention drops whole partitions (instant, no
vacuum debt) and deletes row by row only in the partition the cut-off falls inside and the
default partition. Range partitions an operator attached under other names are planned around
and otherwise left alone. SQLite has one plain table and none of this.
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
# Past periods whose rows wait in the default partition, made per pass (the rest next pass).
MAX_STRAY_PERIODS = 31


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: datetime
    end: datetime
    ours: bool = True  # named predictions_pYYYYMMDD; an operator's own otherwise


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


async def _printing(conn: AsyncConnection) -> None:
    """Bounds printed in ISO form and UTC (parsed below), for this transaction."""
    for setting in ("TimeZone = 'UTC'", "DateStyle = 'ISO, MDY'"):
        await conn.execute(text(f"SET LOCAL {setting}"))


async def _session(conn: AsyncConnection) -> None:
    """A partition change's transaction: no statement limit (moving or counting rows), a
    short wait for locks."""
    await _printing(conn)
    for setting in ("statement_timeout = 0", f"lock_timeout = {LOCK_TIMEOUT_MS}"):
        await conn.execute(text(f"SET LOCAL {setting}"))


def _lock_timed_out(exc: BaseException) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == LOCK_NOT_AVAILABLE


async def range_partitions(conn: AsyncConnection) -> list[Partition]:
    """Every range partition, ours and an operator's, oldest first (not the default)."""
    await _printing(conn)
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
        if match is None:
            continue  # DEFAULT (or a bound that is not a plain range: nothing to plan around)
        ours = _NAME.fullmatch(name) is not None
        found.append(Partition(name, _parse_bound(match[1]), _parse_bound(match[2]), ours))
    return sorted(found, key=lambda p: p.start)


async def list_partitions(conn: AsyncConnection) -> list[Partition]:
    """The range partitions this module made, oldest first (not the default partition, and
    not one an operator attached under another name: those are left alone)."""
    return [p for p in await range_partitions(conn) if p.ours]


def planned(
    existing: Sequence[Partition],
    interval: Interval,
    now: datetime,
    ahead: int,
    also: Sequence[datetime] = (),
) -> list[Partition]:
    """The partitions to create so that the current period, ``ahead`` more and the periods
    of the instants in ``also`` (rows waiting in the default partition) are covered. Where a
    period overlaps partitions made before (under another interval, or an operator's), only
    its uncovered part is made, so ranges never overlap and leave no gap."""
    taken = sorted(existing, key=lambda p: p.start)
    starts = [period_start(now, interval)]
    for _ in range(ahead):
        starts.append(next_start(starts[-1], interval))
    starts.extend(period_start(ts, interval) for ts in also)
    wanted: list[Partition] = []
    for start in sorted(set(starts)):
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
    return wanted


async def _create(conn: AsyncConnection, part: Partition) -> int:
    """Create one partition; rows of its range already in the default partition move into it.
    Returns how many moved.

    The table is made on its own, filled from the default partition, then attached: ATTACH
    takes only a SHARE UPDATE EXCLUSIVE lock on `predictions`, so inserts into the other
    partitions go on throughout. Inserts that would land in the default partition wait from
    the first statement to the commit (the recorder's spool absorbs them): none may land in
    this range between the copy and the attach, which would then fail."""
    if not _NAME.fullmatch(part.name):
        raise ValueError(f"not a partition name: {part.name!r}")
    bounds = {"lo": part.start, "hi": part.end}
    lo, hi = part.start.isoformat(), part.end.isoformat()  # our datetimes, not input
    await conn.execute(text(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE"))
    # The CHECK spares the attach a scan of the new table.
    await conn.execute(
        text(
            f'CREATE TABLE "{part.name}" (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING '
            f'CONSTRAINTS, CONSTRAINT "{part.name}_range" '
            f"CHECK (ts >= '{lo}' AND ts < '{hi}'))"
        )
    )
    moved = await conn.execute(
        text(f'INSERT INTO "{part.name}" SELECT * FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi'),
        bounds,
    )
    stray = int(moved.rowcount or 0)
    if stray:
        await conn.execute(text(f"DELETE FROM {DEFAULT} WHERE ts >= :lo AND ts < :hi"), bounds)
    await conn.execute(
        text(
            f'ALTER TABLE {TABLE} ATTACH PARTITION "{part.name}" '
            f"FOR VALUES FROM ('{lo}') TO ('{hi}')"
        )
    )
    await conn.execute(text(f'ALTER TABLE "{part.name}" DROP CONSTRAINT "{part.name}_range"'))
    return stray


async def _stray_periods(conn: AsyncConnection, interval: Interval) -> list[datetime]:
    """Periods with rows in the default partition (normally none: it is small and scanned)."""
    rows = await conn.execute(
        text(
            f"SELECT DISTINCT date_trunc(:unit, ts AT TIME ZONE 'UTC') AS p FROM {DEFAULT} "
            "ORDER BY p LIMIT :n"
        ),
        {"unit": interval, "n": MAX_STRAY_PERIODS},
    )
    return [start.replace(tzinfo=UTC) for start in rows.scalars()]


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
        strays = await _stray_periods(conn, interval)
        for part in planned(await range_partitions(conn), interval, now, ahead, strays):
            moved += await _create(conn, part)
            created.append(part.name)
        return Ensured(created, moved)


@dataclass(frozen=True, slots=True)
class Dropped:
    partitions: list[str]
    rows: int  # rows in the dropped partitions (counted before they went)
    # [start, end) ranges older than the cut-off whose rows row deletes must not touch: an
    # operator's partitions, and ours that could not be dropped this time (dropped next run
    # instead of being emptied row by row).
    spared: list[tuple[datetime, datetime]]


async def drop_before(db: Database, cutoff: datetime) -> Dropped:
    """Detach and drop every partition of ours wholly older than ``cutoff``, one per
    transaction (a lock is held only for one). One that cannot be locked in time is left,
    with the older ones after it, for the next run."""
    if db.dialect != "postgresql":
        return Dropped([], 0, [])
    async with db.engine.begin() as conn:
        if not await is_partitioned(conn):
            return Dropped([], 0, [])
        old = [p for p in await range_partitions(conn) if p.start < cutoff]
    doomed = [p for p in old if p.ours and p.end <= cutoff]
    spared = [(p.start, p.end) for p in old if not p.ours]
    dropped: list[str] = []
    rows = 0
    for index, part in enumerate(doomed):
        try:
            async with db.engine.begin() as conn:
                await _session(conn)
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK})
                # Another cleanup may have dropped it while this one waited for the lock.
                if await conn.scalar(text("SELECT to_regclass(:p)"), {"p": part.name}) is None:
                    continue
                # Counted (a read, no lock that stops inserts) before the detach, which is
                # what takes the exclusive lock: an exact figure for the operator.
                counted = await conn.scalar(text(f'SELECT count(*) FROM "{part.name}"'))
                await conn.execute(text(f'ALTER TABLE {TABLE} DETACH PARTITION "{part.name}"'))
                await conn.execute(text(f'DROP TABLE "{part.name}"'))
        except DBAPIError as exc:
            if not _lock_timed_out(exc):
                raise
            log.warning("partition not dropped: a lock was not free in time; next run",
                        extra={"partition": part.name})  # fmt: skip
            spared.extend((p.start, p.end) for p in doomed[index:])
            break
        dropped.append(part.name)
        rows += int(counted or 0)
    return Dropped(dropped, rows, _merged(spared))


def _merged(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


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
