"""/models/* over HTTP: reads, admin-guarded changes, and the served model following them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import httpx

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of

ADMIN = {"authorization": "Bearer s3cret"}


async def register_two(settings: Settings, artifacts: Artifacts) -> None:
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        text = registry.inspect(artifacts.sentiment.path, "sentiment")
        await registry.register(text)  # v1, production
        await registry.register(replace(text, description="v2"), stage="staging", reuse=False)
    finally:
        await db.dispose()


async def test_read_promote_rollback_reload(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, admin_token="s3cret", model_name="sentiment")
    await register_two(settings, artifacts)
    async with running_app(settings) as (_, client):
        models = (await client.get("/models")).json()["models"]
        assert models == [{"name": "sentiment", "versions": 2, "production_version": 1}]
        versions = (await client.get("/models/sentiment/versions")).json()["versions"]
        assert [(v["version"], v["stage"]) for v in versions] == [(1, "production"), (2, "staging")]
        one = (await client.get("/models/sentiment/versions/2")).json()
        assert one["description"] == "v2"
        assert "artifact_uri" not in one

        promoted = await client.post("/models/sentiment/versions/2/promote", headers=ADMIN)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["stage"] == "production"
        assert (await client.get("/model-info")).json()["version"] == 2
        answer = await client.post("/predict", json={"text": "I love this product"})
        assert answer.json()["model_version"] == 2

        back = await client.post("/models/sentiment/rollback", headers=ADMIN)
        assert back.json()["version"] == 1
        assert (await client.get("/model-info")).json()["version"] == 1

        reload = (await client.post("/models/reload", headers=ADMIN)).json()
        assert reload == {
            "reloaded": False,
            "served": {"sentiment": {"production": 1, "candidate": None}},
            "load_errors": {},
        }


async def test_changes_need_the_admin_token(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    open_settings = make_settings(tmp_path, db_url)
    await register_two(open_settings, artifacts)
    async with running_app(open_settings) as (_, client):
        response = await client.post("/models/sentiment/versions/2/promote")
        assert response.status_code == 401
        assert "'admin' scope" in response.json()["error"]["message"]

    guarded = make_settings(tmp_path, db_url, admin_token="s3cret")
    async with running_app(guarded) as (_, client):
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": "s3cret"}):
            response = await client.post("/models/sentiment/rollback", headers=headers)
            assert response.status_code == 401
        missing = await client.post("/models/sentiment/versions/9/promote", headers=ADMIN)
        assert missing.status_code == 404
        assert (await client.get("/models/ghost/versions")).status_code == 404
        no_previous = await client.post("/models/sentiment/rollback", headers=ADMIN)
        assert no_previous.status_code == 409
        assert "no previous production" in no_previous.json()["error"]["message"]


async def wait_for_version(client: httpx.AsyncClient, version: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (await client.get("/model-info")).json()["version"] != version:
        assert time.monotonic() < deadline, f"server did not switch to v{version}"
        await asyncio.sleep(0.05)


async def test_a_promotion_elsewhere_is_followed_and_a_broken_one_never_served(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, registry_poll_s=0.1, model_name="sentiment")
    await register_two(settings, artifacts)
    db = Database(settings.database)
    other = ModelRegistry(settings.inference, db)  # another process's view, e.g. the CLI
    try:
        async with running_app(settings) as (_, client):
            assert (await client.get("/model-info")).json()["version"] == 1
            await other.promote("sentiment", 2)
            await wait_for_version(client, 2, timeout_s=10)

            # v3's artifact is changed on disk after registration: its sha256 no longer matches.
            tampered = tmp_path / "tampered.skops"
            tampered.write_bytes(artifacts.sentiment.path.read_bytes())
            v3 = other.inspect(tampered, "sentiment")
            stored = other.store.local_path(v3.artifact_uri)
            v3 = await other.register(replace(v3, artifact_sha256="0" * 64), stage="none")
            await other.promote("sentiment", v3.version)
            deadline = time.monotonic() + 10
            while (await client.get("/model-info")).json()["last_load_error"] is None:
                assert time.monotonic() < deadline, "the failed load was not reported"
                await asyncio.sleep(0.05)
            info = (await client.get("/model-info")).json()
            assert info["version"] == 2
            assert "sha256" in info["last_load_error"]
            metrics = (await client.get("/metrics")).text
            assert (
                'predictd_model_load_failures_total{model="sentiment",reason="tampered",'
                'role="production"} 1.0'
            ) in metrics
            ready = (await client.get("/ready")).json()
            assert "last load failed" in ready["checks"]["model"]["detail"]
            answer = await client.post("/predict", json={"text": "I love this product"})
            assert answer.json()["model_version"] == 2
            assert stored.is_file()

            await other.rollback("sentiment")  # back to what is served: the error is over
            deadline = time.monotonic() + 10
            while (await client.get("/model-info")).json()["last_load_error"] is not None:
                assert time.monotonic() < deadline, "the error outlived the rollback"
                await asyncio.sleep(0.05)
    finally:
        await db.dispose()


async def test_bad_path_parameters_name_the_field(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", admin_token="s3cret")
    async with running_app(settings) as (_, client):
        response = await client.get("/models/sentiment/versions/latest")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "version"
        promote = await client.post("/models/sentiment/versions/x/promote", headers=ADMIN)
        assert promote.status_code == 422
        assert promote.json()["error"]["field"] == "version"


async def test_postgres_notifies_servers_without_waiting_for_the_poll(
    tmp_path: Path, postgres_url: str, artifacts: Artifacts
) -> None:
    """LISTEN/NOTIFY: with a 60 s poll, a promotion elsewhere is still followed at once."""
    settings = make_settings(tmp_path, postgres_url, registry_poll_s=60, model_name="sentiment")
    await register_two(settings, artifacts)
    db = Database(settings.database)
    other = ModelRegistry(settings.inference, db)
    try:
        async with running_app(settings) as (app, client):
            assert (await client.get("/model-info")).json()["version"] == 1
            listener = services_of(app).loader.listener
            await asyncio.wait_for(listener.connected.wait(), timeout=10)
            started = time.monotonic()
            await other.promote("sentiment", 2)
            await wait_for_version(client, 2, timeout_s=5)
            followed_s = time.monotonic() - started
            await other.rollback("sentiment")
            await wait_for_version(client, 1, timeout_s=5)
        assert followed_s < 5
    finally:
        await db.dispose()
