"""Bodies of /health, /ready and /model-info."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    state: Literal["ok", "degraded", "failing"]
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


class ModelInfo(BaseModel):
    name: str
    version: int
    flavor: str
    algorithm: str | None
    task: str
    input_kind: str
    feature_names: list[str]
    classes: list[str | int | float | bool]
    artifact_sha256: str
    loaded_at: datetime | None
    source: str
    last_load_error: str | None = None
