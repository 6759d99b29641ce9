"""A Hugging Face-layout transformer export (the demo's, built offline) through the whole
serving path: registration as one bundle, tokenization, micro-batching with padding to the
longest item, truncation at the model's maximum length, /model-info and V2 metadata, the
recorder, drift on text length and predicted labels, and a clear refusal from retraining.

Expected answers are computed here without the runtime: the tokenizer on each text alone (no
padding), the graph's own weights read back from model.onnx, numpy for the rest."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI

from predictd.cli.demo import prepare_demo
from predictd.db.engine import Database
from predictd.demo.train import DemoModel
from predictd.demo.transformer import NAME
from predictd.errors import Conflict
from predictd.monitoring.drift import DriftService
from predictd.registry.service import ModelRegistry
from tests.support.app import (
    id_counts,
    make_settings,
    register_demo,
    running_app,
    services_of,
    wait_shipped,
)

TEXTS = [
    "I love this product, it works perfectly",
    "terrible quality, broke after one day",
    "it is okay",
    "Absolutely wonderful experience, would buy again and again without hesitation",
    "meh",
    "The delivery was late but the item is fine",
]
LONG = " ".join(["wonderful"] * 150 + ["terrible"] * 300)  # 452 tokens: truncated at 128


def reference(export: DemoModel, texts: list[str]) -> np.ndarray:
    """Softmax of the logits, each text tokenized alone and truncated at 128 tokens."""
    import onnx
    from onnx import numpy_helper
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export.path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=128)
    weights = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load(str(export.path / "model.onnx")).graph.initializer
    }
    pooled = np.array([
        weights["embeddings"][tokenizer.encode(t).ids].mean(axis=0) for t in texts
    ])  # fmt: skip
    logits = pooled @ weights["classifier.weight"] + weights["classifier.bias"]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


def model_calls(app: FastAPI) -> tuple[float, float]:
    registry = services_of(app).metrics.registry
    labels = {"model": NAME}
    return (
        registry.get_sample_value("predictd_model_batch_size_count", labels) or 0.0,
        registry.get_sample_value("predictd_model_batch_size_sum", labels) or 0.0,
    )


async def test_a_transformer_export_is_served_recorded_and_described(
    tmp_path: Path, db_url: str, transformer_export: DemoModel
) -> None:
    settings = make_settings(tmp_path, db_url, model_name=NAME, batch_max=16)
    version = await register_demo(settings, transformer_export)
    assert (version.flavor, version.input_kind) == ("transformer", "text")
    texts = [*TEXTS, LONG] * 6
    expected = reference(transformer_export, texts)
    labels = ["negative", "neutral", "positive"]
    async with running_app(settings) as (app, client):
        info = (await client.get("/model-info")).json()
        assert (info["name"], info["flavor"], info["input_kind"]) == (NAME, "transformer", "text")
        assert info["classes"] == labels
        assert info["execution_providers"] == ["CPUExecutionProvider"]
        assert info["max_input_tokens"] == 128

        # Concurrent singles share model calls, padded to the longest: same answers as alone.
        responses = await asyncio.gather(
            *(client.post("/predict", json={"text": t}) for t in texts)
        )
        assert [r.status_code for r in responses] == [200] * len(texts)
        for response, want in zip(responses, expected, strict=True):
            body = response.json()
            assert body["prediction"] == labels[int(want.argmax())]
            assert body["confidence"] == pytest.approx(float(want.max()), abs=1e-5)
            assert [body["probabilities"][label] for label in labels] == pytest.approx(
                want.tolist(), abs=1e-5
            )
        calls, items = model_calls(app)
        assert items == len(texts)
        assert calls < len(texts) / 2, f"{calls} model calls for {len(texts)} concurrent items"

        batch = await client.post("/batch", json={"items": [{"text": t} for t in TEXTS]})
        assert batch.status_code == 200, batch.text
        got = [[r["probabilities"][label] for label in labels] for r in batch.json()["predictions"]]
        assert np.allclose(got, expected[: len(TEXTS)], atol=1e-5)

        meta = (await client.get(f"/v2/models/{NAME}")).json()
        assert meta["platform"] == "transformer"
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert meta["parameters"]["max_input_tokens"] == 128
        assert meta["parameters"]["execution_providers"] == ["CPUExecutionProvider"]
        infer = await client.post(f"/v2/models/{NAME}/infer", json={
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]
        })  # fmt: skip
        assert infer.status_code == 200, infer.text
        [label_out] = [o for o in infer.json()["outputs"] if o["name"] == "label"]
        assert label_out["data"] == [labels[int(p.argmax())] for p in expected[:2]]

        empty = await client.post("/predict", json={"text": ""})
        assert empty.status_code == 422
        assert empty.json()["error"]["field"] == "text"
        wrong = await client.post("/predict", json={"features": {"x": 1.0}})
        assert wrong.status_code == 422

        await wait_shipped(app)
    ids = [r.json()["prediction_id"] for r in responses]
    assert set((await id_counts(db_url, ids)).values()) == {1}  # each answer recorded once


async def test_drift_on_text_length_and_labels_and_no_retraining(tmp_path: Path) -> None:
    """The demo registers its validation split: long, one-sided texts move the length and
    the predicted labels away from it. `predictd train` says it does not fine-tune."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    settings = make_settings(tmp_path, url, model_name=NAME, drift_min_rows=50)
    db = Database(settings.database)
    try:
        registry = ModelRegistry(settings.inference, db)
        assert await prepare_demo(registry, kind="transformer") == NAME
        version = await registry.production(NAME)
        assert version is not None
        profile = version.reference_profile or {}
        assert {"text_length", "tokens", "predicted_labels"} <= set(profile)
        with pytest.raises(Conflict, match="does not fine-tune transformers"):
            registry.open_estimator(version)
    finally:
        await db.dispose()

    async with running_app(settings) as (app, client):
        items = [{"text": f"{LONG} order {n}"} for n in range(20)]
        for _ in range(5):
            assert (await client.post("/batch", json={"items": items})).status_code == 200
        await wait_shipped(app)
    db = Database(settings.database)
    try:
        [report] = await DriftService(db, settings.monitoring).run(timedelta(hours=1))
    finally:
        await db.dispose()
    assert report["model_name"] == NAME
    assert report["status"] == "ok", report
    assert report["features"]["text_length"]["drifted"] is True
    assert report["outputs"]["label"]["drifted"] is True
    assert report["drift_detected"] is True


async def test_serve_model_takes_the_export_directory(
    tmp_path: Path, transformer_export: DemoModel
) -> None:
    """`predictd serve --model export/`: packed and registered at start, named by the
    directory."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
                             model_path=transformer_export.path)  # fmt: skip
    async with running_app(settings) as (_, client):
        info = (await client.get("/model-info")).json()
        assert (info["name"], info["flavor"]) == (NAME, "transformer")
        answer = await client.post("/predict", json={"text": TEXTS[0]})
        assert answer.status_code == 200, answer.text
