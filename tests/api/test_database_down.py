"""Starting while the database is down: serve the last loaded version, spool, stay ready."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/nowhere"


async def test_serves_the_manifest_version_when_the_database_is_down(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    healthy = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=artifacts.sentiment.path
    )
    async with running_app(healthy) as (_, client):
        assert (await client.get("/model-info")).json()["source"] == "registry"

    down = make_settings(tmp_path, UNREACHABLE, db_connect_timeout_s=0.5)  # no --model
    async with running_app(down) as (app, client):
        info = (await client.get("/model-info")).json()
        assert info["source"] == "manifest"
        assert (info["name"], info["version"]) == ("sentiment", 1)

        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"]["state"] == "degraded"

        answer = await client.post("/predict", json={"text": "I love this product"})
        assert answer.status_code == 200
        assert answer.json()["model_version"] == 1
        state = services_of(app).recorder.state()
        assert state.spool_bytes > 0
        assert state.committed_lsn < state.last_lsn

        summary = await client.get("/analytics/summary")
        assert summary.status_code == 503
        assert summary.json()["error"]["code"] == "storage_unavailable"


async def test_not_ready_without_database_or_spool(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(
        tmp_path,
        UNREACHABLE,
        db_connect_timeout_s=0.5,
        durability="memory",
        model_path=artifacts.sentiment.path,
    )
    async with running_app(settings) as (_, client):
        assert (await client.get("/model-info")).json()["source"] == "unregistered"
        ready = await client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["spool"]["state"] == "degraded"


async def test_every_model_last_served_comes_back_from_the_manifest(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    healthy = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'p.db'}",
        model_path=artifacts.tabular.path,
        model_name="breast_cancer",
    )
    async with running_app(healthy):
        pass  # registers breast_cancer as the default
    healthy = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=artifacts.sentiment.path
    )
    async with running_app(healthy) as (_, client):
        served = (await client.get("/model-info")).json()["served_models"]
        assert served == ["breast_cancer", "sentiment"]

    down = make_settings(tmp_path, UNREACHABLE, db_connect_timeout_s=0.5)
    async with running_app(down) as (_, client):
        info = (await client.get("/model-info")).json()
        assert (info["name"], info["source"]) == ("sentiment", "manifest")
        assert info["served_models"] == ["breast_cancer", "sentiment"]
        other = (await client.get("/model-info", params={"model": "breast_cancer"})).json()
        assert other["source"] == "manifest"
        features = dict.fromkeys(other["feature_names"], 1.0)
        answer = await client.post("/models/breast_cancer/predict", json={"features": features})
        assert answer.status_code == 200
