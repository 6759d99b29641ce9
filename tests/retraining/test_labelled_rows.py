"""Which predictions retraining learns from, on SQLite and PostgreSQL: answered ones (production
and canary, every version) of the model in the window that have feedback, labelled by that
feedback; never shadow answers, failures, other models, or the model's own outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from predictd.db.engine import Database
from predictd.monitoring.feedback import FeedbackItem, FeedbackService
from predictd.recording.repository import PredictionWriter
from predictd.registry.models import ModelVersion
from predictd.retraining.repository import RetrainingRepository
from predictd.retraining.rows import split, usable
from tests.recording.test_recorder import make_record

NOW = datetime.now(UTC)
VERSION = ModelVersion(
    name="m",
    version=2,
    flavor="sklearn",
    task="classification",
    input_kind="tabular",
    artifact_uri="",
    artifact_sha256="",
    stage="production",
    created_at=NOW,
    feature_names=("a", "b"),
    classes=(0, 1),
)


def features(a: float, b: float = 0.0) -> dict[str, Any]:
    return {"features": {"a": a, "b": b}}


async def test_only_answered_labelled_predictions_in_the_window_are_read(db: Database) -> None:
    start = NOW - timedelta(hours=1)
    rows = {
        "production": make_record(model_name="m", input=features(1), output=0, ts=start),
        "canary, older version": make_record(
            model_name="m",
            model_version=1,
            variant="canary",
            input=features(2),
            output=0,
            ts=start + timedelta(minutes=1),
        ),
        "shadow": make_record(
            model_name="m",
            variant="shadow",
            input=features(3),
            output=0,
            ts=start + timedelta(minutes=2),
        ),
        "failed": make_record(
            model_name="m",
            status="error",
            error="boom",
            output=None,
            input=features(4),
            ts=start + timedelta(minutes=3),
        ),
        "other model": make_record(
            model_name="other", input=features(5), output=0, ts=start + timedelta(minutes=4)
        ),
        "before the window": make_record(
            model_name="m", input=features(6), output=0, ts=start - timedelta(minutes=1)
        ),
        "no feedback": make_record(
            model_name="m", input=features(7), output=1, ts=start + timedelta(minutes=5)
        ),
        "hashed": make_record(
            model_name="m",
            input={"hmac_sha256": "ab" * 32},
            output=0,
            ts=start + timedelta(minutes=6),
        ),
        "not kept": make_record(
            model_name="m", input=None, output=0, ts=start + timedelta(minutes=7)
        ),
        "other features": make_record(
            model_name="m",
            input={"features": {"z": 1.0}},
            output=0,
            ts=start + timedelta(minutes=8),
        ),
        "label it cannot learn": make_record(
            model_name="m", input=features(9), output=0, ts=start + timedelta(minutes=9)
        ),
    }
    assert await PredictionWriter(db).write(list(rows.values())) == len(rows)
    labels: dict[str, Any] = {name: 1 for name in rows if name != "no feedback"}
    labels["label it cannot learn"] = "maybe"
    await FeedbackService(db).submit([FeedbackItem(rows[n].id, y) for n, y in labels.items()])

    async with db.engine.connect() as conn:
        found = await RetrainingRepository(conn).labelled("m", start, NOW, limit=100)
    # Oldest first; the label is the feedback (1), not the recorded output (0).
    assert [row.input for row in found] == [
        rows[n].input
        for n in (
            "production",
            "canary, older version",
            "hashed",
            "not kept",
            "other features",
            "label it cannot learn",
        )
    ]
    assert [row.actual for row in found][:2] == [1, 1]

    picked = usable(found, VERSION)
    assert picked.inputs == [[1.0, 0.0], [2.0, 0.0]]
    assert picked.labels == [1, 1]
    skipped = picked.skipped
    assert (skipped.hashed, skipped.no_input, skipped.other_schema, skipped.labels) == (1, 1, 1, 1)
    assert skipped.inputs == 3
    assert skipped.describe() == (
        "2 with inputs stored as hash or none, 1 with another version's inputs, "
        "1 whose label the model cannot learn"
    )

    async with db.engine.connect() as conn:
        newest = await RetrainingRepository(conn).labelled("m", start, NOW, limit=2)
    assert [row.input for row in newest] == [
        rows["other features"].input,
        rows["label it cannot learn"].input,
    ]


def test_the_newest_labelled_rows_are_held_out_and_recent_rows_weighted() -> None:
    from predictd.registry.datasets import Dataset

    base = Dataset("tabular", ("a", "b"), np.zeros((3, 2)), [0, 0, 0])
    labelled = usable([], VERSION)
    labelled.inputs = [[float(n), 1.0] for n in range(10)]
    labelled.labels = [n % 2 for n in range(10)]
    data = split(VERSION, base, labelled, holdout=0.25, recent_weight=7.0)
    assert (data.base_rows, data.train_rows, data.holdout_rows) == (3, 7, 3)  # 2.5 rows, rounded up
    assert data.x_holdout[:, 0].tolist() == [7.0, 8.0, 9.0]
    assert data.weights.tolist() == [1.0] * 3 + [7.0] * 7
    assert data.y_fit == [0, 0, 0, *[n % 2 for n in range(7)]]
    alone = split(VERSION, None, labelled, holdout=0.01, recent_weight=7.0)
    assert (alone.base_rows, alone.train_rows, alone.holdout_rows) == (0, 9, 1)
    assert alone.fitted_data().x.shape == (9, 2)
