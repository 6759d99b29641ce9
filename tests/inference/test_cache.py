"""The prediction cache through the real app, model and Redis: a cached answer is a prediction
of its own (id, record, analytics); a new version never answers from an old version's entry;
replicas share entries through Redis; Redis away means the local LRU, never an error."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import redis

from predictd.inference.sklearn_runtime import SklearnRuntime
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import id_counts, make_settings, running_app, services_of, wait_shipped
from tests.support.server import free_port


async def test_a_cached_answer_is_a_prediction_of_its_own(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, url, model_path=artifacts.sentiment.path, cache="local")
    async with running_app(settings) as (app, client):
        first = (await client.post("/predict", json={"text": "I love this product"})).json()
        again = (await client.post("/predict", json={"text": "I love this product"})).json()
        other = (await client.post("/predict", json={"text": "It broke at once"})).json()
        assert (first["cache_hit"], again["cache_hit"], other["cache_hit"]) == (False, True, False)
        assert again["prediction_id"] != first["prediction_id"]
        for field in ("prediction", "confidence", "probabilities", "model_version"):
            assert again[field] == first[field]

        await wait_shipped(app)
        ids = [first["prediction_id"], again["prediction_id"], other["prediction_id"]]
        assert set((await id_counts(url, ids)).values()) == {1}
        summary = (await client.get("/analytics/summary")).json()
        assert (summary["total"], summary["cache_hits"]) == (3, 1)
        assert abs(summary["cache_hit_rate"] - 1 / 3) < 1e-9
        registry = services_of(app).metrics.registry
        hits = registry.get_sample_value(
            "predictd_cache_lookups_total",
            {"model": "sentiment", "source": "local", "result": "hit"},
        )
        assert hits == 1


async def test_batches_mix_hits_and_misses_and_features_match_in_any_order(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.tabular.path, cache="local")  # fmt: skip
    async with running_app(settings) as (app, client):
        runtime = services_of(app).inference.runtime
        assert runtime is not None
        row = {name: float(i) / 7 for i, name in enumerate(runtime.meta.feature_names)}
        shuffled = dict(reversed(list(row.items())))
        other = {name: value + 1 for name, value in row.items()}
        response = await client.post("/predict", json={"features": row})
        assert response.status_code == 200, response.text
        alone = response.json()
        batch = await client.post("/batch", json={"items": [{"features": shuffled},
                                                              {"features": other}]})  # fmt: skip
    assert batch.status_code == 200, batch.text
    hit, miss = batch.json()["predictions"]
    assert (hit["cache_hit"], miss["cache_hit"]) == (True, False)
    assert hit["prediction"] == alone["prediction"]
    assert hit["probabilities"] == alone["probabilities"]


async def test_a_new_version_never_answers_from_an_old_entry(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path, cache="local")  # fmt: skip
    text = {"text": "fine, I suppose, for the price"}
    async with running_app(settings) as (app, client):
        v1 = (await client.post("/predict", json=text)).json()
        assert (await client.post("/predict", json=text)).json()["cache_hit"] is True
        inference = services_of(app).inference
        assert inference.runtime is not None
        meta = dataclasses.replace(inference.runtime.meta, version=v1["model_version"] + 1,
                                   sha256="b" * 64)  # fmt: skip
        newer = SklearnRuntime(artifacts.sentiment_alt.path, meta)
        newer.prepare()
        inference.set_runtime(newer)
        v2 = (await client.post("/predict", json=text)).json()
    assert v2["model_version"] == v1["model_version"] + 1
    assert v2["cache_hit"] is False


async def test_replicas_share_entries_through_redis(
    tmp_path: Path, artifacts: Artifacts, redis_url: str
) -> None:
    def settings(n: int) -> Settings:
        return make_settings(tmp_path / f"r{n}", f"sqlite:///{tmp_path / f'p{n}.db'}",
                             model_path=artifacts.sentiment.path, cache="redis",
                             redis_url=redis_url, cache_ttl_s=60)  # fmt: skip

    text = {"text": "shared between replicas"}
    async with running_app(settings(1)) as (_, one), running_app(settings(2)) as (_, two):
        first = (await one.post("/predict", json=text)).json()
        for _ in range(50):  # the write to Redis is in the background
            shared = (await two.post("/predict", json=text)).json()
            if shared["cache_hit"]:
                break
            await asyncio.sleep(0.02)
    assert shared["cache_hit"] is True
    assert shared["probabilities"] == first["probabilities"]
    client = redis.Redis.from_url(redis_url)
    try:
        keys = client.keys("predictd:cache:sentiment:*")
        assert len(keys) == 1
        assert 0 < client.pttl(keys[0]) <= 60_000
    finally:
        client.close()


async def test_redis_away_means_the_local_lru(tmp_path: Path, artifacts: Artifacts) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path, cache="redis",
                             redis_url=nobody)  # fmt: skip
    async with running_app(settings) as (app, client):
        answers = [await client.post("/predict", json={"text": "no Redis here"}) for _ in range(3)]
        registry = services_of(app).metrics.registry
        local_hits = registry.get_sample_value(
            "predictd_cache_lookups_total",
            {"model": "sentiment", "source": "local", "result": "hit"},
        )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["cache_hit"] for a in answers] == [False, True, True]
    assert local_hits == 2
