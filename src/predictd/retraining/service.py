"""`predictd train`: a candidate from the production version's training data and the labelled
predictions since, registered unstaged (stage none) with its scores beside production's.

Labels come from feedback only, never from a model's own answers; shadow answers are left
out. Labelled rows weigh ``recent_weight`` against a registered training row's 1, so that
after a concept shift the new labels outweigh the data they contradict
(benchmarks/retrain_recovery.py measures how much). Nothing is promoted here.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from predictd.db.engine import Database
from predictd.db.errors import translate_errors
from predictd.errors import ModelNotFound, NotEnoughData
from predictd.inference.sklearn_runtime import json_params
from predictd.monitoring.profile import validation_profiler
from predictd.registry.datasets import MAX_ROWS, Dataset, DatasetFile, write_jsonl
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from predictd.retraining import fitting
from predictd.retraining.options import RetrainOptions, RetrainResult, shown_stage
from predictd.retraining.repository import RetrainingRepository
from predictd.retraining.rows import Labelled, TrainingSet, split, usable

log = logging.getLogger("predictd.retraining")

Progress = Callable[[str], None]
TRAINED_BY = {"trained_by": "predictd train"}


async def retrain(
    db: Database,
    registry: ModelRegistry,
    options: RetrainOptions,
    progress: Progress | None = None,
) -> RetrainResult:
    """Fit, score and register one candidate of ``options.model``; NotEnoughData (nothing
    registered) when fewer than ``min_labelled`` labelled predictions can be used."""
    say = progress or (lambda message: log.info(message, extra={"model": options.model}))
    parent = await registry.production(options.model)
    if parent is None or parent.name != options.model:
        raise ModelNotFound(f"{options.model!r} has no production version to retrain")
    estimator = await asyncio.to_thread(registry.open_estimator, parent)
    fitting.check_params(estimator, options.params)  # a wrong key is named before any work
    end = datetime.now(UTC)
    start = end - options.since
    async with translate_errors("reading labelled predictions"), db.engine.connect() as conn:
        rows = await RetrainingRepository(conn).labelled(options.model, start, end, MAX_ROWS)
    labelled = await asyncio.to_thread(usable, rows, parent)
    say(
        f"read {len(rows)} labelled predictions of {options.model} since "
        f"{start:%Y-%m-%d %H:%M} UTC: {len(labelled)} usable, unusable: "
        f"{labelled.skipped.describe()}"
    )
    if len(labelled) < options.min_labelled:
        raise NotEnoughData(_too_few(options, labelled, start))
    base = await _base_data(registry, parent, options, say)
    data = await asyncio.to_thread(
        partial(split, holdout=options.holdout, recent_weight=options.recent_weight),
        parent,
        base,
        labelled,
    )
    if not len(data.y_fit):
        raise NotEnoughData(
            f"{options.model}: nothing to fit on: {len(labelled)} labelled rows "
            "all held out for scoring, and no base data"
        )
    say(
        f"fitting {type(estimator).__name__} on {len(data.y_fit)} rows ({data.base_rows} base, "
        f"{data.train_rows} labelled weighted {options.recent_weight:g})"
    )
    candidate, weighted = await asyncio.to_thread(
        fitting.fit_candidate,
        estimator,
        options.params,
        data.x_fit,
        data.y_fit,
        data.weights,
        parent.task,
    )
    if not weighted:
        say(f"{type(candidate).__name__} takes no sample_weight: fitted unweighted")
    say(f"scoring candidate and production v{parent.version} on {data.holdout_rows} held-out rows")
    holdout = await asyncio.to_thread(
        _scores, candidate, estimator, data.x_holdout, data.y_holdout, parent
    )
    validation = await _validation_scores(registry, parent, candidate, estimator)
    run = {
        "parent_version": parent.version,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "rows": {
            "base": data.base_rows,
            "labelled": len(labelled),
            "train": data.train_rows,
            "holdout": data.holdout_rows,
            "unusable_inputs": labelled.skipped.inputs,
        },
        "recent_weight": float(options.recent_weight),
        "params": json_params(options.params),
        "holdout": holdout,
        "validation": validation,
    }
    version = await _register(registry, parent, candidate, data, run, options.tags)
    say(f"registered {version.name} v{version.version} ({shown_stage(version)})")
    return RetrainResult(version, weighted, labelled.skipped.labels)


def _too_few(options: RetrainOptions, labelled: Labelled, start: datetime) -> str:
    skipped = labelled.skipped
    return (
        f"{options.model}: {len(labelled)} usable labelled predictions since "
        f"{start:%Y-%m-%d %H:%M} UTC, {options.min_labelled} needed; "
        f"{skipped.inputs + skipped.labels} more were unusable ({skipped.describe()}). "
        "Send feedback (POST /feedback), widen --since, or lower --min-labelled"
    )


async def _base_data(
    registry: ModelRegistry, parent: ModelVersion, options: RetrainOptions, say: Progress
) -> Dataset | None:
    if not options.base_data:
        say("base data left out (--no-base-data)")
        return None
    if parent.training_data is None:
        say(
            f"{parent.name} v{parent.version} has no registered training data: fitting on "
            "labelled predictions only"
        )
        return None
    base = await asyncio.to_thread(registry.read_dataset, parent.training_data, parent)
    say(f"read {len(base)} rows of v{parent.version}'s training data")
    return base


def _scores(
    candidate: Any, production: Any, x: Any, y: list[Any], parent: ModelVersion
) -> dict[str, dict[str, float]]:
    return {
        "candidate": fitting.score(candidate, production, x, y, parent.task),
        "production": fitting.score(production, production, x, y, parent.task),
    }


async def _validation_scores(
    registry: ModelRegistry, parent: ModelVersion, candidate: Any, production: Any
) -> dict[str, dict[str, float]] | None:
    """Both scored on the parent's registered validation data, where it has some."""
    if parent.validation_data is None:
        return None
    data = await asyncio.to_thread(registry.read_dataset, parent.validation_data, parent)
    return await asyncio.to_thread(_scores, candidate, production, data.x, data.y, parent)


