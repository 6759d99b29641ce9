"""Several models, canary and shadow traffic, and /analytics/compare."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from skops.io import get_untrusted_types
from skops.io import load as skops_load

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.demo.train import DemoModel
from predictd.registry.models import Stage
from predictd.registry.service import ModelRegistry
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of, wait_shipped

TEXTS = [
    "I love this product",
    "Absolutely great, I love it",
    "This is terrible, I want a refund",
    "The box contains two cables",
    "Not bad at all, quite decent",
    "Worst purchase I have made",
    "It arrived on Tuesday",
    "Fantastic support team",
]


async def register(settings: Settings, *models: tuple[DemoModel, str, Stage]) -> None:
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        for model, name, stage in models:
            candidate = registry.inspect(model.path, name, feature_names=model.feature_names)
            await registry.register(candidate, stage=stage, reuse=False)
    finally:
        await db.dispose()


def local_predictions(model: DemoModel, texts: list[str]) -> list[str]:
    estimator: Any = skops_load(model.path, trusted=get_untrusted_types(file=model.path))
    return [str(label) for label in estimator.predict(texts)]


async def wait_shadow_idle(app: FastAPI, timeout_s: float = 20.0) -> None:
    shadow = services_of(app).inference.shadow
    deadline = time.monotonic() + timeout_s
    while not shadow.idle:
        assert time.monotonic() < deadline, "shadow work did not finish"
        await asyncio.sleep(0.02)


async def test_several_models_each_reachable_by_name(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    base = make_settings(tmp_path, db_url)
    await register(
        base,
        (artifacts.sentiment, "sentiment", "production"),
        (artifacts.tabular, "breast_cancer", "production"),
    )
    features = dict.fromkeys(artifacts.tabular.feature_names or (), 1.0)

    settings = make_settings(tmp_path, db_url, models=["sentiment", "breast_cancer"])
    async with running_app(settings) as (_, client):
        default = await client.post("/predict", json={"text": "I love this product"})
        assert default.json()["model_name"] == "sentiment"
        named = await client.post("/models/breast_cancer/predict", json={"features": features})
        assert named.status_code == 200, named.text
        assert named.json()["model_name"] == "breast_cancer"
        batch = await client.post(
            "/models/breast_cancer/batch", json={"items": [{"features": features}] * 3}
        )
        assert batch.json()["total"] == 3
        wrong_kind = await client.post("/models/breast_cancer/predict", json={"text": "hi"})
        assert wrong_kind.status_code == 422
        assert wrong_kind.json()["error"]["field"] == "features"
        ghost = await client.post("/models/ghost/predict", json={"text": "hi"})
        assert ghost.status_code == 404
        assert "breast_cancer, sentiment" in ghost.json()["error"]["message"]

        info = (await client.get("/model-info", params={"model": "breast_cancer"})).json()
        assert info["name"] == "breast_cancer"
        assert info["stage"] == "production"
        assert info["default"] is False
        assert info["served_models"] == ["breast_cancer", "sentiment"]
        assert (await client.get("/model-info", params={"model": "ghost"})).status_code == 404

    only = make_settings(tmp_path, db_url, models=["breast_cancer"])
    async with running_app(only) as (_, client):
        assert (await client.get("/model-info")).json()["served_models"] == ["breast_cancer"]
        refused = await client.post("/models/sentiment/predict", json={"text": "hi"})
        assert refused.status_code == 404


async def test_canary_share_and_sticky_keys(tmp_path: Path, artifacts: Artifacts) -> None:
    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, db_url, canary_percent=20.0)
    await register(
        settings,
        (artifacts.sentiment, "sentiment", "production"),
        (artifacts.sentiment_alt, "sentiment", "staging"),
    )
    async with running_app(settings) as (app, client):
        info = (await client.get("/model-info")).json()
        assert info["version"] == 1
        assert info["candidate"]["version"] == 2
        assert info["candidate"]["canary_percent"] == 20.0

        seen = {"production": 0, "canary": 0}
        for i in range(2000):
            body = (await client.post("/predict", json={"text": TEXTS[i % len(TEXTS)]})).json()
            seen[body["variant"]] += 1
            assert body["model_version"] == (2 if body["variant"] == "canary" else 1)
        # 20 % of 2,000 is 400 with a standard deviation of ~18; allow four of them.
        assert 328 <= seen["canary"] <= 472, seen

        for user in range(60):
            versions = {
                (await client.post("/predict", json={"text": "ok", "key": f"user-{user}"})).json()[
                    "model_version"
                ]
                for _ in range(3)
            }
            assert len(versions) == 1, f"user-{user} was split across {versions}"
        await wait_shipped(app)

        compared = (await client.get("/analytics/compare", params={"model": "sentiment"})).json()
        canary_rows = compared["candidate"]["variants"].get("canary", 0)
        production_rows = compared["production"]["variants"]["production"]
        assert canary_rows + production_rows == 2000 + 180
        assert canary_rows >= seen["canary"]
        assert compared["agreement"] == {"shadowed": 0, "agreed": 0, "rate": None}


@pytest.mark.parametrize("worker_process", [True, False], ids=["worker-process", "thread"])
async def test_shadow_answers_are_recorded_and_never_returned(
    tmp_path: Path, db_url: str, artifacts: Artifacts, worker_process: bool
) -> None:
    settings = make_settings(tmp_path, db_url, shadow=True, shadow_process=worker_process)
    await register(
        settings,
        (artifacts.sentiment, "sentiment", "production"),
        (artifacts.sentiment_alt, "sentiment", "staging"),
    )
    texts = [f"{t} #{i}" for i in range(5) for t in TEXTS]
    async with running_app(settings) as (app, client):
        for text in texts[:20]:
            body = (await client.post("/predict", json={"text": text})).json()
            assert (body["model_version"], body["variant"]) == (1, "production")
        batch = await client.post("/batch", json={"items": [{"text": t} for t in texts[20:]]})
        assert {p["model_version"] for p in batch.json()["predictions"]} == {1}
        await wait_shadow_idle(app)
        await wait_shipped(app)

        compared = (await client.get("/analytics/compare", params={"model": "sentiment"})).json()
        summary = (await client.get("/analytics/summary")).json()
        recent = (await client.get("/analytics/recent", params={"limit": 1000})).json()["items"]

    assert compared["production"]["total"] == len(texts)
    assert compared["candidate"]["version"] == 2
    assert compared["candidate"]["variants"] == {"shadow": len(texts)}
    production = local_predictions(artifacts.sentiment, texts)
    candidate = local_predictions(artifacts.sentiment_alt, texts)
    agreed = sum(a == b for a, b in zip(production, candidate, strict=True))
    assert compared["agreement"]["shadowed"] == len(texts)
    assert compared["agreement"]["agreed"] == agreed
    assert compared["agreement"]["rate"] == agreed / len(texts)
    # Clients were answered len(texts) times: shadow rows stay out of the summary.
    assert summary["total"] == len(texts)
    shadows = [r for r in recent if r["variant"] == "shadow"]
    answered = {r["id"] for r in recent if r["variant"] == "production"}
    assert len(shadows) == len(texts)
    assert {r["shadow_of"] for r in shadows} == answered


async def test_shadow_work_arriving_together_shares_one_candidate_call(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    # One candidate call stamps all its rows with one time: distinct times count the calls.
    settings = make_settings(tmp_path, db_url, shadow=True, shadow_linger_ms=1000)
    await register(
        settings,
        (artifacts.sentiment, "sentiment", "production"),
        (artifacts.sentiment_alt, "sentiment", "staging"),
    )
    texts = [f"{t} #{i}" for i in range(3) for t in TEXTS]
    async with running_app(settings) as (app, client):
        answers = await asyncio.gather(
            *(client.post("/predict", json={"text": text}) for text in texts)
        )
        assert {a.status_code for a in answers} == {200}
        await wait_shadow_idle(app)
        await wait_shipped(app)
        recent = (await client.get("/analytics/recent", params={"limit": 1000})).json()["items"]

    shadows = [r for r in recent if r["variant"] == "shadow"]
    assert len(shadows) == len(texts)
    assert len({r["ts"] for r in shadows}) == 1


async def test_compare_reports_accuracy_where_feedback_exists(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, db_url, shadow=True)
    await register(
        settings,
        (artifacts.sentiment, "sentiment", "production"),
        (artifacts.sentiment_alt, "sentiment", "staging"),
    )
    texts = [f"{t} #{i}" for i in range(2) for t in TEXTS]
    labelled = texts[:10]  # feedback for some answers only: "positive" is the truth
    async with running_app(settings) as (app, client):
        ids = [
            (await client.post("/predict", json={"text": t})).json()["prediction_id"] for t in texts
        ]
        await wait_shadow_idle(app)
        await wait_shipped(app)
        items = [{"prediction_id": i, "actual": "positive"} for i in ids[: len(labelled)]]
        assert (await client.post("/feedback/batch", json={"items": items})).status_code == 200
        compared = (await client.get("/analytics/compare", params={"model": "sentiment"})).json()

    production = local_predictions(artifacts.sentiment, labelled)
    candidate = local_predictions(artifacts.sentiment_alt, labelled)
    assert compared["production"]["labelled"] == len(labelled)
    assert compared["production"]["accuracy"] == production.count("positive") / len(labelled)
    # The candidate's shadow answers are judged by the feedback on the answers they mirror.
    assert compared["candidate"]["labelled"] == len(labelled)
    assert compared["candidate"]["accuracy"] == candidate.count("positive") / len(labelled)


async def test_compare_needs_a_model_with_a_production_version(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}")
    async with running_app(settings) as (_, client):
        missing = await client.get("/analytics/compare")
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "model"
        assert (await client.get("/analytics/compare", params={"model": "x"})).status_code == 404


async def test_a_candidate_that_fails_to_load_takes_no_traffic(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'p.db'}", canary_percent=50.0, shadow=True
    )
    await register(settings, (artifacts.sentiment, "sentiment", "production"))
    db = Database(settings.database)
    registry = ModelRegistry(settings.inference, db)
    try:
        broken = registry.inspect(artifacts.sentiment_alt.path, "sentiment")
        await registry.register(replace(broken, artifact_sha256="0" * 64), stage="staging")
        async with running_app(settings) as (app, client):
            info = (await client.get("/model-info")).json()
            assert info["candidate"] is None
            assert "(candidate)" in info["last_load_error"]
            assert "sha256" in info["last_load_error"]
            for text in TEXTS * 5:
                body = (await client.post("/predict", json={"text": text})).json()
                assert (body["model_version"], body["variant"]) == (1, "production")
            await wait_shadow_idle(app)
            await wait_shipped(app)
            compared = await client.get("/analytics/compare", params={"model": "sentiment"})
            assert compared.json()["candidate"]["total"] == 0

            await registry.archive("sentiment", 2)  # withdrawn: the error goes with it
            await services_of(app).loader.sync()
            assert (await client.get("/model-info")).json()["last_load_error"] is None
    finally:
        await db.dispose()
