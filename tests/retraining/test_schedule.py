"""Retraining on the server's schedule: one candidate per model per interval however many
replicas race for it (PostgreSQL), too few labels skipped quietly, and the app's own task."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from benchmarks.retrain_recovery import MODEL, Scenario, shifted_stream, write_artifacts
from sqlalchemy import select

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import audit_log
from predictd.inference.values import RequestContext, build_record
from predictd.monitoring.feedback import FeedbackItem, FeedbackService
from predictd.recording.repository import PredictionWriter
from predictd.registry.datasets import DatasetFile
from predictd.registry.service import ModelRegistry
from predictd.retraining import run_due
from predictd.retraining.schedule import SCHEDULED
from predictd.settings import RetrainingSettings, Settings
from tests.support.app import make_settings, running_app, services_of

INTERVAL = timedelta(days=7)
RETRAINING = RetrainingSettings(min_labelled=20)


async def prepare(settings: Settings, tmp_path: Path, labelled: int) -> None:
    """MODEL v1 in production with its training data, and ``labelled`` of its predictions
    with feedback (written as the recorder writes them)."""
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        artifact, data = write_artifacts(Scenario(base_rows=200), tmp_path / "model")
        version = await registry.register(
            await asyncio.to_thread(
                registry.inspect, artifact, MODEL, training_data=DatasetFile(data)
            )
        )
        meta = version.meta(source="test", loaded_at=version.created_at)
        rows = shifted_stream(Scenario(before=0, after=labelled, feedback=1.0))
        now = datetime.now(UTC) - timedelta(minutes=5)
        records = [
            build_record(
                meta,
                row.features,
                None,
                uuid.uuid4(),
                now + timedelta(seconds=n),
                RequestContext(),
                batch_id=None,
                latency_ms=1.0,
                variant="production",
            )
            for n, row in enumerate(rows)
        ]
        await PredictionWriter(db).write(records)
        feedback = [FeedbackItem(r.id, row.label) for r, row in zip(records, rows, strict=True)]
        await FeedbackService(db).submit(feedback)
    finally:
        await db.dispose()


async def scheduled_runs(db: Database) -> list[dict[str, object] | None]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_log.c.after)
            .where(audit_log.c.action == SCHEDULED)
            .order_by(audit_log.c.id)
        )
        return [row[0] for row in rows]


@pytest.mark.postgres
async def test_replicas_racing_make_one_candidate_per_interval(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = make_settings(tmp_path, postgres_url)
    await prepare(settings, tmp_path, labelled=60)
    replicas = [Database(settings.database) for _ in range(3)]
    try:
        registries = [ModelRegistry(settings.inference, db) for db in replicas]
        made = await asyncio.gather(
            *(
                run_due(db, r, RETRAINING, INTERVAL)
                for db, r in zip(replicas, registries, strict=True)
            )
        )
        assert sorted(len(m) for m in made) == [0, 0, 1]
        versions = await registries[0].list_versions(MODEL)
        assert [(v.version, v.stage) for v in versions] == [(1, "production"), (2, "none")]
        assert await scheduled_runs(replicas[0]) == [{"version": 2}]

        # Within the interval nobody runs it again; once it has passed, the next pass does.
        assert await run_due(replicas[1], registries[1], RETRAINING, INTERVAL) == []
        again = await run_due(replicas[2], registries[2], RETRAINING, timedelta(microseconds=1))
        assert [r.version.version for r in again] == [3]
        assert await scheduled_runs(replicas[0]) == [{"version": 2}, {"version": 3}]
    finally:
        for db in replicas:
            await db.dispose()


async def test_too_few_labels_are_skipped_quietly(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, db_url)
    await prepare(settings, tmp_path, labelled=5)
    db = Database(settings.database)
    try:
        registry = ModelRegistry(settings.inference, db)
        with caplog.at_level(logging.INFO, logger="predictd.retraining"):
            assert await run_due(db, registry, RETRAINING, INTERVAL) == []
        skipped = [r for r in caplog.records if r.getMessage() == "retraining skipped"]
        assert len(skipped) == 1
        assert skipped[0].levelno == logging.INFO
        runs = await scheduled_runs(db)
        assert len(runs) == 1
        assert runs[0] is not None
        assert "5 usable labelled predictions" in str(runs[0]["skipped"])
        assert [v.version for v in await registry.list_versions(MODEL)] == [1]
    finally:
        await db.dispose()


async def test_the_server_retrains_on_its_interval(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, url, retrain_interval="1s", retrain_min_labelled=20)
    await prepare(settings, tmp_path, labelled=40)
    async with running_app(settings) as (app, _):
        registry = services_of(app).registry
        deadline = time.monotonic() + 30
        while len(await registry.list_versions(MODEL)) < 2:
            assert time.monotonic() < deadline, "no candidate within 30 s"
            await asyncio.sleep(0.2)
        candidate = (await registry.list_versions(MODEL))[1]
    assert candidate.stage == "none"
    assert candidate.parent_version == 1
    assert candidate.tags == {"trained_by": "predictd train"}
    assert candidate.training_run is not None
    assert candidate.training_run["rows"]["labelled"] == 40
