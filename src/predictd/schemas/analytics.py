"""Bodies of /analytics/*."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from predictd.schemas.predict import Label


class Summary(BaseModel):
    total: int
    avg_confidence: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    earliest: datetime | None
    latest: datetime | None


class LabelCount(BaseModel):
    label: Label | None
    count: int


class Distribution(BaseModel):
    total: int
    labels: list[LabelCount]


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


class Recent(BaseModel):
    items: list[RecentPrediction]
    count: int
