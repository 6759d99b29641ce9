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
    shadow_of: UUID | None = None


class Recent(BaseModel):
    items: list[RecentPrediction]
    count: int


class ArmStats(Summary):
    """One version's recorded predictions (shadow rows included for a candidate)."""

    version: int
    variants: dict[str, int]
    labels: list[LabelCount]


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
