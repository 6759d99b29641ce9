"""The monitor's Prometheus series from the database's latest rows, on SQLite and PostgreSQL:
realised and estimated accuracy, drift share and flags, shadow agreement (measured by the
monitor pass), only for production and staging versions; and the database-reachable gauge."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from predictd.app import create_app
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.monitoring.repository import DriftRepository, PerformanceRepository
from predictd.monitoring.series import MAX_FEATURES, MonitorSeries, Snapshot, measure_agreement
from predictd.observability import Metrics
from predictd.recording.repository import PredictionWriter
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, wait_shipped, wait_started

NOW = datetime.now(UTC).replace(microsecond=0)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def of(found: Samples, name: str) -> dict[tuple[str, ...], float]:
    """One family's samples, keyed by label values (model, version[, feature])."""
    order = ("model", "version", "feature")
    return {
        tuple(dict(labels)[k] for k in order if k in dict(labels)): value
        for (series, labels), value in found.items()
        if series == name
    }


def performance(version: int, at: datetime, realised: float | None, estimated: float) -> Any:
    return {
        "model_name": "clf", "model_version": version, "task": "classification",
        "window_start": at - timedelta(hours=1), "window_end": at, "computed_at": at,
        "predictions": 100, "labelled": 50,
        "metrics": None if realised is None else {"accuracy": realised},
        "estimated": {"accuracy": estimated},
    }  # fmt: skip


def drift(version: int, at: datetime, features: dict[str, Any], status: str = "ok") -> Any:
    tested = [r for r in features.values() if r["status"] == "ok"]
    share = sum(r["drifted"] for r in tested) / len(tested) if tested else None
    return {
        "model_name": "clf", "model_version": version, "window_start": at - timedelta(hours=1),
        "window_end": at, "computed_at": at, "status": status, "rows": 500, "score": share,
        "drift_detected": bool(share), "features": features, "outputs": None, "message": "",
    }  # fmt: skip


def flag(drifted: bool, status: str = "ok") -> dict[str, Any]:
    return {"status": status, "drifted": drifted, "rows": 500}


async def test_latest_rows_become_series(tmp_path: Path, db_url: str, artifacts: Artifacts) -> None:
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    await migrate.upgrade(db)
    try:
        registry = ModelRegistry(settings.inference, db)
        clf = registry.inspect(artifacts.sentiment.path, "clf")
        await registry.register(clf, stage="production")  # v1
        await registry.register(clf, stage="staging", reuse=False)  # v2, the candidate
        await registry.register(clf, stage="none", reuse=False)  # v3: no series

        # v2 shadows ten production answers and gives the same label on seven.
        ts = NOW - timedelta(minutes=5)
        prod = [make_record(ts=ts, model_name="clf", output="positive") for _ in range(10)]
        shadow = [
            make_record(ts=ts, model_name="clf", model_version=2, variant="shadow",
                        shadow_of=p.id, output="positive" if i < 7 else "negative")
            for i, p in enumerate(prod)
        ]  # fmt: skip
        await PredictionWriter(db).write(prod + shadow)
        measured = await measure_agreement(db, timedelta(hours=1), now=NOW)
        assert measured == [
            {"model": "clf", "version": 2, "shadowed": 10, "agreed": 7, "rate": 0.7}
        ]

        features = {f"f{i:02}": flag(i % 2 == 0) for i in range(MAX_FEATURES + 10)}
        features["text_len"] = flag(True, status="insufficient_data")  # untested: no flag
        async with db.engine.begin() as conn:
            perf, reports = PerformanceRepository(conn), DriftRepository(conn)
            await perf.add(performance(1, NOW - timedelta(hours=1), 0.5, 0.6))
            await perf.add(performance(1, NOW, 0.8, 0.75))  # the latest wins
            await perf.add(performance(2, NOW, None, 0.7))  # no labels yet: estimate only
            await perf.add(performance(3, NOW, 0.1, 0.1))  # neither production nor staging
            await reports.add(drift(1, NOW - timedelta(hours=1), {"a": flag(True)}))
            await reports.add(drift(1, NOW, features))
            await reports.add(drift(2, NOW, {}, status="insufficient_data"))

        metrics = Metrics.create()
        series = MonitorSeries(db, metrics, timedelta(hours=24))
        metrics.collect_from(series)
        assert await series.refresh()
        found = samples(metrics)
        assert of(found, "predictd_model_realised_accuracy_ratio") == {("clf", "1"): 0.8}
        assert of(found, "predictd_model_estimated_accuracy_ratio") == {
            ("clf", "1"): 0.75,
            ("clf", "2"): 0.7,
        }
        assert of(found, "predictd_shadow_agreement_ratio") == {("clf", "2"): 0.7}
        share = (MAX_FEATURES + 10) // 2 / (MAX_FEATURES + 10)
        assert of(found, "predictd_drift_share_ratio") == {("clf", "1"): share}
        flags = of(found, "predictd_drift_feature_drifted")
        assert len(flags) == MAX_FEATURES  # capped, the first names in order
        assert flags[("clf", "1", "f00")] == 1.0
        assert flags[("clf", "1", "f01")] == 0.0
        assert ("clf", "1", "text_len") not in flags
        assert found[("predictd_db_pool_ready", ())] == 1.0

        # A later pass in which v2 no longer shadows anything keeps its last agreement.
        assert await measure_agreement(db, timedelta(minutes=1), now=NOW + timedelta(hours=1)) == []
        assert await series.refresh()
        assert of(samples(metrics), "predictd_shadow_agreement_ratio") == {("clf", "2"): 0.7}

        # Stopped collecting (the app's shutdown), the families leave the registry.
        metrics.stop_collecting(series)
        assert of(samples(metrics), "predictd_shadow_agreement_ratio") == {}
    finally:
        await db.dispose()


