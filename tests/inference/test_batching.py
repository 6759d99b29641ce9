"""Micro-batching through the real app and the real demo model: concurrent single predictions
share model calls and get exactly the answers they would get alone; a lone request is sent
at once; one bad input fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI

from tests.conftest import Artifacts
from tests.support.app import id_counts, make_settings, running_app, services_of, wait_shipped
from tests.support.runtimes import serve_exploding


def batch_stats(app: FastAPI) -> tuple[float, float, float]:
    """(model calls, items, seconds waited in all) seen by the micro-batcher."""
    registry = services_of(app).metrics.registry
    labels = {"model": "sentiment"}

    def value(name: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    return (
        value("predictd_model_batch_size_count"),
        value("predictd_model_batch_size_sum"),
        value("predictd_model_batch_wait_seconds_sum"),
    )


TEXTS = [f"review {n}: {'I love it' if n % 3 else 'awful, broke at once'}" for n in range(64)]


async def test_concurrent_predictions_share_calls_and_keep_their_answers(
    tmp_path: Path, artifacts: Artifacts
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, url, model_path=artifacts.sentiment.path, batch_max=16)
    async with running_app(settings) as (app, client):
        runtime = services_of(app).inference.runtime
        assert runtime is not None
        alone = [runtime.predict([text])[0] for text in TEXTS]  # one call per item

        responses = await asyncio.gather(
            *(client.post("/predict", json={"text": text}) for text in TEXTS)
        )
        assert [r.status_code for r in responses] == [200] * len(TEXTS)
        for response, expected in zip(responses, alone, strict=True):
            body = response.json()
            assert body["prediction"] == expected.label
            assert body["probabilities"] == expected.probabilities
        calls, items, _ = batch_stats(app)
        assert items == len(TEXTS)
        assert calls < len(TEXTS) / 2, f"{calls} model calls for {len(TEXTS)} concurrent items"

        await wait_shipped(app)
        ids = [r.json()["prediction_id"] for r in responses]
        assert set((await id_counts(url, ids)).values()) == {1}  # each answer recorded once


async def test_a_lone_request_is_sent_at_once(tmp_path: Path, artifacts: Artifacts) -> None:
    # A window of a whole second: a request with nobody else around must not wait it out.
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path, batch_wait_ms=1000)  # fmt: skip
    async with running_app(settings) as (app, client):
        for text in TEXTS[:5]:
            assert (await client.post("/predict", json={"text": text})).status_code == 200
        calls, items, waited_s = batch_stats(app)
    assert (calls, items) == (5, 5)
    assert waited_s < 0.25, f"5 lone requests waited {waited_s:.3f} s in all for company"


async def test_one_bad_item_fails_alone(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path, batch_max=64)  # fmt: skip
    async with running_app(settings) as (app, client):
        serve_exploding(services_of(app).inference)

        texts = [*TEXTS[:20], "please explode", *TEXTS[20:40]]
        responses: list[httpx.Response] = await asyncio.gather(
            *(client.post("/predict", json={"text": text}) for text in texts)
        )
        codes = {text: r.status_code for text, r in zip(texts, responses, strict=True)}
        calls, items, _ = batch_stats(app)
    assert codes.pop("please explode") == 500
    assert set(codes.values()) == {200}
    assert calls < items, "the requests were never batched together"


async def test_batch_max_1_turns_batching_off(tmp_path: Path, artifacts: Artifacts) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=artifacts.sentiment.path, batch_max=1)  # fmt: skip
    async with running_app(settings) as (app, client):
        responses = await asyncio.gather(
            *(client.post("/predict", json={"text": text}) for text in TEXTS[:10])
        )
        assert {r.status_code for r in responses} == {200}
        assert batch_stats(app)[0] == 0
