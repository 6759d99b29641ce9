"""Operator chores on the database: status counts, retention, backup."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, delete, func, null, or_, select, update
from sqlalchemy.engine import make_url

from predictd.db import partitions
from predictd.db.engine import Database
from predictd.db.tables import model_versions, predictions
from predictd.errors import PredictdError

CLEANUP_CHUNK = 10_000


async def row_counts(db: Database) -> dict[str, int]:
    async with db.engine.connect() as conn:
        return {
            table.name: int(
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            )
            for table in (predictions, model_versions)
        }


@dataclass(frozen=True, slots=True)
class Cleaned:
    rows: int  # predictions deleted, those in dropped partitions included
    partitions: list[str]  # partitions dropped whole (PostgreSQL)


async def cleanup(db: Database, days: int, chunk: int = CLEANUP_CHUNK) -> Cleaned:
    """Delete predictions older than ``days``: on PostgreSQL whole partitions are dropped
    first; what is left (the partition the cut-off falls in, the default partition, SQLite's
    one table) goes in bounded chunks (short locks, small WAL). An operator's own partitions,
    and ours that could not be locked in time, are not emptied row by row."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    dropped = await partitions.drop_before(db, cutoff)
    deleted = await _delete_older(db, cutoff, chunk, dropped.spared)
    return Cleaned(dropped.rows + deleted, dropped.partitions)


async def _delete_older(
    db: Database, cutoff: datetime, chunk: int, spared: list[tuple[datetime, datetime]]
) -> int:
    ts = predictions.c.ts
    # Each spared range as "before it or after it": plain comparisons the planner prunes by.
    older = and_(ts < cutoff, *(or_(ts < lo, ts >= hi) for lo, hi in spared))
    total = 0
    while True:
        doomed = select(predictions.c.id).where(older).limit(chunk)
        async with db.engine.begin() as conn:
            # ts on the outer statement too: the key is (id, ts) on PostgreSQL, and it lets
            # the planner look only at partitions older than the cut-off.
            result = await conn.execute(
                delete(predictions).where(older, predictions.c.id.in_(doomed))
            )
        deleted = int(result.rowcount)
        total += deleted
        if deleted < chunk:
            return total


async def forget_inputs(db: Database, days: int, chunk: int = CLEANUP_CHUNK) -> int:
    """Blank the stored input of predictions older than ``days`` and keep the rest of the
    row (analytics, performance and feedback joins still work), in bounded chunks."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    total = 0
    while True:
        doomed = (
            select(predictions.c.id)
            .where(predictions.c.ts < cutoff, predictions.c.input.is_not(None))
            .limit(chunk)
        )
        async with db.engine.begin() as conn:
            result = await conn.execute(
                update(predictions)
                .where(predictions.c.ts < cutoff, predictions.c.id.in_(doomed))
                .values(input=null())
            )
        changed = int(result.rowcount)
        total += changed
        if changed < chunk:
            return total


def backup(db: Database, target: Path) -> str:
    """Copy the database to ``target``; returns what was done, for the CLI to print."""
    raw = make_url(db.settings.url)
    if db.dialect == "sqlite":
        source = sqlite3.connect(raw.database or ":memory:")
        try:
            dest = sqlite3.connect(target)
            try:
                source.backup(dest)  # the online backup API: consistent while serving
            finally:
                dest.close()
        finally:
            source.close()
        return f"SQLite backup written to {target}"
    pg_dump = shutil.which("pg_dump")
    plain = raw.set(drivername="postgresql").render_as_string(hide_password=False)
    if pg_dump is None:
        return (
            "pg_dump is not installed here. Install the PostgreSQL client tools and run:\n"
            f"  pg_dump --format=custom --file {target} '<your DATABASE_URL>'"
        )
    # The URL as the operator gave it: libpq understands its sslmode/sslrootcert/... itself.
    done = subprocess.run([pg_dump, "--format=custom", "--file", str(target), plain], check=False)
    if done.returncode != 0:
        raise PredictdError(f"pg_dump failed (exit status {done.returncode}); its message is above")
    return f"pg_dump backup written to {target}"
