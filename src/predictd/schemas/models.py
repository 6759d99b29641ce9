"""Bodies of /models/*."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from predictd.schemas.predict import Label


class DatasetPublic(BaseModel):
    """Data kept with a version (stored content-addressed beside its artifact)."""

    format: str
    rows: int
    label: str
    sha256: str


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    stage: str
    flavor: str
    task: str
    input_kind: str
    algorithm: str | None
    artifact_sha256: str
    feature_names: list[str]
    classes: list[Label]
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    tags: dict[str, str]
    training_samples: int | None
    description: str | None
    parent_version: int | None
    training_data: DatasetPublic | None = None
    validation_data: DatasetPublic | None = None
    # How `predictd train` made it: parent, window, rows, weights, scores on the holdout.
    training_run: dict[str, Any] | None = None
    created_at: datetime
    promoted_at: datetime | None


class ModelSummary(BaseModel):
    name: str
    versions: int
    production_version: int | None


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionList(BaseModel):
    name: str
    versions: list[ModelVersionPublic]


class ServedVersion(BaseModel):
    production: int
    candidate: int | None


class ReloadResult(BaseModel):
    reloaded: bool
    served: dict[str, ServedVersion]
    load_errors: dict[str, str]
