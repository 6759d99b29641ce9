"""Bodies of /analytics/*."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from predictd.schemas.predict import Label


class Summary(BaseModel):
    """Answered predictions in the window (``total`` counts successes; ``errors`` failures).
    Latency percentiles are read from a fixed-bucket histogram, to a bucket's resolution."""

    total: int
    errors: int
    cache_hits: int
    cache_hit_rate: float | None
    avg_confidence: float | None
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None
    earliest: datetime | None
    latest: datetime | None


class LatencyBucket(BaseModel):
    le_ms: float | None  # upper bound; null for the last, open bucket
    count: int


class Latency(BaseModel):
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    buckets: list[LatencyBucket]


class TimePoint(BaseModel):
    ts: datetime
    count: int
    errors: int
    avg_confidence: float | None
    avg_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p99_latency_ms: float | None


class Timeseries(BaseModel):
    interval: str
    points: list[TimePoint]


class LabelCount(BaseModel):
    label: Label | None
    count: int


class ConfidenceBucket(BaseModel):
    ge: float  # the bucket holds confidences >= ge and < lt (the last one includes 1.0)
    lt: float
    count: int


class Distribution(BaseModel):
    total: int
    labels: list[LabelCount]
    confidence: list[ConfidenceBucket]  # answers per confidence decile (classifiers)


class RecentPrediction(BaseModel):
    id: UUID
    ts: datetime
    model_name: str
    model_version: int
    variant: str
    request_id: str | None
    batch_id: UUID | None
    output: Label | None
    confidence: float | None
    probabilities: dict[str, float] | None
    latency_ms: float
    cache_hit: bool
    status: str
    error: str | None
    shadow_of: UUID | None = None


class RecentPredictionWithInput(RecentPrediction):
    """With include_input=true (admin): the stored input too."""

    input: Any = None


class Recent(BaseModel):
    items: list[RecentPredictionWithInput | RecentPrediction]
    count: int
    next_cursor: str | None  # pass as ?cursor= for the next (older) page; null on the last


class ArmStats(Summary):
    """One version's recorded predictions (shadow rows included for a candidate)."""

    version: int
    variants: dict[str, int]
    labels: list[LabelCount]
    labelled: int  # answers with feedback (a shadow answer: feedback on the one it mirrors)
    accuracy: float | None  # on those; null without feedback


class Agreement(BaseModel):
    """On shadowed inputs: how often the candidate gave production's answer."""

    shadowed: int
    agreed: int
    rate: float | None


class Comparison(BaseModel):
    model: str
    production: ArmStats
    candidate: ArmStats | None
    agreement: Agreement | None


class PerformanceRow(BaseModel):
    """One monitor run for one model version: ``metrics`` realised from feedback (null until
    some arrives), ``estimated`` accuracy and macro F1 from confidence alone (classifiers), with
    ``gap`` and ``f1_gap`` = realised minus estimated once both exist."""

    model_name: str
    model_version: int
    task: str
    window_start: datetime
    window_end: datetime
    computed_at: datetime
    predictions: int
    labelled: int
    metrics: dict[str, Any] | None
    estimated: dict[str, Any] | None


class Performance(BaseModel):
    items: list[PerformanceRow]


class SystemSample(BaseModel):
    ts: datetime
    name: str
    value: float
    labels: dict[str, Any]


class SystemHistory(BaseModel):
    items: list[SystemSample]
