"""Bodies of /drift."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel


class DriftReport(BaseModel):
    id: int
    model_name: str
    model_version: int
    window_start: datetime
    window_end: datetime
    computed_at: datetime
    status: Literal["ok", "insufficient_data", "no_reference"]
    rows: int  # answered predictions of this version in the window
    score: float | None  # share of the tested features that drifted
    drift_detected: bool
    # Per input feature (or text_length): method, statistic, p_value, psi, drifted, rows, counts
    features: dict[str, dict[str, Any]] | None
    # The model's answers: "label" and "confidence", tested the same way
    outputs: dict[str, dict[str, Any]] | None
    message: str


class DriftReportList(BaseModel):
    items: list[DriftReport]
