"""`predictions` range-partitioned by time on PostgreSQL: the migration converts a table with
rows, an insert never fails for want of a partition, making partitions moves stray rows out of
the default partition, and retention drops whole partitions. SQLite keeps one table."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from predictd.cli import app
from predictd.db import maintenance, migrate, partitions
from predictd.db.engine import Database
from predictd.db.partitions import Partition, next_start, period_start, planned
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings

NOW = datetime.now(UTC)


def record(ts: datetime) -> PredictionRecord:
    return PredictionRecord(
        id=uuid.uuid4(), ts=ts, model_name="m", model_version=1, variant="production",
        request_id="r", batch_id=None, input={"text": "x"}, output="positive", confidence=0.9,
        probabilities={"positive": 0.9, "negative": 0.1}, latency_ms=1.0, cache_hit=False,
        status="ok", error=None, client_ip="127.0.0.1", user_agent="t", shadow_of=None,
    )  # fmt: skip


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(Settings(database_url=postgres_url).database)
    await migrate.upgrade(db)
    yield db
    await db.dispose()


async def where(db: Database) -> dict[str, str]:
    """prediction id -> the partition holding its row."""
    async with db.engine.connect() as conn:
        query = "SELECT id::text, tableoid::regclass::text FROM predictions"
        rows = await conn.execute(text(query))
        return {row[0]: row[1] for row in rows}


# -- planning (pure) --------------------------------------------------------------------


def test_periods_start_at_utc_midnight_monday_and_the_first() -> None:
    ts = datetime(2026, 12, 17, 15, 30, tzinfo=UTC)  # a Thursday
    assert period_start(ts, "day") == datetime(2026, 12, 17, tzinfo=UTC)
    assert period_start(ts, "week") == datetime(2026, 12, 14, tzinfo=UTC)
    assert period_start(ts, "month") == datetime(2026, 12, 1, tzinfo=UTC)
    december, january = datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    assert next_start(december, "month") == january
    assert next_start(datetime(2026, 12, 31, tzinfo=UTC), "day") == january


def test_a_changed_interval_neither_overlaps_nor_leaves_a_gap() -> None:
    month = Partition("predictions_p20261201", datetime(2026, 12, 1, tzinfo=UTC),
                      datetime(2027, 1, 1, tzinfo=UTC))  # fmt: skip
    # Weeks from Monday 2026-12-28: the first starts where the month ends.
    made = planned([month], "week", datetime(2026, 12, 29, tzinfo=UTC), ahead=2)
    assert [(p.start.date().isoformat(), p.end.date().isoformat()) for p in made] == [
        ("2027-01-01", "2027-01-04"), ("2027-01-04", "2027-01-11"), ("2027-01-11", "2027-01-18"),
    ]  # fmt: skip
    assert planned([month], "month", datetime(2026, 12, 5, tzinfo=UTC), ahead=0) == []
    # A week that begins before the month (Monday 2026-11-30) gets only its uncovered day.
    [first] = planned([month], "week", datetime(2026, 11, 30, tzinfo=UTC), ahead=0)
    assert (first.start, first.end) == (datetime(2026, 11, 30, tzinfo=UTC), month.start)


# -- PostgreSQL ------------------------------------------------------------------------


async def test_the_migration_partitions_a_table_with_rows(postgres_url: str) -> None:
    db = Database(Settings(database_url=postgres_url).database)
    try:
        await migrate.upgrade(db, "0014")
        old = [record(NOW - timedelta(days=d)) for d in (0, 40, 75)]
        assert await PredictionWriter(db).write(old) == 3
        await migrate.upgrade(db)
        placed = await where(db)
        assert set(placed) == {str(r.id) for r in old}
        for r in old:
            assert placed[str(r.id)] == f"predictions_p{period_start(r.ts, 'month'):%Y%m%d}"
        async with db.engine.connect() as conn:
            key = await conn.scalar(text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'pk_predictions'"
            ))  # fmt: skip
        assert key == "PRIMARY KEY (id, ts)"
        # Replaying the same records adds nothing.
        assert await PredictionWriter(db).write(old) == 0
        # Down again: one plain table with every row.
        await migrate.downgrade(db, "0014")
        assert set(await where(db)) == {str(r.id) for r in old}
        assert set((await where(db)).values()) == {"predictions"}
    finally:
        await db.dispose()


async def test_a_row_without_its_partition_lands_then_moves(pg: Database) -> None:
    far = NOW + timedelta(days=400)  # beyond the partitions made ahead
    strays = [record(far), record(far + timedelta(days=1))]
    assert await PredictionWriter(db=pg).write(strays) == 2
    assert set((await where(pg)).values()) == {"predictions_default"}

    done = await partitions.ensure(pg, "day", ahead=3, now=far)
    assert len(done.created) == 4
    assert done.moved == 2
    placed = await where(pg)
    assert placed[str(strays[0].id)] == f"predictions_p{far:%Y%m%d}"
    assert placed[str(strays[1].id)] == f"predictions_p{far + timedelta(days=1):%Y%m%d}"
    # Idempotent, and every row is still there exactly once.
    assert (await partitions.ensure(pg, "day", ahead=3, now=far)).created == []
    assert await PredictionWriter(db=pg).write(strays) == 0
    # A partition made without strays is attached with the parent's key: replays collide.
    later = [record(far + timedelta(days=2))]
    assert await PredictionWriter(db=pg).write(later) == 1
    assert await PredictionWriter(db=pg).write(later) == 0
    assert (await where(pg))[str(later[0].id)] == f"predictions_p{far + timedelta(days=2):%Y%m%d}"
    assert len(await where(pg)) == 3
    # Made apart and attached, each partition still carries every index of the parent, valid.
    async with pg.engine.connect() as conn:
        per_partition: dict[str, int] = dict((await conn.execute(text(
            "SELECT c.relname, count(*) FILTER (WHERE x.indisvalid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_index x ON x.indrelid = c.oid "
            "WHERE i.inhparent = 'predictions'::regclass GROUP BY c.relname"
        ))).all())  # fmt: skip
        parent = await conn.scalar(text(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'predictions'::regclass "
            "AND indisvalid"
        ))  # fmt: skip
    assert parent == 5  # the key, BRIN on ts, model/version/ts, batch_id, shadow_of
    assert set(per_partition.values()) == {parent}, per_partition


async def test_cleanup_drops_whole_partitions_then_deletes_the_rest(pg: Database) -> None:
    # Partitions for the last 60 days, a day each, with a row in each.
    start = NOW - timedelta(days=60)
    await partitions.ensure(pg, "day", ahead=60, now=start)
    rows = [record(start + timedelta(days=d, hours=12)) for d in range(61)]
    await PredictionWriter(pg).write(rows)
    cleaned = await maintenance.cleanup(pg, days=30)
    survivors = await where(pg)
    cutoff = NOW - timedelta(days=30)
    assert {str(r.id) for r in rows if r.ts >= cutoff} == set(survivors)
    assert cleaned.rows == sum(r.ts < cutoff for r in rows)
    assert len(cleaned.partitions) >= 29  # the day the cut-off falls in is trimmed, not dropped
    async with pg.engine.connect() as conn:
        names = set((await conn.execute(text(
            "SELECT relname FROM pg_class WHERE relname LIKE 'predictions_p%'"
        ))).scalars())  # fmt: skip
    assert not names & set(cleaned.partitions)


async def test_partitions_not_ours_are_left_alone(pg: Database) -> None:
    """An operator's own partition (another name) is neither listed, dropped nor renamed."""
    async with pg.engine.begin() as conn:
        await conn.execute(text(
            "CREATE TABLE predictions_archive PARTITION OF predictions "
            "FOR VALUES FROM ('2001-01-01') TO ('2002-01-01')"
        ))  # fmt: skip
    cleaned = await maintenance.cleanup(pg, days=30)
    assert "predictions_archive" not in cleaned.partitions
    async with pg.engine.connect() as conn:
        assert await conn.scalar(text("SELECT to_regclass('predictions_archive')")) is not None
        assert "predictions_archive" not in {p.name for p in await partitions.list_partitions(conn)}


def test_the_cli_ensures_and_lists(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("PREDICTD_PARTITION_INTERVAL", "week")
    monkeypatch.setenv("PREDICTD_PARTITIONS_AHEAD", "30")
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    made = runner.invoke(app, ["db", "partitions", "ensure"])
    assert made.exit_code == 0, made.output
    assert "created" in made.output
    listed = runner.invoke(app, ["db", "partitions", "list"])
    assert listed.exit_code == 0, listed.output
    assert "predictions_default" in listed.output
    # The migration's months, then weeks up to 30 weeks ahead.
    made_names = [line.split()[0] for line in listed.output.splitlines()]
    week_after = period_start(NOW + timedelta(weeks=30), "week")
    assert f"predictions_p{week_after:%Y%m%d}" in made_names


async def test_sqlite_keeps_one_table(tmp_path: Any) -> None:
    db = Database(Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}").database)
    try:
        await migrate.upgrade(db)
        assert (await partitions.ensure(db, "month", 3)).skipped
        old = record(NOW - timedelta(days=90))
        await PredictionWriter(db).write([old, record(NOW)])
        cleaned = await maintenance.cleanup(db, days=30)
        assert cleaned == maintenance.Cleaned(1, [])
    finally:
        await db.dispose()
