"""`predictd demo`: make sure the demo model is trained and registered."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.demo.train import train_sentiment, train_tabular
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings


async def prepare_demo(settings: Settings, *, tabular: bool) -> str:
    """Register the demo model as production unless it already is; returns its name."""
    name = "breast_cancer" if tabular else "sentiment"
    db = Database(settings)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings, db)
        existing = await registry.production(name)
        if existing is not None:
            typer.echo(f"demo model {name} v{existing.version} already registered; reusing it")
            return name
        with tempfile.TemporaryDirectory() as tmp:
            trained = (train_tabular if tabular else train_sentiment)(Path(tmp))
            candidate = registry.inspect(
                trained.path,
                trained.name,
                metrics=trained.metrics,
                description=trained.description,
                training_samples=trained.training_samples,
                feature_names=trained.feature_names,
                reference_profile=(
                    {"calibration": trained.calibration} if trained.calibration else None
                ),
            )
            version = await registry.register(candidate)
        shown = ", ".join(f"{k}={v:.3f}" for k, v in trained.metrics.items())
        typer.echo(f"trained and registered {name} v{version.version} ({shown})")
        return name
    finally:
        await db.dispose()
