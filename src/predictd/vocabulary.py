"""The words every package uses about a recorded prediction, kept below all of them.

Recording writes these, analytics and monitoring read them back, the registry and the shadow
worker name artifacts with them: so they live here, importing nothing from predictd, and no
two packages need each other for them. Migrations do not import this module: a revision
freezes the values it was written with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

# The predictions table's columns in the order a record, a COPY and a spool entry use them.
PREDICTION_COLUMNS: tuple[str, ...] = (
    "id", "ts", "model_name", "model_version", "variant", "request_id", "batch_id", "input",
    "output", "confidence", "probabilities", "latency_ms", "cache_hit", "status", "error",
    "client_ip", "user_agent", "shadow_of",
)  # fmt: skip

# Confidence in ten equal bins, [0, 0.1) ... [0.9, 1.0]: the rollups' histogram, a version's
# calibration and its reference profile all count in these.
CONFIDENCE_BINS = 10

NO_LABEL = ""  # the rollup label of regression outputs and failed predictions


def confidence_bin(confidence: float) -> int:
    return min(CONFIDENCE_BINS - 1, max(0, int(confidence * CONFIDENCE_BINS)))


def rollup_label(output: Any, probabilities: Any) -> str:
    """The label a rollup row is keyed by: a class label's JSON text. A float with no class
    probabilities is a regression value, which would make every row its own bucket, so it is
    not kept (NO_LABEL)."""
    if isinstance(output, str | bool | int) or (
        isinstance(output, float) and probabilities is not None
    ):
        return orjson.dumps(output).decode()
    return NO_LABEL


def comparable_label(value: Any) -> str:
    """A predicted or a true label as the text two labels are compared by, so a client's "1"
    matches a model's 1 (JSON bools as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class Window:
    """Which predictions a query covers."""

    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    version: int | None = None
    include_shadow: bool = False


def sha256_of(path: Path) -> str:
    """An artifact's name in the store and its proof against tampering."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
