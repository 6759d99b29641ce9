"""Artifact flavors beside skops: pickle/joblib (opt-in, refused before a byte is unpickled) and
ONNX (converted from scikit-learn with skl2onnx, checked against the original model)."""

from __future__ import annotations

import json
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from predictd.demo.train import load_sentiment_data
from predictd.errors import ArtifactError
from predictd.inference.formats import flavor_of, inspect_artifact, runtime_for
from predictd.inference.onnx_runtime import OnnxRuntime
from predictd.inference.runtime import ModelMeta, ModelRuntime, Prediction, Schema
from predictd.inference.sklearn_runtime import load_estimator
from predictd.registry.artifacts import ArtifactStore
from predictd.settings import InferenceSettings, Settings
from tests.conftest import Artifacts


@dataclass
class Touch:
    """Unpickling this creates ``marker``: proof that the file's code ran."""

    marker: Path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.marker,))


def settings_for(tmp_path: Path, **values: Any) -> InferenceSettings:
    return Settings(artifact_dir=tmp_path / "store", **values).inference


def meta_for(schema: Schema, flavor: str, sha256: str = "0" * 64) -> ModelMeta:
    return ModelMeta(
        name="model",
        version=1,
        flavor=flavor,
        sha256=sha256,
        input_kind=schema.input_kind,
        task=schema.task,
        feature_names=schema.feature_names,
        classes=schema.classes,
        algorithm=schema.algorithm,
        loaded_at=datetime.now(UTC),
    )


def register_and_open(path: Path, settings: InferenceSettings) -> tuple[Schema, ModelRuntime]:
    """What the registry does: inspect and store at registration; verify, build, prepare at
    load."""
    flavor, schema = inspect_artifact(path, settings)
    store = ArtifactStore.from_settings(settings)
    uri, sha = store.put(path)
    runtime = runtime_for(flavor, store.verified_path(uri, sha), meta_for(schema, flavor), settings)
    runtime.prepare()
    return schema, runtime


def tabular(rows: np.ndarray, names: tuple[str, ...]) -> list[dict[str, float]]:
    return [dict(zip(names, map(float, row), strict=True)) for row in rows]


def assert_agrees(predictions: list[Prediction], model: Any, x: Any) -> None:
    """Same labels as scikit-learn and probabilities within 1e-4."""
    expected = model.predict_proba(x)
    keys = [str(c) for c in model.classes_]
    assert [p.label for p in predictions] == [c.item() for c in model.classes_[expected.argmax(1)]]
    for prediction, row in zip(predictions, expected, strict=True):
        assert prediction.probabilities is not None
        assert list(prediction.probabilities) == keys
        assert list(prediction.probabilities.values()) == pytest.approx(list(row), abs=1e-4)
        assert prediction.confidence == max(prediction.probabilities.values())


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def save_onnx(model: Any, path: Path, metadata: dict[str, str] | None = None) -> Path:
    if metadata:
        onnx.helper.set_model_props(model, metadata)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("name", "flavor"),
    [
        ("m.skops", "sklearn"),
        ("m.onnx", "onnx"),
        ("m.joblib", "pickle"),
        ("m.pkl", "pickle"),
        ("M.PICKLE", "pickle"),
        ("m.bin", "sklearn"),
    ],
)
def test_flavor_follows_the_suffix(name: str, flavor: str) -> None:
    assert flavor_of(Path(name)) == flavor


# --- pickle / joblib ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pkl", ".joblib", ".pickle"])
def test_pickle_is_refused_without_opt_in_and_never_unpickled(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(Touch(marker)))
    settings = settings_for(tmp_path)
    assert settings.allow_pickle is False

    with pytest.raises(ArtifactError, match="PREDICTD_ALLOW_PICKLE=true") as registering:
        inspect_artifact(path, settings)
    assert "skops" in str(registering.value)
    schema = Schema("tabular", "regression", ("x0",), (), "Touch", positional=True)
    with pytest.raises(ArtifactError, match="PREDICTD_ALLOW_PICKLE"):
        runtime_for("pickle", path, meta_for(schema, "pickle"), settings).prepare()
    assert not marker.exists()

    # Control: the payload is real, and the opt-in is what would have run it.
    with pytest.raises(ArtifactError, match="not a fitted"):
        inspect_artifact(path, settings_for(tmp_path, allow_pickle=True))
    assert marker.exists()


def test_a_pickle_changed_after_registration_is_refused_before_unpickling(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    settings = settings_for(tmp_path, allow_pickle=True)
    path = tmp_path / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(*iris), path)
    flavor, schema = inspect_artifact(path, settings)
    store = ArtifactStore.from_settings(settings)
    uri, sha = store.put(path)

    marker = tmp_path / "pwned"
    store.local_path(uri).write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(ArtifactError, match="sha256"):
        runtime_for(flavor, store.verified_path(uri, sha), meta_for(schema, flavor), settings)
    assert not marker.exists()


