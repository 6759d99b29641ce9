"""PredictionRecorder against the real databases: exactly-once delivery, overflow, outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.errors import SpoolFull
from predictd.observability import Metrics
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.recorder import PredictionRecorder
from predictd.recording.repository import PredictionWriter
from predictd.recording.spool import Spool
from predictd.settings import Settings
from tests.support.app import id_counts, make_settings

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"  # discard port: refused at once


def make_record(**overrides: Any) -> PredictionRecord:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "ts": datetime.now(UTC),
        "model_name": "m",
        "model_version": 1,
        "variant": "production",
        "request_id": "r",
        "batch_id": None,
        "input": {"text": "hello"},
        "output": "positive",
        "confidence": 0.9,
        "probabilities": {"positive": 0.9, "negative": 0.1},
        "latency_ms": 1.5,
        "cache_hit": False,
        "status": "ok",
        "error": None,
        "client_ip": "127.0.0.1",
        "user_agent": "test",
    }
    values.update(overrides)
    return PredictionRecord(**values)


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


@asynccontextmanager
async def recorder_for(settings: Settings) -> AsyncIterator[tuple[PredictionRecorder, Metrics]]:
    db = Database(settings.database)
    metrics = Metrics.create()
    recorder = PredictionRecorder(settings.recording, PredictionWriter(db), metrics)
    recorder.start()
    try:
        yield recorder, metrics
    finally:
        await recorder.close()
        await db.dispose()


async def migrated(url: str) -> None:
    db = Database(Settings(database_url=url).database)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


async def drain(recorder: PredictionRecorder, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while recorder.state().committed_lsn < recorder.state().last_lsn:
        assert time.monotonic() < deadline, recorder.state()
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("durability", ["memory", "process", "strict"])
async def test_every_record_lands_exactly_once(
    tmp_path: Path, db_url: str, durability: str
) -> None:
    await migrated(db_url)
    settings = make_settings(tmp_path, db_url, durability=durability, record_batch=50)
    records = [make_record() for _ in range(500)]
    async with recorder_for(settings) as (recorder, _):
        for start in range(0, 500, 7):
            assert await recorder.record(records[start : start + 7])
        await drain(recorder)
    counts = await id_counts(db_url, [r.id for r in records])
    assert set(counts.values()) == {1}


async def test_close_ships_a_part_batch_without_waiting_for_the_flush_interval(
    tmp_path: Path, db_url: str
) -> None:
    """A part-filled batch waits up to PREDICTD_RECORD_FLUSH_MS for company; close() must not
    wait with it. With a flush interval longer than the shutdown flush window, everything
    recorded still reaches the database before close() returns (not only the spool)."""
    await migrated(db_url)
    settings = make_settings(
        tmp_path, db_url, record_flush_ms=600_000, record_batch=1000, shutdown_flush_s=30
    )
    records = [make_record() for _ in range(3)]
    async with recorder_for(settings) as (recorder, _):
        assert await recorder.record(records)
    counts = await id_counts(db_url, [r.id for r in records])
    assert set(counts.values()) == {1}


async def test_queue_overflow_is_read_back_from_the_spool(tmp_path: Path, db_url: str) -> None:
    await migrated(db_url)
    settings = make_settings(tmp_path, db_url, record_queue_max=5, record_batch=20)
    records = [make_record() for _ in range(300)]
    async with recorder_for(settings) as (recorder, _):
        for record in records:
            await recorder.record([record])
        await drain(recorder)
    counts = await id_counts(db_url, [r.id for r in records])
    assert set(counts.values()) == {1}


async def test_outage_spools_then_a_restart_replays(tmp_path: Path, db_url: str) -> None:
    await migrated(db_url)
    down = make_settings(tmp_path, UNREACHABLE, db_connect_timeout_s=0.5)
    records = [make_record() for _ in range(120)]
    async with recorder_for(down) as (recorder, metrics):
        for record in records:
            assert await recorder.record([record])
        assert recorder.state().spool_bytes > 0
    assert sample(metrics, "predictd_db_write_errors_total") >= 1

    up = make_settings(tmp_path, db_url)  # same spool directory
    async with recorder_for(up) as (recorder, _):
        await drain(recorder)
        assert recorder.state().spool_bytes == 0
    counts = await id_counts(db_url, [r.id for r in records])
    assert set(counts.values()) == {1}


async def test_replaying_already_committed_records_adds_nothing(
    tmp_path: Path, db_url: str
) -> None:
    await migrated(db_url)
    settings = make_settings(tmp_path, db_url)
    records = [make_record() for _ in range(40)]
    async with recorder_for(settings) as (recorder, _):
        await recorder.record(records)
        await drain(recorder)
    (next(settings.recording.spool_dir.glob("w*")) / "committed").unlink()  # lose the watermark
    async with recorder_for(settings) as (recorder, _):
        await drain(recorder)
    counts = await id_counts(db_url)
    assert len(counts) == 40
    assert set(counts.values()) == {1}


async def test_full_spool_rejects_by_default(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, UNREACHABLE, spool_max_bytes=1 << 16, spool_segment_bytes=1 << 12
    )
    async with recorder_for(settings) as (recorder, _):
        with pytest.raises(SpoolFull):
            for _ in range(10_000):
                await recorder.record([make_record(input={"text": "x" * 500})])
        assert recorder.spool is not None
        assert recorder.spool.size_bytes < (1 << 16) + 4096  # bounded


async def test_full_spool_sheds_and_counts(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        UNREACHABLE,
        spool_max_bytes=1 << 16,
        spool_segment_bytes=1 << 12,
        spool_full_policy="shed",
    )
    async with recorder_for(settings) as (recorder, metrics):
        results = [
            await recorder.record([make_record(input={"text": "x" * 500})]) for _ in range(300)
        ]
    assert results[0] is True
    assert results[-1] is False
    assert sample(metrics, "predictd_records_unrecorded_total") == results.count(False)


async def test_memory_durability_bounds_its_queue(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, UNREACHABLE, durability="memory", record_queue_max=10)
    async with recorder_for(settings) as (recorder, _):
        assert recorder.spool is None
        with pytest.raises(SpoolFull):
            for _ in range(100):
                await recorder.record([make_record()])
        assert recorder.state().queue_depth <= 10


async def test_a_row_the_database_refuses_does_not_block_the_rest(
    tmp_path: Path, postgres_url: str
) -> None:
    await migrated(postgres_url)
    settings = make_settings(tmp_path, postgres_url, record_batch=100)
    good = [make_record() for _ in range(30)]
    bad = make_record(request_id="r" * 100)  # longer than the column allows
    async with recorder_for(settings) as (recorder, metrics):
        await recorder.record([*good[:15], bad, *good[15:]])
        await drain(recorder)
    counts = await id_counts(postgres_url, [*[r.id for r in good], bad.id])
    assert counts[str(bad.id)] == 0
    assert all(counts[str(r.id)] == 1 for r in good)
    assert sample(metrics, "predictd_records_quarantined_total") == 1


async def test_writer_recovers_when_its_connections_are_killed(
    tmp_path: Path, postgres_url: str
) -> None:
    """The writer drives asyncpg directly; a connection the server dropped must not be
    handed out again (no pre-ping on the writer's pool)."""
    await migrated(postgres_url)
    settings = make_settings(tmp_path, postgres_url)
    first, second = [make_record() for _ in range(20)], [make_record() for _ in range(20)]
    async with recorder_for(settings) as (recorder, _):
        await recorder.record(first)
        await drain(recorder)
        db = Database(Settings(database_url=postgres_url).database)
        try:
            async with db.engine.connect() as conn:
                await conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        finally:
            await db.dispose()
        await recorder.record(second)
        await drain(recorder)
    counts = await id_counts(postgres_url, [r.id for r in first + second])
    assert set(counts.values()) == {1}


async def test_spools_left_by_dead_processes_are_adopted_and_live_ones_left_alone(
    tmp_path: Path, db_url: str
) -> None:
    await migrated(db_url)
    settings = make_settings(tmp_path, db_url)
    spools = [
        Spool(settings.recording.spool_dir, segment_bytes=1 << 20, max_bytes=16 << 20, fsync=False)
        for _ in range(3)
    ]
    written: list[list[PredictionRecord]] = []
    for spool in spools:
        spool.open()  # w0, w1, w2
        records = [make_record() for _ in range(40)]
        spool.append([r.to_bytes() for r in records])
        written.append(records)
    spools[0].close()  # w0 and w2: their processes are gone
    spools[2].close()  # w1 stays held, as by a live worker
    try:
        async with recorder_for(settings) as (recorder, _):
            # The recorder claims w0 (the first free one) as its own and adopts w2.
            assert recorder.spool is not None
            assert recorder.spool.dir.name == "w0"
            dead = [r.id for r in written[0] + written[2]]
            deadline = time.monotonic() + 20
            while set((await id_counts(db_url, dead)).values()) != {1}:
                assert time.monotonic() < deadline, "orphaned records were not shipped"
                await asyncio.sleep(0.05)
            while any((settings.recording.spool_dir / "w2").glob("*.seg")):
                assert time.monotonic() < deadline, "the adopted spool was not emptied"
                await asyncio.sleep(0.05)
        assert set((await id_counts(db_url, [r.id for r in written[1]])).values()) == {0}
    finally:
        spools[1].close()
