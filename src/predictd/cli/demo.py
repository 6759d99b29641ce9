"""`predictd demo`: make sure the demo model is trained and registered."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Literal

import typer

from predictd.db import migrate
from predictd.demo.train import DemoModel, train_sentiment, train_tabular
from predictd.monitoring.profile import validation_profiler
from predictd.registry.datasets import DatasetFile
from predictd.registry.service import ModelRegistry


def _data(path: Path | None) -> DatasetFile | None:
    return None if path is None else DatasetFile(path)


DemoKind = Literal["sentiment", "tabular", "transformer"]


def _trainer(kind: DemoKind) -> tuple[str, Callable[[Path], DemoModel]]:
    if kind == "tabular":
        return "breast_cancer", train_tabular
    if kind == "transformer":
        from predictd.demo.transformer import NAME, train_transformer

        return NAME, train_transformer
    return "sentiment", train_sentiment


async def prepare_demo(registry: ModelRegistry, *, kind: DemoKind = "sentiment") -> str:
    """Register the demo model as production unless it already is; returns its name."""
    name, train = _trainer(kind)
    await migrate.upgrade(registry.db)
    existing = await registry.production(name)
    if existing is not None:
        typer.echo(f"demo model {name} v{existing.version} already registered; reusing it")
        return name
    with tempfile.TemporaryDirectory() as tmp:
        trained = train(Path(tmp))
        candidate = registry.inspect(
            trained.path,
            trained.name,
            metrics=trained.metrics,
            description=trained.description,
            training_samples=trained.training_samples,
            feature_names=trained.feature_names,
            training_data=_data(trained.training_data),
            validation_data=_data(trained.validation_data),
            profile_validation=partial(validation_profiler, settings=registry.settings),
        )
        if trained.calibration:
            # Measured before the shipped model was refitted on everything, so it is not
            # flattered by having seen the held-out split.
            profile = {
                **(candidate.reference_profile or {}),
                "calibration": trained.calibration,
            }
            candidate = replace(candidate, reference_profile=profile)
        version = await registry.register(candidate)
    shown = ", ".join(f"{k}={v:.3f}" for k, v in trained.metrics.items())
    typer.echo(f"trained and registered {name} v{version.version} ({shown})")
    return name