@pytest.mark.parametrize("dump", ["joblib", "pickle"])
def test_a_joblib_model_loads_and_predicts_when_allowed(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray], dump: str
) -> None:
    x, y = iris
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = tmp_path / ("model.joblib" if dump == "joblib" else "model.pkl")
    if dump == "joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    schema, runtime = register_and_open(path, settings_for(tmp_path, allow_pickle=True))
    assert runtime.flavor == "pickle"
    assert schema == Schema(
        "tabular", "classification", ("x0", "x1", "x2", "x3"), (0, 1, 2), "LogisticRegression",
        positional=True,
    )  # fmt: skip
    assert_agrees(runtime.predict(tabular(x, schema.feature_names)), model, x)


def test_a_pickle_of_something_else_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ArtifactError, match="holds a dict"):
        inspect_artifact(path, settings_for(tmp_path, allow_pickle=True))


# --- ONNX --------------------------------------------------------------------------------


@pytest.mark.parametrize("zipmap", [True, False])
def test_onnx_classifier_agrees_with_scikit_learn(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray], zipmap: bool
) -> None:
    x, y = iris
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = save_onnx(to_onnx(model, x[:1], options={"zipmap": zipmap}), tmp_path / "iris.onnx")
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    assert runtime.flavor == "onnx"
    assert schema == Schema(
        "tabular", "classification", ("x0", "x1", "x2", "x3"), (0, 1, 2), "LogisticRegression",
        positional=True,
    )  # fmt: skip
    assert_agrees(runtime.predict(tabular(x, schema.feature_names)), model, x)


def test_onnx_feature_names_come_from_metadata(tmp_path: Path, artifacts: Artifacts) -> None:
    forest = load_estimator(artifacts.tabular.path)
    names = artifacts.tabular.feature_names
    assert names is not None
    x = load_breast_cancer().data.astype(np.float32)
    converted = to_onnx(forest, x[:1], options={"zipmap": False})
    metadata = {"feature_names": json.dumps(names)}
    path = save_onnx(converted, tmp_path / "cancer.onnx", metadata)
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    assert (schema.feature_names, schema.positional, schema.classes) == (names, False, (0, 1))
    assert schema.algorithm == "RandomForestClassifier"
    assert_agrees(runtime.predict(tabular(x, names)), forest, x)


def test_onnx_regressor_agrees_with_scikit_learn(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    model = LinearRegression().fit(x, x @ np.array([3.0, -1.0, 0.5]) + 2)
    path = save_onnx(to_onnx(model, x[:1]), tmp_path / "reg.onnx")
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    assert schema == Schema(
        "tabular", "regression", ("x0", "x1", "x2"), (), "LinearRegression", positional=True
    )
    predictions = runtime.predict(tabular(x, schema.feature_names))
    assert [p.label for p in predictions] == pytest.approx(list(model.predict(x)), abs=1e-4)
    assert all(p.confidence is None and p.probabilities is None for p in predictions)


@pytest.mark.parametrize(("shape", "zipmap"), [([None, 1], True), ([None], False)])
def test_onnx_text_pipeline_agrees_with_scikit_learn(
    tmp_path: Path, shape: list[int | None], zipmap: bool
) -> None:
    texts, labels = load_sentiment_data()
    # Unigrams: skl2onnx's n-gram tokenisation only approximates scikit-learn's. The "C"
    # locale is one every host has (the converter's default, en_US.UTF-8, often is not).
    model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(texts, labels)
    options = {TfidfVectorizer: {"locale": "C"}, LogisticRegression: {"zipmap": zipmap}}
    converted = to_onnx(model, initial_types=[("text", StringTensorType(shape))], options=options)
    path = save_onnx(converted, tmp_path / "sentiment.onnx")
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    assert (schema.input_kind, schema.task, schema.feature_names) == ("text", "classification", ())
    assert schema.classes == ("negative", "neutral", "positive")
    assert_agrees(runtime.predict(texts), model, texts)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_onnx_classes_the_graph_does_not_declare_come_from_metadata(
    tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = iris
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(x, y)
    bare = tmp_path / "mlp.onnx"
    save_onnx(to_onnx(model, x[:1], options={"zipmap": False}), bare)
    with pytest.raises(ArtifactError, match="metadata_props 'classes'"):
        inspect_artifact(bare, settings_for(tmp_path))

    converted = to_onnx(model, x[:1], options={"zipmap": False})
    path = save_onnx(converted, tmp_path / "mlp-named.onnx", {"classes": json.dumps([0, 1, 2])})
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    assert schema.classes == (0, 1, 2)
    assert_agrees(runtime.predict(tabular(x, schema.feature_names)), model, x)


def test_onnx_runtime_is_thread_safe(tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = iris
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = save_onnx(to_onnx(model, x[:1]), tmp_path / "iris.onnx")
    schema, runtime = register_and_open(path, settings_for(tmp_path))
    rows = tabular(x, schema.feature_names)
    expected = runtime.predict(rows)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: runtime.predict(rows), range(32)))
    assert all(r == expected for r in results)


def test_a_damaged_onnx_file_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a protobuf")
    with pytest.raises(ArtifactError, match="not a model onnxruntime can load"):
        inspect_artifact(path, settings_for(tmp_path))


def test_missing_onnxruntime_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a failed import leaves
    schema = Schema("tabular", "regression", ("x0",), (), "onnx", positional=True)
    runtime = OnnxRuntime(tmp_path / "m.onnx", meta_for(schema, "onnx"))
    with pytest.raises(ArtifactError, match=r"pip install 'predictd\[onnx\]'"):
        runtime.load()
