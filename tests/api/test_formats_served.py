"""Flavors other than skops through the whole serving path: registration, load, HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from tests.support.app import make_settings, running_app


async def test_an_onnx_classifier_is_served_like_any_model(tmp_path: Path) -> None:
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    model = LogisticRegression(max_iter=5000).fit(x, data.target)
    graph = to_onnx(model, x[:1], options={"zipmap": False})
    onnx.helper.set_model_props(graph, {"feature_names": json.dumps(names)})
    path = tmp_path / "cancer.onnx"
    path.write_bytes(graph.SerializeToString())

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", model_path=path)
    async with running_app(settings) as (_, client):
        info = (await client.get("/model-info")).json()
        assert (info["name"], info["flavor"], info["input_kind"]) == ("cancer", "onnx", "tabular")
        assert info["feature_names"] == names
        rows = x[:5]
        for row, expected in zip(rows, model.predict_proba(rows), strict=True):
            features = dict(zip(names, map(float, row), strict=True))
            body = (await client.post("/predict", json={"features": features})).json()
            assert body["prediction"] == int(expected.argmax())
            assert abs(body["confidence"] - float(expected.max())) < 1e-4
        bad = await client.post("/predict", json={"features": {**features, "mean_radius": "x"}})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "features.mean_radius"
