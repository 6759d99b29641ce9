"""What a retraining run is asked to do (RetrainOptions) and what it made (RetrainResult)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from predictd.errors import InvalidInput
from predictd.registry.models import ModelVersion
from predictd.settings import RetrainingSettings


def shown_stage(version: ModelVersion) -> str:
    """'unstaged' for stage none: the candidate takes no traffic until it is staged."""
    return "unstaged" if version.stage == "none" else version.stage


@dataclass(frozen=True)
class RetrainOptions:
    """``since``: how far back labelled predictions are read; ``min_labelled``: fewer usable
    ones is NotEnoughData; ``recent_weight``: a labelled row's sample weight (a registered
    training row weighs 1); ``holdout``: the newest share of labelled rows kept out of fitting
    to score on; ``base_data``: fit on the production version's training data too;
    ``params``: hyperparameters to change (``get_params`` keys); ``tags``: labels the
    candidate keeps (the agent's action id, so a retried action finds its candidate)."""

    model: str
    since: timedelta
    min_labelled: int
    recent_weight: float
    holdout: float
    base_data: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # kept with the candidate

    def __post_init__(self) -> None:
        if self.since <= timedelta(0):
            raise InvalidInput("since must be a positive span", field="since")
        if self.min_labelled < 1:
            raise InvalidInput("min_labelled must be at least 1", field="min_labelled")
        if not (math.isfinite(self.recent_weight) and self.recent_weight > 0):
            raise InvalidInput("recent_weight must be a positive number", field="recent_weight")
        if not 0 < self.holdout < 1:
            raise InvalidInput("holdout must be between 0 and 1 (a share)", field="holdout")

    @classmethod
    def from_settings(
        cls, model: str, settings: RetrainingSettings, **overrides: Any
    ) -> RetrainOptions:
        """The settings' defaults, with ``overrides`` (those given as None are left out)."""
        names = {f.name for f in fields(cls)} - {"model"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InvalidInput(
                f"unknown retraining option(s): {', '.join(unknown)}", field=unknown[0]
            )
        values: dict[str, Any] = {
            "since": settings.since,
            "min_labelled": settings.min_labelled,
            "recent_weight": settings.recent_weight,
            "holdout": settings.holdout,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model=model, **values)


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs: each value a JSON literal (``0.5``, ``true``, ``null``, ``[1, 2]``),
    else the text itself; a pair without ``=`` is refused, naming it."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param {pair!r}: expected KEY=VALUE", field="params")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


@dataclass(frozen=True)
class RetrainResult:
    """The registered candidate and the run that made it (``version.training_run``)."""

    version: ModelVersion
    weighted: bool  # False: the estimator takes no sample_weight, so it was fitted unweighted
    unusable_labels: int = 0  # feedback that is not one of the production version's classes

    @property
    def run(self) -> dict[str, Any]:
        return self.version.training_run or {}

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "model": self.version.name,
            "version": self.version.version,
            "stage": self.version.stage,
            "parent_version": run.get("parent_version"),
            "window": run.get("window"),
            "rows": run.get("rows"),
            "recent_weight": run.get("recent_weight"),
            "sample_weight": self.weighted,
            "params": run.get("params"),
            "holdout": run.get("holdout"),
            "validation": run.get("validation"),
            "unusable_labels": self.unusable_labels,
        }

    def summary(self) -> str:
        """One line for a person."""
        run = self.run
        rows = run.get("rows") or {}
        holdout = run.get("holdout") or {}
        key = "accuracy" if "accuracy" in (holdout.get("candidate") or {}) else "r2"
        candidate = (holdout.get("candidate") or {}).get(key)
        production = (holdout.get("production") or {}).get(key)
        scores = (
            f"holdout {key} {candidate:.3f} vs production {production:.3f}"
            if isinstance(candidate, float) and isinstance(production, float)
            else "no holdout score"
        )
        return (
            f"registered {self.version.name} v{self.version.version} ({shown_stage(self.version)}) "
            f"from v{run.get('parent_version')}: {rows.get('base', 0)} base + "
            f"{rows.get('train', 0)} labelled rows fitted, {rows.get('holdout', 0)} held out; "
            f"{scores}"
        )