async def _register(
    registry: ModelRegistry,
    parent: ModelVersion,
    estimator: Any,
    data: TrainingSet,
    run: dict[str, Any],
    tags: dict[str, str],
) -> ModelVersion:
    """Store the candidate (artifact, fitted rows as JSON lines) and register it unstaged,
    profiled and calibrated on the holdout; it keeps the parent's validation data."""
    from skops.io import dump

    label = (parent.training_data or {}).get("label", "label")
    with tempfile.TemporaryDirectory(prefix="predictd-train-") as tmp:
        artifact = Path(tmp) / f"{parent.name}.skops"
        fitted = Path(tmp) / "training.jsonl"

        def store() -> ModelVersion:
            dump(estimator, artifact)
            write_jsonl(data.fitted_data(), label, fitted)
            return registry.inspect(
                artifact,
                parent.name,
                metrics=run["holdout"]["candidate"],
                description=f"retrained from v{parent.version} by predictd train",
                training_samples=len(data.y_fit),
                feature_names=parent.feature_names,
                profiler=validation_profiler(data.holdout_data().examples(), registry.settings),
                tags={**TRAINED_BY, **tags},
                parent_version=parent.version,
                training_data=DatasetFile(fitted, label, "the fitted rows"),
                training_run=run,
            )

        candidate = await asyncio.to_thread(store)
    candidate = replace(candidate, validation_data=parent.validation_data)
    # Unstaged (stage none): servers send canary and shadow traffic to a model's newest
    # staging version, so a candidate takes no live traffic until someone (or the agent's
    # start_shadow, under its policy) stages it.
    return await registry.register(candidate, stage="none", reuse=False)
