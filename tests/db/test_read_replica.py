"""PREDICTD_ANALYTICS_DATABASE_URL sends analytics, drift and performance reads to a real
streaming replica (made by the test with pg_basebackup) while every write stays on the
primary. With the replica's replay paused, analytics sees the replica's older state and the
primary has more: the reads did go to the replica. A replica refuses writes, so reports that
were stored went to the primary."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from predictd.analytics.service import AnalyticsService
from predictd.db import migrate
from predictd.db.engine import Database, to_async_url
from predictd.monitoring.drift import DriftService
from predictd.monitoring.performance import PerformanceService
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.settings import Settings
from predictd.vocabulary import Window
from tests.conftest import Artifacts
from tests.support.app import register_demo
from tests.support.replica import primary_and_replica

pytestmark = pytest.mark.slow


def record(name: str, version: int) -> PredictionRecord:
    return PredictionRecord(
        id=uuid.uuid4(), ts=datetime.now(UTC), model_name=name, model_version=version,
        variant="production", request_id="r", batch_id=None,
        input={"text": "I love this product"}, output="positive", confidence=0.9,
        probabilities={"positive": 0.9, "negative": 0.1}, latency_ms=1.0, cache_hit=False,
        status="ok", error=None, client_ip="127.0.0.1", user_agent="t", shadow_of=None,
    )  # fmt: skip


async def count(url: str, sql: str) -> int:
    engine = create_async_engine(to_async_url(url))
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(sql)) or 0)
    finally:
        await engine.dispose()


async def replayed(replica_url: str) -> int:
    """Predictions the replica has replayed (none while even the migration is not there)."""
    try:
        return await count(replica_url, "SELECT count(*) FROM predictions")
    except ProgrammingError:
        return 0


async def test_reads_go_to_the_replica_and_writes_to_the_primary(artifacts: Artifacts) -> None:
    with primary_and_replica() as (primary, replica):
        primary_url, replica_url = primary.admin_url, replica.admin_url
        settings = Settings(
            _env_file=None,
            DATABASE_URL=primary_url,
            PREDICTD_ANALYTICS_DATABASE_URL=replica_url,
            PREDICTD_ARTIFACT_DIR=str(artifacts.sentiment.path.parent / "replica-artifacts"),
        )
        version = await register_demo(settings, artifacts.sentiment)
        db = Database(settings.database)
        try:
            writer = PredictionWriter(db)
            assert await writer.write([record(version.name, version.version) for _ in range(5)])
            deadline = time.monotonic() + 30
            while await replayed(replica_url) < 5:
                assert time.monotonic() < deadline, "the replica never caught up"
                await asyncio.sleep(0.1)
            async with db.read_engine.connect() as conn:
                assert await conn.scalar(text("SELECT pg_is_in_recovery()")) is True
                await conn.execute(text("SELECT pg_wal_replay_pause()"))
                await conn.commit()

            await writer.write([record(version.name, version.version) for _ in range(7)])
            assert await count(primary_url, "SELECT count(*) FROM predictions") == 12
            now = datetime.now(UTC)
            window = Window(now - timedelta(hours=1), now + timedelta(minutes=1), version.name)
            summary = await AnalyticsService(db).summary(window)
            assert summary["total"] == 5  # the replica's state, not the primary's

            # Measured on the replica, stored on the primary (the replica refuses writes).
            drift = await DriftService(db, settings.monitoring).run(timedelta(hours=1), now=now)
            performance = await PerformanceService(db).run(timedelta(hours=1), now=now)
            assert [r["rows"] for r in drift] == [5]
            assert [r["predictions"] for r in performance] == [5]
            assert await count(primary_url, "SELECT count(*) FROM drift_reports") == 1
            assert await count(primary_url, "SELECT count(*) FROM performance_metrics") == 1
            assert await count(replica_url, "SELECT count(*) FROM drift_reports") == 0
        finally:
            await db.dispose()


async def test_an_unreachable_replica_sends_reads_to_the_primary(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens on port 1: analytics (and the monitor's reads, through the same
    connection) go on, from the primary; the warning names the replica without its password."""
    settings = Settings(
        _env_file=None,
        DATABASE_URL=postgres_url,
        PREDICTD_ANALYTICS_DATABASE_URL="postgresql://reader:s3cret@127.0.0.1:1/test",
    )
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        assert await PredictionWriter(db).write([record("m", 1) for _ in range(3)]) == 3
        now = datetime.now(UTC)
        window = Window(now - timedelta(hours=1), now + timedelta(minutes=1), "m")
        with caplog.at_level("WARNING", logger="predictd.db"):
            assert (await AnalyticsService(db).summary(window))["total"] == 3
            assert (await AnalyticsService(db).summary(window))["total"] == 3
        # Once: the second read did not try the replica again (REPLICA_RETRY_S).
        [warning] = [r.getMessage() for r in caplog.records if r.name == "predictd.db"]
        assert "read replica unreachable" in warning
        shown = [getattr(r, "replica", "") for r in caplog.records if r.name == "predictd.db"]
        assert shown
        assert all("127.0.0.1:1" in s and "s3cret" not in s for s in shown)
    finally:
        await db.dispose()


def test_a_replica_needs_postgresql_on_both_sides() -> None:
    with pytest.raises(ValidationError, match="read replica"):
        Settings(
            _env_file=None,
            DATABASE_URL="sqlite:///p.db",
            PREDICTD_ANALYTICS_DATABASE_URL="postgresql://u@h/db",
        )
    with pytest.raises(ValidationError, match="a read replica"):
        Settings(
            _env_file=None,
            DATABASE_URL="postgresql://u@h/db",
            PREDICTD_ANALYTICS_DATABASE_URL="sqlite:///p.db",
        )
    alone = Database(Settings(_env_file=None, DATABASE_URL="postgresql://u@h/db").database)
    assert alone.read_engine is alone.engine  # without a replica, reads use the primary
