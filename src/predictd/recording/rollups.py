"""Per-minute rollups of recorded predictions, so analytics cost O(buckets), not O(rows).

A rollup row sums one minute x model version x variant x predicted label. The writer adds a
batch's rollups in the transaction that inserts the batch, counting only the rows that insert
actually added, so a replayed batch adds nothing and replicas writing at once stay exact (the
upsert adds in the database: ``count = count + excluded.count``).

Latency is kept as a fixed-bucket histogram (``LATENCY_BOUNDS_MS``), from which percentiles
are read to the resolution of a bucket (the bounds are part of the schema, in db/tables), and
confidence in ten equal bins (vocabulary.CONFIDENCE_BINS).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from predictd.db.tables import CONFIDENCE_COLUMNS, HISTOGRAM_COLUMNS, LATENCY_BOUNDS_MS
from predictd.recording.prediction_record import PredictionRecord
from predictd.vocabulary import CONFIDENCE_BINS, NO_LABEL, confidence_bin, rollup_label

KEY_COLUMNS = ("bucket", "model_name", "model_version", "variant", "label")
SUM_COLUMNS: tuple[str, ...] = (
    "count", "errors", "cache_hits", "confidence_count", "confidence_sum", "latency_sum",
    *HISTOGRAM_COLUMNS, *CONFIDENCE_COLUMNS,
)  # fmt: skip

RollupKey = tuple[datetime, str, int, str, str]
ONE_MINUTE = timedelta(minutes=1)


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


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

    def merge(self, other: Rollup) -> None:
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)
        self.count += other.count
        self.errors += other.errors
        self.cache_hits += other.cache_hits
        self.confidence_count += other.confidence_count
        self.confidence_sum += other.confidence_sum
        self.latency_sum += other.latency_sum
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]
        self.confidences = [a + b for a, b in zip(self.confidences, other.confidences, strict=True)]

    def add(self, r: PredictionRecord) -> None:
        # The recorder calls this for every row it writes: plain comparisons, no helpers.
        ts = r.ts
        if ts < self.first_ts:
            self.first_ts = ts
        elif ts > self.last_ts:
            self.last_ts = ts
        if r.status != "ok":
            self.errors += 1
            return
        self.count += 1
        if r.cache_hit:
            self.cache_hits += 1
        confidence = r.confidence
        if confidence is not None:
            self.confidence_count += 1
            self.confidence_sum += confidence
            self.confidences[confidence_bin(confidence)] += 1
        latency = r.latency_ms
        self.latency_sum += latency
        self.histogram[bisect.bisect_left(LATENCY_BOUNDS_MS, latency)] += 1


def rollup(
    records: Iterable[PredictionRecord], into: dict[RollupKey, Rollup] | None = None
) -> dict[RollupKey, Rollup]:
    """Sum ``records`` into rollups by minute, version, variant and label. Batches are mostly in
    time order with few distinct labels, so the minute and the label text are reused rather
    than rebuilt for every record."""
    found: dict[RollupKey, Rollup] = {} if into is None else into
    labels: dict[tuple[type, Any, bool], str] = {}
    start = end = None
    for r in records:
        ts = r.ts
        if start is None or end is None or not start <= ts < end:
            start = minute(ts)
            end = start + ONE_MINUTE
        if r.status != "ok":
            label = NO_LABEL
        else:
            output = r.output
            cached = (type(output), output, r.probabilities is None)
            try:
                label = labels[cached]
            except KeyError:
                label = labels[cached] = rollup_label(output, r.probabilities)
            except TypeError:  # an unhashable output (a list): no label either way
                label = rollup_label(output, r.probabilities)
        key = (start, r.model_name, r.model_version, r.variant, label)
        acc = found.get(key)
        if acc is None:
            acc = found[key] = Rollup(ts, ts)
        acc.add(r)
    return found


def by_hour(rollups: dict[RollupKey, Rollup]) -> dict[RollupKey, Rollup]:
    """The same sums per hour, for the hourly table long windows read."""
    hours: dict[RollupKey, Rollup] = {}
    for (bucket, name, version, variant, label), acc in rollups.items():
        key: RollupKey = (bucket.replace(minute=0), name, version, variant, label)
        total = hours.get(key)
        if total is None:
            total = hours[key] = Rollup(acc.first_ts, acc.last_ts)
        total.merge(acc)
    return hours


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
