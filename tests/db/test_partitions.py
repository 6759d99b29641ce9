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
    """An operator's own partition (another name) is neither listed, dropped nor trimmed,
    and partitions made later are planned around it."""
    async with pg.engine.begin() as conn:
        await conn.execute(text(
            "CREATE TABLE predictions_archive PARTITION OF predictions "
            "FOR VALUES FROM ('2001-01-01') TO ('2001-03-15')"
        ))  # fmt: skip
    kept = record(datetime(2001, 2, 1, tzinfo=UTC))
    await PredictionWriter(pg).write([kept])
    made = await partitions.ensure(pg, "month", ahead=3, now=datetime(2001, 1, 20, tzinfo=UTC))
    assert made.created == ["predictions_p20010315", "predictions_p20010401"]
    cleaned = await maintenance.cleanup(pg, days=30)
    assert "predictions_archive" not in cleaned.partitions
    assert set(cleaned.partitions) >= set(made.created)
    assert (await where(pg))[str(kept.id)] == "predictions_archive"
    async with pg.engine.connect() as conn:
        assert "predictions_archive" not in {p.name for p in await partitions.list_partitions(conn)}


async def test_rows_of_a_past_period_get_their_partition(pg: Database) -> None:
    """A row of a period nobody made (the monitor was off for a while) sits in the default
    partition until the next ensure, which makes that past period too."""
    late = [record(datetime(2019, 3, 10, tzinfo=UTC)), record(datetime(2019, 5, 2, tzinfo=UTC))]
    await PredictionWriter(pg).write(late)
    assert set((await where(pg)).values()) == {partitions.DEFAULT}
    made = await partitions.ensure(pg, "month", ahead=1, now=NOW)
    assert {"predictions_p20190301", "predictions_p20190501"} <= set(made.created)
    assert made.moved == 2
    assert await where(pg) == {
        str(late[0].id): "predictions_p20190301", str(late[1].id): "predictions_p20190501"
    }  # fmt: skip


async def test_moving_strays_does_not_wait_for_writers_of_other_partitions(pg: Database) -> None:
    """An insert transaction left open on the current partition (a recorder mid-batch)
    holds no lock that making a partition and moving rows into it needs."""
    stray = record(datetime(2019, 3, 10, tzinfo=UTC))
    await PredictionWriter(pg).write([stray])
    writer = record(NOW)
    async with pg.engine.connect() as holder:
        await holder.execute(
            text("INSERT INTO predictions (id, ts, model_name, model_version, variant, "
                 "request_id, status, cache_hit, latency_ms) VALUES (:id, :ts, 'm', 1, "
                 "'production', 'r', 'ok', false, 1.0)"),
            {"id": writer.id, "ts": writer.ts},
        )  # fmt: skip
        made = await partitions.ensure(pg, "month", ahead=1, now=NOW)  # lock_timeout: 2 s
        await holder.commit()
    assert made.moved == 1
    placed = await where(pg)
    assert placed[str(stray.id)] == "predictions_p20190301"
    assert str(writer.id) in placed


async def test_a_partition_whose_lock_is_taken_is_left_whole_for_the_next_cleanup(
    pg: Database,
) -> None:
    """Retention stops at a partition it cannot lock in time: that one and the later ones
    keep every row (the next run drops them whole) rather than being emptied row by row."""
    first = datetime(2020, 1, 1, tzinfo=UTC)
    await partitions.ensure(pg, "day", ahead=9, now=first)
    rows = [record(first + timedelta(days=d, hours=12)) for d in range(7)]
    later = record(first + timedelta(days=9, hours=12))
    await PredictionWriter(pg).write([*rows, later])
    stray = record(datetime(2019, 6, 1, tzinfo=UTC))  # in the default partition, older
    await PredictionWriter(pg).write([stray])
    days = (NOW - (first + timedelta(days=7))).days  # the cut-off falls on January 8th
    async with pg.engine.connect() as reader:  # a long reader of January 4th's partition
        await reader.execute(text('SELECT count(*) FROM "predictions_p20200104"'))
        cleaned = await maintenance.cleanup(pg, days=days)
        await reader.rollback()
    assert cleaned.partitions == ["predictions_p20200101", "predictions_p20200102",
                                  "predictions_p20200103"]  # fmt: skip
    survivors = await where(pg)
    assert {str(r.id) for r in rows[3:]} | {str(later.id)} == set(survivors)
    assert cleaned.rows == 4  # three dropped whole, the stray deleted
    again = await maintenance.cleanup(pg, days=days)
    assert again.partitions == [f"predictions_p202001{d:02d}" for d in range(4, 8)]
    assert set(await where(pg)) == {str(later.id)}


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


async def test_reading_coverage_keeps_the_statement_timeout(pg: Database) -> None:
    """The series read that asks for coverage keeps its statement timeout (only partition
    changes lift it)."""
    async with pg.engine.begin() as conn:
        before = await conn.scalar(text("SHOW statement_timeout"))
        assert before != "0"
        assert await partitions.coverage(conn, NOW) is not None
        assert await conn.scalar(text("SHOW statement_timeout")) == before
