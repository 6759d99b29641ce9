"""ModelVersion: a registered model version, as the registry hands it around."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from predictd.inference.runtime import InputKind, Label, ModelMeta, Task

Stage = Literal["none", "staging", "production", "archived"]


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    flavor: str
    task: Task
    input_kind: InputKind
    artifact_uri: str
    artifact_sha256: str
    stage: Stage
    created_at: datetime
    feature_names: tuple[str, ...] = ()
    classes: tuple[Label, ...] = ()
    algorithm: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training_samples: int | None = None
    description: str | None = None
    promoted_at: datetime | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parent_version: int | None = None
    # Facts about the data the version was validated on: ``calibration`` (observed accuracy
    # per confidence decile) today; the drift baseline later.
    reference_profile: dict[str, Any] = field(default_factory=dict)
    # {"uri", "sha256", "format", "rows"} of the data it was fitted and validated on (stored
    # content-addressed beside the artifact), and how `predictd train` made it.
    training_data: dict[str, Any] | None = None
    validation_data: dict[str, Any] | None = None
    training_run: dict[str, Any] | None = None

    def meta(self, *, source: str, loaded_at: datetime) -> ModelMeta:
        return ModelMeta(
            name=self.name,
            version=self.version,
            flavor=self.flavor,
            sha256=self.artifact_sha256,
            input_kind=self.input_kind,
            task=self.task,
            feature_names=self.feature_names,
            classes=self.classes,
            algorithm=self.algorithm,
            source=source,
            loaded_at=loaded_at,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["promoted_at"] = self.promoted_at.isoformat() if self.promoted_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelVersion:
        values = dict(data)
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        if values.get("promoted_at"):
            values["promoted_at"] = datetime.fromisoformat(values["promoted_at"])
        values["feature_names"] = tuple(values.get("feature_names") or ())
        values["classes"] = tuple(values.get("classes") or ())
        return cls(**values)
