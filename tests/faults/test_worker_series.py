"""The new ML series under `predictd serve --workers 2` on PostgreSQL, as real processes:
per-process counters and the confidence histogram add up over the workers, and the values
read from the database (latest accuracy, drift, the database gauge) are the same whichever
worker answers the scrape, never a sum over the workers."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from predictd.db.engine import Database
from predictd.monitoring.repository import DriftRepository, PerformanceRepository
from predictd.settings import Settings
from tests.monitoring.test_series import drift, flag, performance
from tests.support.server import ServerPool, wait_all_recorded, wait_for

TEXTS = ["I love this product", "This is terrible, I want a refund", "The box contains two cables"]
SERIES = (
    "predictd_prediction_confidence_ratio_count",
    "predictd_prediction_confidence_ratio_sum",
    "predictd_feedback_received_total",
    "predictd_feedback_matched_total",
    "predictd_model_realised_accuracy_ratio",
    "predictd_model_estimated_accuracy_ratio",
    "predictd_drift_share_ratio",
    "predictd_drift_feature_drifted",
    "predictd_db_pool_ready",
)


def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with httpx.Client(base_url=base_url, timeout=10) as client:  # a new connection each
        response = client.get("/metrics")
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name in SERIES
    }


async def store_monitor_rows(url: str, name: str) -> None:
    """What a monitor pass would have stored for version 1 (the rows, written directly)."""
    db = Database(Settings(database_url=url).database)
    now = datetime.now(UTC)
    try:
        async with db.engine.begin() as conn:
            rows = [performance(1, now, 0.8, 0.75) | {"model_name": name}]
            await PerformanceRepository(conn).add(rows[0])
            features = {"a": flag(True), "b": flag(False), "c": flag(False), "d": flag(False)}
            await DriftRepository(conn).add(drift(1, now, features) | {"model_name": name})
    finally:
        await db.dispose()


def test_two_workers_export_the_ml_series_once(
    tmp_path: Path, postgres_url: str, servers: ServerPool
) -> None:
    server = servers.start(
        postgres_url,
        spool_dir=tmp_path / "spool",
        args=["--workers", "2"],
        env={"PREDICTD_METRICS_REFRESH_S": "0.5"},
    )

    def predict(text: str) -> tuple[str, str, float]:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            answer = client.post("/predict", json={"text": text})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            return str(body["prediction_id"]), str(body["model_name"]), float(body["confidence"])

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(predict, [TEXTS[i % 3] for i in range(60)]))
    ids = [i for i, _, _ in answered]
    name = answered[0][1]
    wait_all_recorded(postgres_url, ids, details=servers.report)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for i in ids[:10]:
            assert client.post("/feedback", json={"prediction_id": i, "actual": "positive"}).json()[
                "matched"
            ]
        unknown = {"prediction_id": str(uuid.uuid4()), "actual": "positive"}
        assert client.post("/feedback", json=unknown).json()["matched"] is False
    asyncio.run(store_monitor_rows(postgres_url, name))

    version = {("model", name), ("version", "1")}
    expected = {
        ("predictd_prediction_confidence_ratio_count", frozenset(version)): 60.0,
        ("predictd_feedback_received_total", frozenset()): 11.0,
        ("predictd_feedback_matched_total", frozenset()): 10.0,
        ("predictd_model_realised_accuracy_ratio", frozenset(version)): 0.8,
        ("predictd_model_estimated_accuracy_ratio", frozenset(version)): 0.75,
        ("predictd_drift_share_ratio", frozenset(version)): 0.25,
        ("predictd_drift_feature_drifted", frozenset(version | {("feature", "a")})): 1.0,
        ("predictd_drift_feature_drifted", frozenset(version | {("feature", "b")})): 0.0,
        ("predictd_db_pool_ready", frozenset()): 1.0,
    }

    def settled() -> bool:  # both workers have read the rows since they were stored
        return all(
            all(found.get(key) == value for key, value in expected.items())
            for found in (scrape(server.base_url) for _ in range(6))
        )

    wait_for(settled, 15, "every worker's scrape to show the stored rows", servers.report)
    seen = [scrape(server.base_url) for _ in range(10)]
    for found in seen:
        for key, value in expected.items():
            assert found.get(key) == value, (key, found.get(key))
        total = found[("predictd_prediction_confidence_ratio_sum", frozenset(version))]
        assert abs(total - sum(c for _, _, c in answered)) < 1e-6
    assert all(found == seen[0] for found in seen)  # the same, whichever worker answered
