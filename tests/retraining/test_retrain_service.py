"""retrain() on SQLite and PostgreSQL, fed through the app's HTTP API: a text model, an estimator
that takes no sample weights, a regressor, and feedback no label of the model can be."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from skops.io import dump

from predictd.db import migrate
from predictd.db.engine import Database
from predictd.errors import Conflict
from predictd.registry.datasets import DatasetFile
from predictd.registry.models import ModelVersion
from predictd.registry.service import ModelRegistry
from predictd.retraining import RetrainOptions, RetrainResult, retrain, run_due
from predictd.settings import Settings
from tests.conftest import Artifacts
from tests.support.app import make_settings, running_app, services_of, wait_shipped

FEATURES = ("a", "b", "c")


async def register(settings: Settings, path: Path, name: str, data: Path) -> ModelVersion:
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        candidate = await asyncio.to_thread(
            registry.inspect, path, name, training_data=DatasetFile(data)
        )
        return await registry.register(candidate)
    finally:
        await db.dispose()


def tabular(tmp_path: Path, estimator: Any, y_of: Any, rows: int = 120) -> tuple[Path, Path]:
    """``estimator`` fitted on ``rows`` rows of features a, b, c (as x0..x2) labelled
    ``y_of(x)``, and those rows as CSV under the names the registry will give them."""
    x = np.random.default_rng(3).normal(size=(rows, 3))
    y = y_of(x)
    estimator.fit(x, y)
    path = tmp_path / "model.skops"
    dump(estimator, path)
    data = tmp_path / "train.csv"
    lines = ["x0,x1,x2,label"] + [
        ",".join([*map(repr, map(float, r)), str(v)]) for r, v in zip(x, y, strict=True)
    ]
    data.write_text("\n".join(lines) + "\n")
    return path, data


async def serve_and_label(
    client: httpx.AsyncClient, name: str, items: list[dict[str, Any]], labels: list[Any]
) -> None:
    ids: list[str] = []
    for start in range(0, len(items), 100):
        response = await client.post(
            f"/models/{name}/batch", json={"items": items[start : start + 100]}
        )
        assert response.status_code == 200, response.text
        ids += [p["prediction_id"] for p in response.json()["predictions"]]
    feedback = [{"prediction_id": i, "actual": y} for i, y in zip(ids, labels, strict=True)]
    response = await client.post("/feedback/batch", json={"items": feedback})
    assert response.status_code == 200, response.text


async def run(app: Any, name: str, **overrides: Any) -> tuple[RetrainResult, list[str]]:
    services = services_of(app)
    await wait_shipped(app)
    said: list[str] = []
    options = RetrainOptions.from_settings(name, services.settings.retraining, **overrides)
    result = await retrain(services.db, services.registry, options, said.append)
    return result, said


async def test_a_text_model_is_refitted_on_its_data_and_labelled_texts(
    tmp_path: Path, db_url: str, artifacts: Artifacts
) -> None:
    trained = artifacts.sentiment
    assert trained.training_data is not None
    settings = make_settings(tmp_path, db_url)
    await register(settings, trained.path, "sentiment", trained.training_data)
    texts = [f"review {n}: the delivery was {'late' if n % 2 else 'quick'}" for n in range(40)]
    labels = ["negative" if n % 2 else "positive" for n in range(40)]
    async with running_app(settings) as (app, client):
        await serve_and_label(client, "sentiment", [{"text": t} for t in texts], labels)
        result, said = await run(app, "sentiment", min_labelled=30)
    version = result.version
    assert version.parent_version == 1
    assert version.stage == "none"
    assert version.input_kind == "text"
    assert version.training_run is not None
    assert version.training_run["rows"] == {
        "base": trained.training_samples,
        "labelled": 40,
        "train": 32,
        "holdout": 8,
        "unusable_inputs": 0,
    }
    assert version.training_data is not None
    assert version.training_data["rows"] == trained.training_samples + 32
    assert version.reference_profile["text_length"]["count"] == 8
    assert [s.split(" ")[0] for s in said] == ["read", "read", "fitting", "scoring", "registered"]
    assert result.to_json()["holdout"]["candidate"]["accuracy"] == 1.0


async def test_an_estimator_without_sample_weight_is_fitted_unweighted(
    tmp_path: Path, db_url: str
) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    path, data = tabular(
        tmp_path, KNeighborsClassifier(n_neighbors=3), lambda x: (x[:, 0] > 0).astype(int)
    )
    settings = make_settings(tmp_path, db_url)
    await register(settings, path, "knn", data)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3))
    items = [{"features": {f"x{i}": float(v) for i, v in enumerate(row)}} for row in x]
    # The second half's labels are not classes of this model: counted, never fitted on.
    labels: list[Any] = [int(v > 0) for v in x[:20, 0]] + ["maybe"] * 10
    async with running_app(settings) as (app, client):
        await serve_and_label(client, "knn", items, labels)
        result, said = await run(app, "knn", min_labelled=10)
    assert "KNeighborsClassifier takes no sample_weight: fitted unweighted" in said
    assert result.weighted is False
    assert result.to_json()["sample_weight"] is False
    assert result.unusable_labels == 10
    assert "10 whose label the model cannot learn" in said[0]
    assert result.run["rows"]["labelled"] == 20
    assert result.run["rows"]["unusable_inputs"] == 0


async def test_a_regressor_is_scored_by_r2_and_mae(tmp_path: Path, db_url: str) -> None:
    from sklearn.linear_model import Ridge

    path, data = tabular(tmp_path, Ridge(alpha=1.0), lambda x: 2 * x[:, 0] - x[:, 1])
    settings = make_settings(tmp_path, db_url)
    await register(settings, path, "ridge", data)
    x = np.random.default_rng(5).normal(size=(50, 3))
    items = [{"features": {f"x{i}": float(v) for i, v in enumerate(row)}} for row in x]
    shifted = [float(3 * row[0] - row[1] + 1) for row in x]  # the relation changed
    async with running_app(settings) as (app, client):
        await serve_and_label(client, "ridge", items, shifted)
        result, _ = await run(app, "ridge", min_labelled=20, params={"alpha": 0.1})
    holdout = result.run["holdout"]
    assert set(holdout["candidate"]) == {"r2", "mae"}
    assert holdout["candidate"]["mae"] < holdout["production"]["mae"]
    assert result.version.hyperparameters["alpha"] == 0.1
    assert result.version.metrics == holdout["candidate"]
    assert result.summary().startswith("registered ridge v2 (unstaged) from v1: 120 base + 40")
    assert "holdout r2" in result.summary()


async def test_only_skops_artifacts_are_refitted(tmp_path: Path, db_url: str) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from tests.inference.test_formats import save_onnx

    x = np.random.default_rng(6).normal(size=(50, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    path = save_onnx(to_onnx(model, x[:1], options={"zipmap": False}), tmp_path / "m.onnx")
    settings = make_settings(tmp_path, db_url)
    db = Database(settings.database)
    try:
        await migrate.upgrade(db)
        registry = ModelRegistry(settings.inference, db)
        await registry.register(await asyncio.to_thread(registry.inspect, path, "onnx"))
        options = RetrainOptions.from_settings("onnx", settings.retraining)
        with pytest.raises(Conflict, match="retraining refits skops"):
            await retrain(db, registry, options)
        # The schedule leaves it alone rather than failing on it every interval.
        assert await run_due(db, registry, settings.retraining, timedelta(days=1)) == []
        assert [v.version for v in await registry.list_versions("onnx")] == [1]
    finally:
        await db.dispose()
