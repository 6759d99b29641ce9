"""Bodies of /health, /ready and /model-info."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    state: Literal["ok", "degraded", "failing"]
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


class CandidateInfo(BaseModel):
    """The staging version taking canary and/or shadow traffic."""

    version: int
    artifact_sha256: str
    loaded_at: datetime | None
    canary_percent: float
    shadow: bool


class ModelInfo(BaseModel):
    name: str
    version: int
    stage: str
    flavor: str
    algorithm: str | None
    task: str
    input_kind: str
    feature_names: list[str]
    classes: list[str | int | float | bool]
    artifact_sha256: str
    loaded_at: datetime | None
    source: str
    candidate: CandidateInfo | None = None
    last_load_error: str | None = None
    default: bool
    served_models: list[str]
    execution_providers: list[str] = Field(
        default_factory=list,
        description="ONNX Runtime execution providers in use (ONNX and transformer models)",
    )
    max_input_tokens: int | None = Field(
        default=None, description="transformer models: tokens read per text (longer is truncated)"
    )
