"""Performance per version: realised metrics from feedback (checked against scikit-learn on
the same pairs), the label-free estimate (plain and calibrated), storage, the API and the CLI,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)
from sqlalchemy import update
from typer.testing import CliRunner

from predictd.cli import app as cli
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import model_versions
from predictd.monitoring.feedback import FeedbackItem, FeedbackService
from predictd.monitoring.performance import (
    LabelConfidence,
    PerformanceService,
    classification_metrics,
    estimated_performance,
)
from predictd.recording.prediction_record import PredictionRecord
from predictd.recording.repository import PredictionWriter
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.recording.test_recorder import make_record
from tests.support.app import make_settings, running_app

NOW = datetime.now(UTC).replace(microsecond=0)
LABELS = ["negative", "neutral", "positive"]


def test_classification_metrics_agree_with_scikit_learn() -> None:
    rng = random.Random(5)
    actual = [rng.choice(LABELS) for _ in range(500)]
    predicted = [a if rng.random() < 0.7 else rng.choice(LABELS) for a in actual]
    confusion: dict[tuple[str, str], int] = {}
    for pred, act in zip(predicted, actual, strict=True):
        confusion[(pred, act)] = confusion.get((pred, act), 0) + 1
    mine = classification_metrics(confusion)
    precision, recall, f1, _ = precision_recall_fscore_support(
        actual, predicted, average="macro", zero_division=0
    )
    assert mine["accuracy"] == pytest.approx(accuracy_score(actual, predicted))
    assert mine["precision_macro"] == pytest.approx(precision)
    assert mine["recall_macro"] == pytest.approx(recall)
    assert mine["f1_macro"] == pytest.approx(f1)
    assert sum(map(sum, mine["confusion"]["matrix"])) == 500


@pytest.mark.parametrize("classes", [2, 3])
def test_expected_f1_matches_a_calibrated_model(classes: int) -> None:
    """A model right with exactly its confidence: the label-free estimate of accuracy and
    macro F1 must land on what labels later show (exact for two classes; for three, errors
    fall on the other labels in proportion to how often they are predicted)."""
    rng = random.Random(classes)
    labels = LABELS[:classes]
    weights = [0.5, 0.3, 0.2][:classes]
    predicted: list[str] = []
    actual: list[str] = []
    per_label: dict[str, tuple[list[int], float, int]] = {}
    for _ in range(40_000):
        label = rng.choices(labels, weights)[0]
        confidence = rng.uniform(0.5, 1.0)
        others = [x for x in labels if x != label]
        wrong = rng.choices(others, [weights[labels.index(x)] for x in others])[0]
        predicted.append(label)
        actual.append(label if rng.random() < confidence else wrong)
        bins, total, count = per_label.get(label, ([0] * 10, 0.0, 0))
        bins[min(9, int(confidence * 10))] += 1
        per_label[label] = (bins, total + confidence, count + 1)
    estimate = estimated_performance(
        {label: LabelConfidence(*value) for label, value in per_label.items()}, None
    )
    assert estimate is not None
    assert estimate["accuracy"] == pytest.approx(accuracy_score(actual, predicted), abs=0.01)
    realised_f1 = f1_score(actual, predicted, average="macro")
    assert estimate["f1_macro"] == pytest.approx(realised_f1, abs=0.01)
    assert estimated_performance({}, None) is None


async def setup(settings: Settings, artifacts: Artifacts) -> Database:
    db = Database(settings.database)
    await migrate.upgrade(db)
    registry = ModelRegistry(settings.inference, db)
    classifier = registry.inspect(artifacts.sentiment.path, "clf")
    await registry.register(classifier, stage="production")
    # A regressor's registry row: only its task matters to the monitor.
    await registry.register(replace(classifier, name="reg", task="regression"), stage="production")
    return db


def seed(rng: random.Random) -> tuple[list[PredictionRecord], dict[uuid.UUID, Any]]:
    records, truth = [], {}
    for n in range(300):
        ts = NOW - timedelta(minutes=rng.uniform(1, 600))
        if n % 2:
            value = rng.uniform(0, 10)
            record = make_record(id=uuid.uuid4(), ts=ts, model_name="reg", output=value,
                                 confidence=None, probabilities=None)  # fmt: skip
            actual: Any = value + rng.gauss(0, 1)
        else:
            label = rng.choice(LABELS)
            confidence = rng.uniform(0.4, 1.0)
            record = make_record(id=uuid.uuid4(), ts=ts, model_name="clf", output=label,
                                 confidence=confidence)  # fmt: skip
            actual = label if rng.random() < confidence else rng.choice(LABELS)
        records.append(record)
        if rng.random() < 0.6:
            truth[record.id] = actual
    # Outside the window, a shadow answer, and a failure: none of them count.
    records.append(make_record(id=uuid.uuid4(), ts=NOW - timedelta(days=3), model_name="clf"))
    records.append(make_record(id=uuid.uuid4(), ts=NOW, model_name="clf", variant="shadow"))
    records.append(make_record(id=uuid.uuid4(), ts=NOW, model_name="clf", status="error",
                               output=None, confidence=None))  # fmt: skip
    for extra in records[-3:]:
        truth[extra.id] = "negative"
    return records, truth


async def test_realised_and_estimated_performance(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url)
    db = await setup(settings, artifacts)
    try:
        rng = random.Random(9)
        records, truth = seed(rng)
        await PredictionWriter(db).write(records)
        await FeedbackService(db).submit([FeedbackItem(i, a) for i, a in truth.items()])

        rows = await PerformanceService(db).run(timedelta(hours=24), now=NOW + timedelta(minutes=1))
        by_name = {row["model_name"]: row for row in rows}
        assert set(by_name) == {"clf", "reg"}

        counted = [r for r in records[:-3]]
        clf = [r for r in counted if r.model_name == "clf"]
        labelled = [r for r in clf if r.id in truth]
        row = by_name["clf"]
        assert (row["predictions"], row["labelled"]) == (len(clf), len(labelled))
        expected_accuracy = accuracy_score([truth[r.id] for r in labelled],
                                           [r.output for r in labelled])  # fmt: skip
        assert row["metrics"]["accuracy"] == pytest.approx(expected_accuracy)
        mean_confidence = sum(r.confidence or 0 for r in clf) / len(clf)
        estimated = row["estimated"]
        assert estimated["calibrated"] is False
        assert estimated["accuracy"] == pytest.approx(mean_confidence)
        assert estimated["gap"] == pytest.approx(expected_accuracy - mean_confidence)
        assert estimated["f1_gap"] == pytest.approx(
            row["metrics"]["f1_macro"] - estimated["f1_macro"]
        )
        assert 0 < estimated["f1_macro"] < 1

        reg = [r for r in counted if r.model_name == "reg" and r.id in truth]
        y, yhat = [truth[r.id] for r in reg], [r.output for r in reg]
        metrics = by_name["reg"]["metrics"]
        assert metrics["mae"] == pytest.approx(mean_absolute_error(y, yhat))
        assert metrics["rmse"] == pytest.approx(mean_squared_error(y, yhat) ** 0.5)
        assert metrics["r2"] == pytest.approx(r2_score(y, yhat))
        assert by_name["reg"]["estimated"] is None

        # With a calibration (observed accuracy per confidence bin), the estimate uses it.
        calibration = [None, None, None, None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
        async with db.engine.begin() as conn:
            await conn.execute(
                update(model_versions)
                .where(model_versions.c.name == "clf")
                .values(reference_profile={"calibration": calibration})
            )
        again = await PerformanceService(db).run(
            timedelta(hours=24), model="clf", now=NOW + timedelta(minutes=1)
        )
        bins = [min(9, int((r.confidence or 0) * 10)) for r in clf]
        calibrated = sum(calibration[b] or 0 for b in bins) / len(bins)
        assert again[0]["estimated"]["calibrated"] is True
        assert again[0]["estimated"]["accuracy"] == pytest.approx(calibrated)
    finally:
        await db.dispose()

    async with running_app(settings) as (_, client):
        listed = (await client.get("/analytics/performance", params={"model": "clf"})).json()
        assert [item["model_name"] for item in listed["items"]] == ["clf", "clf"]
        assert listed["items"][0]["estimated"]["calibrated"] is True  # newest first
        bad = await client.get("/analytics/performance", params={"version": 0})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "version"


def test_monitor_run_command(
    tmp_path: Path, db_url: str, artifacts: Artifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    settings = make_settings(tmp_path, db_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(settings.inference.artifact_dir))

    async def prepare() -> None:
        db = await setup(settings, artifacts)
        try:
            await PredictionWriter(db).write(
                [make_record(id=uuid.uuid4(), model_name="clf", ts=NOW - timedelta(minutes=5))]
            )
        finally:
            await db.dispose()

    asyncio.run(prepare())
    runner = CliRunner()
    result = runner.invoke(cli, ["monitor", "run", "--window", "1h"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    performance = [row for row in lines if "drift" not in row]
    assert [(row["model_name"], row["predictions"], row["labelled"]) for row in performance] == [
        ("clf", 1, 0)
    ]
    (drift,) = [row["drift"] for row in lines if "drift" in row]
    assert (drift["model_name"], drift["status"]) == ("clf", "no_reference")
    bad = runner.invoke(cli, ["monitor", "run", "--window", "soon"])
    assert bad.exit_code == 1
    assert "--window" in bad.output
