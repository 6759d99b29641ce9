"""Per-minute rollups of recorded predictions, so analytics cost O(buckets), not O(rows).

A rollup row sums one minute x model version x variant x predicted label. The writer adds a
batch's rollups in the transaction that inserts the batch, counting only the rows that insert
actually added, so a replayed batch adds nothing and replicas writing at once stay exact (the
upsert adds in the database: ``count = count + excluded.count``).

Latency is kept as a fixed-bucket histogram (``LATENCY_BOUNDS_MS``), from which percentiles
are read to the resolution of a bucket (the bounds are part of the schema, in db/tables), and
confidence in ten equal bins.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from predictd.db.tables import (
    CONFIDENCE_BINS,
    CONFIDENCE_COLUMNS,
    HISTOGRAM_COLUMNS,
    LATENCY_BOUNDS_MS,
)
from predictd.recording.record import PredictionRecord

KEY_COLUMNS = ("bucket", "model_name", "model_version", "variant", "label")
SUM_COLUMNS: tuple[str, ...] = (
    "count", "errors", "cache_hits", "confidence_count", "confidence_sum", "latency_sum",
    *HISTOGRAM_COLUMNS, *CONFIDENCE_COLUMNS,
)  # fmt: skip
NO_LABEL = ""  # regression outputs and failed predictions: not bucketed by value

RollupKey = tuple[datetime, str, int, str, str]


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def label_key(output: Any, probabilities: Any) -> str:
    """The rollup label: a class label's JSON text. A float with no class probabilities is
    a regression value, which would make every row its own bucket, so it is not kept."""
    if isinstance(output, str | bool | int) or (
        isinstance(output, float) and probabilities is not None
    ):
        return orjson.dumps(output).decode()
    return NO_LABEL


def confidence_bin(confidence: float) -> int:
    return min(CONFIDENCE_BINS - 1, max(0, int(confidence * CONFIDENCE_BINS)))


def latency_bucket(latency_ms: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


@dataclass(slots=True)
class Rollup:
    first_ts: datetime
    last_ts: datetime
    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    confidence_count: int = 0
    confidence_sum: float = 0.0
    latency_sum: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_COLUMNS))
    confidences: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)

    def add(self, r: PredictionRecord) -> None:
        self.first_ts = min(self.first_ts, r.ts)
        self.last_ts = max(self.last_ts, r.ts)
        if r.status != "ok":
            self.errors += 1
            return
        self.count += 1
        self.cache_hits += int(bool(r.cache_hit))
        if r.confidence is not None:
            self.confidence_count += 1
            self.confidence_sum += r.confidence
            self.confidences[confidence_bin(r.confidence)] += 1
        self.latency_sum += r.latency_ms
        self.histogram[latency_bucket(r.latency_ms)] += 1


def key_of(r: PredictionRecord) -> RollupKey:
    label = label_key(r.output, r.probabilities) if r.status == "ok" else NO_LABEL
    return (minute(r.ts), r.model_name, r.model_version, r.variant, label)


def rollup(
    records: Iterable[PredictionRecord], into: dict[RollupKey, Rollup] | None = None
) -> dict[RollupKey, Rollup]:
    found: dict[RollupKey, Rollup] = {} if into is None else into
    for r in records:
        key = key_of(r)
        acc = found.get(key)
        if acc is None:
            acc = found[key] = Rollup(r.ts, r.ts)
        acc.add(r)
    return found


def rows_of(rollups: dict[RollupKey, Rollup]) -> list[dict[str, Any]]:
    """Rollups as table rows, in key order: writers that lock rows in the same order cannot
    deadlock each other."""
    rows = []
    for key, acc in sorted(rollups.items()):
        row: dict[str, Any] = dict(zip(KEY_COLUMNS, key, strict=True))
        row.update(
            count=acc.count,
            errors=acc.errors,
            cache_hits=acc.cache_hits,
            confidence_count=acc.confidence_count,
            confidence_sum=acc.confidence_sum,
            latency_sum=acc.latency_sum,
            first_ts=acc.first_ts,
            last_ts=acc.last_ts,
        )
        row.update(zip(HISTOGRAM_COLUMNS, acc.histogram, strict=True))
        row.update(zip(CONFIDENCE_COLUMNS, acc.confidences, strict=True))
        rows.append(row)
    return rows
