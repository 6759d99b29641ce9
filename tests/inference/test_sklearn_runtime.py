"""The skops runtime: schema inference, trusted types, regression and classification."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skops.io import dump

from predictd.errors import ArtifactError, InvalidInput
from predictd.inference.runtime import ModelMeta
from predictd.inference.sklearn_runtime import SklearnRuntime, describe_estimator, load_estimator
from tests.conftest import Artifacts


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def regression_artifact(tmp_path: Path) -> Path:
    x = np.random.default_rng(0).normal(size=(20, 2))
    model = LinearRegression().fit(x, x[:, 0] * 3 + x[:, 1])
    path = tmp_path / "reg.skops"
    dump(model, path)
    return path


def runtime_for(path: Path, **meta: object) -> SklearnRuntime:
    info = describe_estimator(load_estimator(path))
    values: dict[str, object] = {
        "name": path.stem, "version": 1, "flavor": "sklearn", "sha256": "0" * 64,
        "input_kind": info.input_kind, "task": info.task, "feature_names": info.feature_names,
        "classes": info.classes, "loaded_at": datetime.now(UTC),
    }  # fmt: skip
    values.update(meta)
    runtime = SklearnRuntime(path, ModelMeta(**values))  # type: ignore[arg-type]
    runtime.prepare()
    return runtime


def test_regressor_takes_numbered_features(tmp_path: Path) -> None:
    runtime = runtime_for(regression_artifact(tmp_path))
    assert runtime.meta.task == "regression"
    assert runtime.meta.feature_names == ("x0", "x1")
    value = runtime.validate(None, {"x0": 1, "x1": 2.5}, max_chars=100)
    [prediction] = runtime.predict([value])
    assert prediction.label == pytest.approx(5.5)
    assert prediction.confidence is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "3", None])
def test_non_finite_and_non_numeric_features_are_refused(tmp_path: Path, bad: object) -> None:
    runtime = runtime_for(regression_artifact(tmp_path))
    with pytest.raises(InvalidInput) as info:
        runtime.validate(None, {"x0": 1, "x1": bad}, max_chars=100)
    assert info.value.field == "features.x1"


def test_text_classifier_schema(artifacts: Artifacts) -> None:
    runtime = runtime_for(artifacts.sentiment.path)
    assert runtime.meta.input_kind == "text"
    assert runtime.meta.classes == ("negative", "neutral", "positive")
    predictions = runtime.predict(["I love this product", "This is terrible, I want a refund"])
    assert [p.label for p in predictions] == ["positive", "negative"]
    assert all(
        p.probabilities and abs(sum(p.probabilities.values()) - 1) < 1e-9 for p in predictions
    )


def test_untrusted_types_are_refused(tmp_path: Path) -> None:
    x = np.arange(10, dtype=float).reshape(5, 2)
    model = make_pipeline(FunctionTransformer(double), LinearRegression()).fit(x, x[:, 0])
    path = tmp_path / "custom.skops"
    dump(model, path)
    with pytest.raises(ArtifactError, match=r"does not trust: tests\.inference"):
        load_estimator(path)
    trusted = f"{__name__}.double"
    assert describe_estimator(load_estimator(path, [trusted])).task == "regression"


def test_garbage_file_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.skops"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ArtifactError, match="not a readable skops artifact"):
        load_estimator(path)
