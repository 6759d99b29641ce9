"""Running an app in-process (lifespan included) and asserting on what reached the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from predictd.api.deps import Services
from predictd.app import create_app
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.db.tables import predictions
from predictd.demo.train import DemoModel
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "artifact_dir": tmp_path / "artifacts",
        "spool_dir": tmp_path / "spool",
        "auto_migrate": True,
        "record_flush_ms": 5,
        "log_format": "text",
        "db_connect_timeout_s": 2.0,
        "auth": "off",  # loopback: predict and read without keys (test_access.py turns it on)
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings, **options: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """``options``: create_app's keyword arguments."""
    app = create_app(settings, **options)
    async with app.router.lifespan_context(app):
        await wait_started(app)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def wait_started(app: FastAPI, timeout_s: float = 30.0) -> None:
    """Start-up (migration, keys, first model load) runs after the lifespan yields."""
    readiness = services_of(app).readiness
    deadline = time.monotonic() + timeout_s
    while not readiness.started:
        assert time.monotonic() < deadline, "the app did not finish starting up"
        await asyncio.sleep(0.01)


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


async def wait_shipped(app: FastAPI, timeout_s: float = 20.0) -> None:
    """Wait until the recorder has committed everything it was given."""
    recorder = services_of(app).recorder
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = recorder.state()
        if state.committed_lsn >= state.last_lsn:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"recorder did not drain: {recorder.state()}")


async def id_counts(db_url: str, ids: Iterable[uuid.UUID | str] | None = None) -> Counter[str]:
    """How many rows each prediction id has in the database (all rows if ids is None)."""
    db = Database(Settings(database_url=db_url).database)
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(select(predictions.c.id))).scalars().all()
    finally:
        await db.dispose()
    counts = Counter(str(r) for r in rows)
    if ids is None:
        return counts
    return Counter({str(i): counts.get(str(i), 0) for i in ids})


async def register_demo(settings: Settings, model: DemoModel) -> ModelVersion:
    """Register a trained demo model as production, the way `predictd demo` does."""
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        candidate = registry.inspect(
            model.path, model.name, metrics=model.metrics, feature_names=model.feature_names
        )
        return await registry.register(candidate)
    finally:
        await db.dispose()