async def test_partition_coverage_becomes_series(tmp_path: Path, db_url: str) -> None:
    """PostgreSQL: how many partitions lie ahead, and whether rows fell into the default
    partition; SQLite has no partitions, so the families are there with no sample."""
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    await migrate.upgrade(db)
    try:
        metrics = Metrics.create()
        series = MonitorSeries(db, metrics, timedelta(hours=1))
        metrics.collect_from(series)
        assert await series.refresh()
        found = samples(metrics)
        names = {name for name, _ in found}
        if db.dialect == "sqlite":
            assert "predictd_partitions_ahead" not in names
            exposition = generate_latest(metrics.registry).decode()
            assert "# TYPE predictd_partitions_ahead gauge" in exposition
            return
        # Migration 0015 made this month and the next three.
        assert found[("predictd_partitions_ahead", ())] == 3.0
        assert found[("predictd_partition_default_used", ())] == 0.0
        far = datetime(2099, 1, 1, tzinfo=UTC)  # a month no one made: the default partition
        await PredictionWriter(db).write([make_record(ts=far)])
        async with db.engine.begin() as conn:
            newest = await conn.scalar(text(
                "SELECT max(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'predictions'::regclass AND c.relname <> 'predictions_default'"
            ))  # fmt: skip
            await conn.execute(text(f'DROP TABLE "{newest}"'))
        assert await series.refresh()
        found = samples(metrics)
        assert found[("predictd_partitions_ahead", ())] == 2.0
        assert found[("predictd_partition_default_used", ())] == 1.0
    finally:
        await db.dispose()


async def test_unreachable_database_keeps_the_last_values(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/none", db_connect_timeout_s=0.5
    )
    db = Database(settings.database)
    try:
        metrics = Metrics.create()
        series = MonitorSeries(db, metrics, timedelta(hours=1))
        metrics.collect_from(series)
        series.snapshot = Snapshot(realised={("clf", "1"): 0.9})
        metrics.db_pool_ready.set(1)
        assert not await series.refresh()
        found = samples(metrics)
        assert found[("predictd_db_pool_ready", ())] == 0.0
        assert of(found, "predictd_model_realised_accuracy_ratio") == {("clf", "1"): 0.9}
    finally:
        await db.dispose()


async def test_the_app_exports_confidence_feedback_and_database_series(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    """One process, through the app: a histogram observation per answer, feedback counted
    as received and matched, the database reachable once the series have been read."""
    settings = make_settings(
        tmp_path, db_url, model_path=artifacts.sentiment.path, metrics_refresh_s=0.1
    )
    metrics = Metrics.create()
    app = create_app(settings, metrics)
    async with app.router.lifespan_context(app):
        await wait_started(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = [
                (await client.post("/predict", json={"text": f"I love it {n}"})).json()
                for n in range(4)
            ]
            batch = await client.post("/batch", json={"items": [{"text": "bad"}] * 3})
            assert batch.status_code == 200, batch.text
            await wait_shipped(app)
            sent = [{"prediction_id": a["prediction_id"], "actual": "positive"} for a in answers]
            sent.append({"prediction_id": str(uuid.uuid4()), "actual": "negative"})
            ack = await client.post("/feedback/batch", json={"items": sent})
            assert ack.json()["unmatched"] == [sent[-1]["prediction_id"]]
            deadline = asyncio.get_running_loop().time() + 10
            while metrics.registry.get_sample_value("predictd_db_pool_ready") != 1:
                assert asyncio.get_running_loop().time() < deadline, "never read the series"
                await asyncio.sleep(0.05)
            text = (await client.get("/metrics")).text
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    version = (("model", answers[0]["model_name"]), ("version", str(answers[0]["model_version"])))
    assert found[("predictd_prediction_confidence_ratio_count", version)] == 7
    assert found[("predictd_prediction_confidence_ratio_sum", version)] == pytest.approx(
        sum(a["confidence"] for a in answers)
        + sum(item["confidence"] for item in batch.json()["predictions"])
    )
    assert found[("predictd_feedback_received_total", ())] == 5
    assert found[("predictd_feedback_matched_total", ())] == 4
    assert found[("predictd_db_pool_ready", ())] == 1
    assert ("predictd_db_pool_connections_in_use", ()) in found
    # After shutdown the collector is gone from the registry the app was given.
    assert "predictd_shadow_agreement_ratio" not in generate_latest(metrics.registry).decode()
