"""The rows a candidate is fitted and scored on: the registered training data and the labelled
predictions whose inputs were kept, split by time and weighted.

A prediction is usable when its input was stored in full (not as a hash, nor left out) in the
production version's schema, and its feedback is a label that version can learn (one of its
classes, or a finite number for a regressor). The newest ``holdout`` share of the usable
labelled rows is never fitted on: candidate and production are both scored on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predictd.inference.runtime import InputKind, Label
from predictd.registry.datasets import Dataset
from predictd.registry.models import ModelVersion
from predictd.retraining.repository import LabelledRow
from predictd.vocabulary import comparable_label


@dataclass
class Skipped:
    """Labelled predictions that cannot be used, by reason."""

    hashed: int = 0  # PREDICTD_STORE_INPUTS=hash
    no_input: int = 0  # PREDICTD_STORE_INPUTS=none
    other_schema: int = 0  # answered by a version with other inputs
    labels: int = 0  # feedback that is no label of the production version

    @property
    def inputs(self) -> int:
        return self.hashed + self.no_input + self.other_schema

    def describe(self) -> str:
        parts = [
            f"{self.hashed + self.no_input} with inputs stored as hash or none"
            if self.hashed + self.no_input
            else "",
            f"{self.other_schema} with another version's inputs" if self.other_schema else "",
            f"{self.labels} whose label the model cannot learn" if self.labels else "",
        ]
        return ", ".join(p for p in parts if p) or "none"


@dataclass
class Labelled:
    """Usable labelled predictions, oldest first."""

    inputs: list[Any] = field(default_factory=list)  # text, or a row of floats
    labels: list[Label] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)

    def __len__(self) -> int:
        return len(self.labels)


def usable(rows: Iterable[LabelledRow], version: ModelVersion) -> Labelled:
    found = Labelled()
    classes = {comparable_label(c): c for c in version.classes}
    for row in rows:
        value = _input(row.input, version, found.skipped)
        if value is None:
            continue
        label = _label(row.actual, version, classes)
        if label is None:
            found.skipped.labels += 1
            continue
        found.inputs.append(value)
        found.labels.append(label)
    return found


def _input(stored: Any, version: ModelVersion, skipped: Skipped) -> Any:
    if stored is None:
        skipped.no_input += 1
        return None
    if not isinstance(stored, Mapping) or "hmac_sha256" in stored:
        skipped.hashed += 1
        return None
    if version.input_kind == "text":
        text = stored.get("text")
        if isinstance(text, str) and text:
            return text
        skipped.other_schema += 1
        return None
    features = stored.get("features")
    if isinstance(features, Mapping):
        values = [features.get(name) for name in version.feature_names]
        if all(_finite(v) for v in values):
            return [float(v) for v in values if v is not None]
    skipped.other_schema += 1
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _label(actual: Any, version: ModelVersion, classes: Mapping[str, Label]) -> Label | None:
    if version.task == "classification":
        return classes.get(comparable_label(actual)) if actual is not None else None
    if _finite(actual):
        return float(actual)
    return None


@dataclass(frozen=True)
class TrainingSet:
    """What is fitted (base rows first, weighted 1, then labelled rows) and the holdout."""

    kind: InputKind
    feature_names: tuple[str, ...]
    x_fit: Any
    y_fit: list[Label]
    weights: np.ndarray
    x_holdout: Any
    y_holdout: list[Label]
    base_rows: int
    train_rows: int

    @property
    def holdout_rows(self) -> int:
        return len(self.y_holdout)

    def fitted_data(self) -> Dataset:
        """The fitted rows, to be stored as the candidate's training data."""
        return Dataset(self.kind, self.feature_names, self.x_fit, list(self.y_fit))

    def holdout_data(self) -> Dataset:
        return Dataset(self.kind, self.feature_names, self.x_holdout, list(self.y_holdout))


def split(
    version: ModelVersion,
    base: Dataset | None,
    labelled: Labelled,
    *,
    holdout: float,
    recent_weight: float,
) -> TrainingSet:
    """Hold out the newest ``holdout`` share (rounded up) of the labelled rows; fit on
    the base rows (weight 1) and the older labelled rows (weight ``recent_weight``)."""
    held = min(len(labelled), max(1, math.ceil(len(labelled) * holdout)))
    cut = len(labelled) - held
    recent_x, held_x = labelled.inputs[:cut], labelled.inputs[cut:]
    base_rows = len(base) if base is not None else 0
    if version.input_kind == "text":
        x_fit: Any = (list(base.x) if base is not None else []) + list(recent_x)
        x_holdout: Any = list(held_x)
    else:
        width = len(version.feature_names)
        parts = [np.asarray(recent_x, dtype=np.float64).reshape(-1, width)]
        if base is not None:
            parts.insert(0, np.asarray(base.x, dtype=np.float64).reshape(-1, width))
        x_fit = np.vstack(parts)
        x_holdout = np.asarray(held_x, dtype=np.float64).reshape(-1, width)
    y_fit = (list(base.y) if base is not None else []) + labelled.labels[:cut]
    weights = np.concatenate([np.ones(base_rows), np.full(cut, float(recent_weight))])
    return TrainingSet(
        kind=version.input_kind,
        feature_names=version.feature_names,
        x_fit=x_fit,
        y_fit=y_fit,
        weights=weights,
        x_holdout=x_holdout,
        y_holdout=labelled.labels[cut:],
        base_rows=base_rows,
        train_rows=cut,
    )
