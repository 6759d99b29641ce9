"""Performance per model version over a window: realised from feedback, estimated without it.

Realised metrics join predictions to feedback and aggregate in the database (a confusion
matrix of counts for classifiers; sums of errors for regressors), so only a handful of rows
reach Python however many predictions were labelled.

The estimate needs no labels: a classifier's expected accuracy and macro F1 come from its
confidence, read per predicted label from the rollups' confidence bins and mapped through the
version's calibration (observed accuracy per bin on validation data,
``reference_profile["calibration"]``) when the registry has one. Reported beside the realised
metrics, a drop shows before labels arrive, and once they do the gaps say how far the estimate
can be trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.monitoring.repository import PerformanceRepository
from predictd.vocabulary import CONFIDENCE_BINS, Window, comparable_label

log = logging.getLogger("predictd.monitor")


def classification_metrics(confusion: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """Accuracy and macro precision/recall/F1 from {(predicted, actual): count}."""
    labels = sorted({label for pair in confusion for label in pair})
    total = sum(confusion.values())
    correct = sum(n for (pred, actual), n in confusion.items() if pred == actual)
    precisions, recalls, f1s = [], [], []
    for label in labels:
        tp = confusion.get((label, label), 0)
        predicted = sum(n for (pred, _), n in confusion.items() if pred == label)
        actual = sum(n for (_, act), n in confusion.items() if act == label)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {
        "accuracy": correct / total if total else None,
        "precision_macro": sum(precisions) / len(labels) if labels else None,
        "recall_macro": sum(recalls) / len(labels) if labels else None,
        "f1_macro": sum(f1s) / len(labels) if labels else None,
        "confusion": {
            "labels": labels,  # rows: actual, columns: predicted
            "matrix": [[confusion.get((pred, act), 0) for pred in labels] for act in labels],
        },
    }


def regression_metrics(
    n: int, abs_err: float, sq_err: float, y: float, y2: float
) -> dict[str, Any]:
    """MAE, RMSE and R² from sums, so the database does the per-row work."""
    if n == 0:
        return {"mae": None, "rmse": None, "r2": None}
    total_var = y2 - y * y / n
    return {
        "mae": abs_err / n,
        "rmse": (sq_err / n) ** 0.5,
        "r2": 1 - sq_err / total_var if total_var > 0 else None,
    }


@dataclass(frozen=True, slots=True)
class LabelConfidence:
    """One predicted label's answers in the window, from the rollups."""

    bins: Sequence[int]  # answers per confidence decile
    confidence_sum: float
    confidence_count: int


def estimated_performance(
    labels: Mapping[str, LabelConfidence], calibration: Sequence[Any] | None
) -> dict[str, Any] | None:
    """Expected accuracy and macro F1 without labels (confidence-based performance
    estimation): each answer is right with the probability its confidence bin had on the
    validation data when a calibration is known, else with its confidence (what a perfectly
    calibrated model would score). A label's expected wrong answers are another label's
    expected misses, spread over the other predicted labels in proportion to how often each is
    predicted: exact for two classes, an approximation beyond."""
    counts = {label: c.confidence_count for label, c in labels.items() if c.confidence_count}
    total = sum(counts.values())
    if total == 0:
        return None
    usable = calibration is not None and len(calibration) == CONFIDENCE_BINS
    rates = [(i + 0.5) / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS)]
    if usable and calibration is not None:
        # A bin the validation data never reached falls back to its midpoint.
        rates = [float(c) if c is not None else rates[i] for i, c in enumerate(calibration)]
    hits = {
        label: (
            sum(n * rate for n, rate in zip(labels[label].bins, rates, strict=True))
            if usable
            else labels[label].confidence_sum
        )
        for label in counts
    }
    wrong = {label: counts[label] - hits[label] for label in counts}
    f1s = []
    for label in counts:
        missed = 0.0
        for other in counts:
            if other != label:
                rest = total - counts[other]
                missed += wrong[other] * counts[label] / rest if rest else 0.0
        denominator = 2 * hits[label] + wrong[label] + missed
        f1s.append(2 * hits[label] / denominator if denominator else 0.0)
    return {
        "accuracy": sum(hits.values()) / total,
        "f1_macro": sum(f1s) / len(f1s),
        "calibrated": usable,
        "predictions": total,
    }


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    version: int
    task: str
    calibration: list[Any] | None


class PerformanceService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def run(
        self, window: timedelta, model: str | None = None, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Compute and store one row per version that answered in the window."""
        end = now or datetime.now(UTC)
        start = end - window
        # Measured on the read replica when there is one; stored on the primary.
        async with (
            translate_errors("computing performance"),
            self.db.read_connection() as conn,
        ):
            repo = PerformanceRepository(conn)
            rows = [
                await self._measure(repo, target, start, end)
                for target in await self._targets(repo, start, end, model)
            ]
        async with translate_errors("storing performance"), self.db.engine.begin() as conn:
            writer = PerformanceRepository(conn)
            for row in rows:
                await writer.add(row)
        return rows

    async def history(
        self, model: str | None, version: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """The stored rows, newest first."""
        async with translate_errors("reading performance"), self.db.engine.connect() as conn:
            return await PerformanceRepository(conn).history(model, version, limit)

    async def _targets(
        self, repo: PerformanceRepository, start: datetime, end: datetime, model: str | None
    ) -> list[Target]:
        rows = await repo.served(Window(start, end, model))
        return [
            Target(name, version, task, (profile or {}).get("calibration"))
            for name, version, task, profile in rows
        ]

    async def _measure(
        self, repo: PerformanceRepository, target: Target, start: datetime, end: datetime
    ) -> dict[str, Any]:
        window = Window(start, end, target.name, target.version)
        if target.task == "classification":
            confusion: dict[tuple[str, str], int] = {}
            for output, actual, n in await repo.confusion(window):
                key = (comparable_label(output), comparable_label(actual))
                confusion[key] = confusion.get(key, 0) + n
            count = sum(confusion.values())
            metrics = classification_metrics(confusion) if count else None
            estimated = await self._estimate(repo, window, target.calibration)
            if metrics is not None and estimated is not None:
                estimated["gap"] = metrics["accuracy"] - estimated["accuracy"]
                estimated["f1_gap"] = metrics["f1_macro"] - estimated["f1_macro"]
        else:
            count, *sums = await repo.regression_sums(window)
            metrics = regression_metrics(count, *sums) if count else None
            estimated = None
        total = await repo.answered(window)
        return {
            "model_name": target.name,
            "model_version": target.version,
            "task": target.task,
            "window_start": start,
            "window_end": end,
            "computed_at": datetime.now(UTC),
            "predictions": total,
            "labelled": count,
            "metrics": metrics,
            "estimated": estimated,
        }

    async def _estimate(
        self, repo: PerformanceRepository, window: Window, calibration: list[Any] | None
    ) -> dict[str, Any] | None:
        rows = await repo.label_confidences(window)
        labels = {
            comparable_label(label): LabelConfidence(bins, confidence_sum, confidence_count)
            for label, confidence_sum, confidence_count, bins in rows
        }
        return estimated_performance(labels, calibration)
