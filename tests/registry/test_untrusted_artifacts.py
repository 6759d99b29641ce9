"""A hostile skops file is refused when it is registered (nothing stored, no version) and
again whenever a server loads it, including a file swapped under the store afterwards."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictd.cli import app
from predictd.db import migrate
from predictd.db.engine import Database
from predictd.registry.service import ModelRegistry
from predictd.vocabulary import sha256_of
from tests.conftest import Artifacts
from tests.inference.test_skops_trust import analyzer_exec
from tests.support.app import make_settings, running_app


def test_registering_a_hostile_artifact_stores_nothing(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_AUTO_MIGRATE", "true")
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    marker = tmp_path / "marker"
    path, named, _ = analyzer_exec(tmp_path, marker)
    result = CliRunner().invoke(app, ["models", "register", str(path), "--name", "evil"])
    assert result.exit_code == 1, result.output
    assert named in result.output
    assert "PREDICTD_TRUSTED_TYPES" in result.output
    assert "Traceback" not in result.output
    listing = CliRunner().invoke(app, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    assert "evil" not in listing.output
    store = tmp_path / "artifacts"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*.skops"))
    assert not marker.exists()


async def test_a_hostile_file_swapped_under_the_store_is_refused_at_load(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    """Someone with write access to the store and the registry replaces v2's bytes and its
    recorded digest: the digest check passes, the type check does not; v1 stays served."""
    settings = make_settings(tmp_path, db_url, registry_poll_s=0.1, model_name="sentiment")
    db = Database(settings.database)
    other = ModelRegistry(settings.inference, db)
    marker = tmp_path / "marker"
    (tmp_path / "made").mkdir()
    hostile, named, payload = analyzer_exec(tmp_path / "made", marker)
    try:
        await migrate.upgrade(db)
        await other.register(other.inspect(artifacts.sentiment.path, "sentiment"))
        async with running_app(settings) as (_, client):
            v2 = other.inspect(artifacts.sentiment_alt.path, "sentiment")
            stored = other.store.local_path(v2.artifact_uri)
            stored.write_bytes(hostile.read_bytes())
            v2 = await other.register(replace(v2, artifact_sha256=sha256_of(stored)))
            deadline = time.monotonic() + 10
            while (await client.get("/model-info")).json()["last_load_error"] is None:
                assert time.monotonic() < deadline, "the refused load was not reported"
                await asyncio.sleep(0.05)
            info = (await client.get("/model-info")).json()
            assert info["version"] == 1
            assert named in info["last_load_error"]
            answer = await client.post("/predict", json={"text": payload})
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == 1
    finally:
        await db.dispose()
    assert not marker.exists()
