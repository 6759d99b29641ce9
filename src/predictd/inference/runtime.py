"""The runtime contract: what predictd needs from a loaded model, whatever its format.

A runtime is built from an artifact path and its registry metadata, ``load()``-ed once (off the
event loop), then asked to ``predict()`` a list of already validated inputs in one vectorised
call. It must be safe to call ``predict`` from several worker threads.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from predictd.errors import ArtifactError, InvalidInput

InputKind = Literal["text", "tabular"]
Task = Literal["classification", "regression"]
ModelInput = str | Mapping[str, float]
Label = str | int | float | bool


@dataclass(frozen=True)
class ModelMeta:
    """Identity and input schema of a loaded model version."""

    name: str
    version: int
    flavor: str
    sha256: str
    input_kind: InputKind
    task: Task
    feature_names: tuple[str, ...] = ()
    classes: tuple[Label, ...] = ()
    algorithm: str | None = None
    source: str = "registry"
    loaded_at: datetime | None = None


@dataclass(frozen=True)
class Schema:
    """What an artifact says about its own inputs and outputs, read from the loaded model."""

    input_kind: InputKind
    task: Task
    feature_names: tuple[str, ...]
    classes: tuple[Label, ...]
    algorithm: str
    # True when the model only knows how many features it takes (x0, x1, ...): the registry
    # may then name them, and only the count has to agree.
    positional: bool = False


@dataclass(frozen=True, slots=True)
class TextVocabulary:
    """How a text model reads its input: the tokens it makes of a text (its own analyzer, so
    n-grams and stop words match) and the tokens it knows."""

    tokens: Callable[[str], list[str]]
    known: Container[str]


@dataclass(frozen=True, slots=True)
class RuntimeDetails:
    """How a loaded version runs, for /model-info and V2 metadata: the ONNX Runtime execution
    providers in use, and the tokens a transformer reads (longer texts are truncated)."""

    execution_providers: tuple[str, ...] = ()
    max_input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    label: Label
    confidence: float | None = None
    probabilities: dict[str, float] | None = field(default=None)


def to_label(value: Any) -> Label:
    """A NumPy scalar or other label as a JSON-friendly Python value."""
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, str | int | float | bool):
        return item
    return str(item)


def from_probabilities(proba: Any, classes: Sequence[Label]) -> list[Prediction]:
    """One prediction per row of an [n, classes] probability matrix: the likeliest label,
    its probability as confidence, and every class's probability keyed by ``str(class)``."""
    matrix = np.asarray(proba, dtype=np.float64)
    keys = [str(c) for c in classes]
    best = matrix.argmax(axis=1)
    return [
        Prediction(
            label=classes[int(b)],
            confidence=float(row[b]),
            probabilities={k: float(p) for k, p in zip(keys, row, strict=True)},
        )
        for row, b in zip(matrix, best, strict=True)
    ]


def from_values(values: Any, count: int) -> list[Prediction]:
    """One prediction per input from a regressor's output (the first target)."""
    rows = np.asarray(values).reshape(count, -1)
    return [Prediction(label=to_label(row[0])) for row in rows]


class ModelRuntime(ABC):
    """Base of every artifact format plugin."""

    flavor: str = "unknown"

    def __init__(self, path: Path, meta: ModelMeta) -> None:
        self.path = path
        self.meta = meta
        self.ready = False

    @abstractmethod
    def load(self) -> None:
        """Deserialize the artifact; raise ArtifactError when it can't be trusted or read."""

    @abstractmethod
    def schema(self) -> Schema:
        """The loaded model's own input schema and task."""

    def hyperparameters(self) -> dict[str, Any]:
        """The loaded model's hyperparameters as JSON, for the registry's lineage (what a
        retrained version changed); empty for formats that keep none."""
        return {}

    def prepare(self) -> None:
        """Everything a version must pass before it takes traffic: load, agree with the
        registry's schema, and answer a sample (which also warms caches and lazy imports)."""
        self.load()
        self._check_schema(self.schema())
        self._warm_up()
        self.ready = True

    def _check_schema(self, found: Schema) -> None:
        meta = self.meta
        names: tuple[object, object] = (meta.feature_names, found.feature_names)
        if found.positional:
            names = (len(meta.feature_names), len(found.feature_names))
        expected = (meta.input_kind, meta.task, names[0], meta.classes)
        actual = (found.input_kind, found.task, names[1], found.classes)
        if expected != actual:
            raise ArtifactError(
                f"{meta.name} v{meta.version}: the artifact's schema {actual} does not match "
                f"the registry's {expected}"
            )

    def sample_input(self) -> ModelInput:
        if self.meta.input_kind == "text":
            return "predictd warm-up"
        return dict.fromkeys(self.meta.feature_names, 0.0)

    def _warm_up(self) -> None:
        try:
            outputs = self.predict([self.sample_input()] * 2)
        except Exception as exc:
            raise ArtifactError(
                f"{self.meta.name} v{self.meta.version} failed its warm-up prediction: {exc!r}"
            ) from exc
        if len(outputs) != 2:
            raise ArtifactError(
                f"{self.meta.name} v{self.meta.version} gave {len(outputs)} results for 2 inputs"
            )

    @abstractmethod
    def predict(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        """One vectorised call for all inputs, results in input order."""

    def details(self) -> RuntimeDetails:
        return RuntimeDetails()

    def vocabulary(self) -> TextVocabulary | None:
        """A text model's tokenizer and vocabulary, when the format exposes them (for the
        token-frequency and out-of-vocabulary drift tests); None otherwise."""
        return None

    def validate(
        self,
        text: str | None,
        features: Mapping[str, object] | None,
        *,
        max_chars: int,
        prefix: str = "",
    ) -> ModelInput:
        """Check one request item against this model's input schema; names the bad field."""
        if self.meta.input_kind == "text":
            if text is None:
                raise InvalidInput(
                    'this model takes text: send {"text": "..."}', field=f"{prefix}text"
                )
            if features is not None:
                raise InvalidInput(
                    'this model takes text, not features: send only {"text": "..."}',
                    field=f"{prefix}features",
                )
            if not text.strip():
                raise InvalidInput("text must not be empty", field=f"{prefix}text")
            if len(text) > max_chars:
                raise InvalidInput(
                    f"text is longer than {max_chars} characters", field=f"{prefix}text"
                )
            return text
        if features is None:
            raise InvalidInput(
                'this model takes features: send {"features": {"name": value, ...}}',
                field=f"{prefix}features",
            )
        if text is not None:
            raise InvalidInput(
                "this model takes features, not text: send only features",
                field=f"{prefix}text",
            )
        return self._validate_features(features, prefix=f"{prefix}features")

    def _validate_features(self, features: Mapping[str, object], prefix: str) -> dict[str, float]:
        expected = self.meta.feature_names
        missing = [n for n in expected if n not in features]
        if missing:
            raise InvalidInput(
                f"missing feature(s): {', '.join(missing[:5])}", field=f"{prefix}.{missing[0]}"
            )
        extra = [n for n in features if n not in expected]
        if extra:
            raise InvalidInput(
                f"unknown feature(s): {', '.join(extra[:5])}", field=f"{prefix}.{extra[0]}"
            )
        out: dict[str, float] = {}
        for name in expected:
            value = features[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"feature {name!r} must be a number", field=f"{prefix}.{name}")
            number = float(value)
            if not math.isfinite(number):
                raise InvalidInput(f"feature {name!r} must be finite", field=f"{prefix}.{name}")
            out[name] = number
        return out
