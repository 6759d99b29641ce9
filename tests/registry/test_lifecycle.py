"""Registry lifecycle on SQLite and PostgreSQL: versions, promotion, rollback, races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.errors import ArtifactError, Conflict, ModelNotFound
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from tests.conftest import Artifacts
from tests.support.app import make_settings


@pytest.fixture
async def registry(tmp_path: Path, db_url: str) -> AsyncIterator[ModelRegistry]:
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    await migrate.upgrade(db)
    try:
        yield ModelRegistry(settings.inference, db)
    finally:
        await db.dispose()


async def register_versions(registry: ModelRegistry, artifacts: Artifacts, n: int) -> None:
    """n versions of one name. They share one stored artifact; lifecycle tests never load
    them, so each gets its own recorded digest (the registry reuses a version per digest)."""
    candidate = registry.inspect(artifacts.sentiment.path, "sentiment")
    for i in range(n):
        distinct = replace(candidate, artifact_sha256=f"{i:064x}", description=f"v{i + 1}")
        await registry.register(distinct, stage="none", reuse=False)


def production(versions: list[ModelVersion]) -> list[int]:
    return [v.version for v in versions if v.stage == "production"]


async def test_promote_archive_and_rollback(registry: ModelRegistry, artifacts: Artifacts) -> None:
    await register_versions(registry, artifacts, 3)
    assert production(await registry.list_versions("sentiment")) == []

    with pytest.raises(Conflict, match="no previous production"):
        await registry.rollback("sentiment")

    await registry.promote("sentiment", 1)
    promoted = await registry.promote("sentiment", 2)
    assert promoted.stage == "production"
    assert promoted.promoted_at is not None
    versions = await registry.list_versions("sentiment")
    assert production(versions) == [2]
    assert versions[0].stage == "archived"

    back = await registry.rollback("sentiment", only_from=2)
    assert back.version == 1
    assert production(await registry.list_versions("sentiment")) == [1]
    # the same rollback run again (a retried action): v2 is no longer production, so
    # nothing goes back a second time
    again = await registry.rollback("sentiment", only_from=2)
    assert again.version == 1
    assert production(await registry.list_versions("sentiment")) == [1]

    archived = await registry.archive("sentiment", 3)
    assert archived.stage == "archived"


async def test_missing_versions_and_names(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFound):
        await registry.promote("nope", 1)
    with pytest.raises(ModelNotFound):
        await registry.rollback("nope")
    with pytest.raises(ModelNotFound):
        await registry.get("nope", 3)


async def test_concurrent_promotions_leave_exactly_one_production(
    registry: ModelRegistry, artifacts: Artifacts
) -> None:
    await register_versions(registry, artifacts, 6)
    results = await asyncio.gather(
        *(registry.promote("sentiment", v) for v in [1, 2, 3, 4, 5, 6] * 3),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    assert len(production(await registry.list_versions("sentiment"))) == 1


async def test_a_file_that_is_not_a_model_registers_nothing(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ArtifactError):
        registry.inspect(junk, "junk")
    assert await registry.list_versions() == []
    store = registry.settings.artifact_dir
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
