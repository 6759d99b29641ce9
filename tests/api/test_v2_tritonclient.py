"""A real third-party V2 client, NVIDIA's `tritonclient[http]`, with its default settings
(binary tensors in and out) against a running `predictd serve` on PostgreSQL, for a text and
a tabular model; then compressed bodies and the repository API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import Artifacts
from tests.support.app import make_settings, register_demo
from tests.support.server import ServerPool, wait_all_recorded

ADMIN = "triton-admin"
TEXTS = ["I love this product", "This is terrible, I want a refund", "The box contains two cables"]


def test_tritonclient_defaults_against_a_running_server(
    tmp_path: Path, postgres_url: str, artifacts: Artifacts, servers: ServerPool
) -> None:
    settings = make_settings(tmp_path, postgres_url)
    asyncio.run(register_demo(settings, artifacts.sentiment))
    asyncio.run(register_demo(settings, artifacts.tabular))
    server = servers.start(
        postgres_url,
        spool_dir=tmp_path / "spool",
        model=None,
        env={"PREDICTD_ADMIN_TOKEN": ADMIN},
    )
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_server_metadata()["name"] == "predictd"
        assert client.is_model_ready("sentiment")
        meta = client.get_model_metadata("sentiment")
        assert meta["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [-1]}

        # Text: BYTES in, every output back as binary (the client's defaults).
        text = triton.InferInput("text", [3, 1], "BYTES")
        text.set_data_from_numpy(np.array(TEXTS, dtype=object).reshape(3, 1))
        result = client.infer("sentiment", [text])
        labels = [v.decode() for v in result.as_numpy("label")]
        assert labels == ["positive", "negative", "neutral"]
        probabilities = result.as_numpy("probabilities")
        assert probabilities is not None
        assert probabilities.shape == (3, 3)
        assert np.allclose(probabilities.sum(axis=1), 1.0)
        confidence = result.as_numpy("confidence")
        assert confidence is not None
        assert np.allclose(confidence, probabilities.max(axis=1))
        text_ids = [v.decode() for v in result.as_numpy("prediction_id")]
        assert result.get_response()["model_version"] == "1"

        # Tabular: an FP32 [N, 30] matrix, columns in the metadata's feature order.
        tab_meta = client.get_model_metadata("breast_cancer")
        names = tab_meta["parameters"]["feature_names"]
        rows = np.array(
            [[(i.features or {})[n] for n in names] for i, _ in artifacts.tabular.validation[:5]],
            dtype=np.float32,
        )
        features = triton.InferInput("features", list(rows.shape), "FP32")
        features.set_data_from_numpy(rows)
        tabular = client.infer("breast_cancer", [features])
        tab_labels = tabular.as_numpy("label")
        assert tab_labels is not None
        assert tab_labels.dtype == np.int64
        assert tab_labels.tolist() == [label for _, label in artifacts.tabular.validation[:5]]
        tab_ids = [v.decode() for v in tabular.as_numpy("prediction_id")]

        # JSON outputs, gzip both ways, a version asked for by number.
        wanted = [triton.InferRequestedOutput("label", binary_data=False)]
        packed = client.infer(
            "sentiment",
            [text],
            model_version="1",
            outputs=wanted,
            request_compression_algorithm="gzip",
            response_compression_algorithm="deflate",
        )
        assert packed.as_numpy("label").tolist() == labels  # JSON BYTES come back as str

        # A refusal reaches the client as its exception, with predictd's message.
        wrong = triton.InferInput("text", [1], "FP32")
        wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
        with pytest.raises(InferenceServerException, match="takes BYTES"):
            client.infer("sentiment", [wrong])

        index = {m["name"]: m["state"] for m in client.get_model_repository_index()}
        assert index == {"breast_cancer": "READY", "sentiment": "READY"}
        with pytest.raises(InferenceServerException, match="API key"):
            client.unload_model("sentiment")
        client.unload_model("sentiment", headers=admin)
        assert not client.is_model_ready("sentiment")
        client.load_model("sentiment", headers=admin)
        assert client.is_model_ready("sentiment")
    finally:
        client.close()

    ids = text_ids + tab_ids
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert wait_all_recorded(postgres_url, ids) == dict.fromkeys(ids, 1)
