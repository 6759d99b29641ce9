"""MLflow model directories and runs written by MLflow itself, on local files only, for the
import tests; and the hostile files MLflow would never write."""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ("sepal", "petal", "stem")
DOUBLER = "tests.registry.mlflow_models.Doubler"


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A custom transformer: not on predictd's allow-list."""

    def fit(self, x: Any, y: Any = None) -> Doubler:
        self.n_features_in_ = np.asarray(x).shape[1]
        return self

    def transform(self, x: Any) -> Any:
        return np.asarray(x) * 2.0


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class CallsAnything:
    """Unpickling this calls an arbitrary callable (here ``builtins.exec``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@dataclass(frozen=True)
class MlflowModels:
    rows: np.ndarray  # inputs to compare predictions on
    pipeline: Pipeline  # fitted on a NumPy array: it only knows it takes 3 features
    cloudpickle_dir: Path
    skops_dir: Path
    custom_dir: Path  # a pipeline holding Doubler, cloudpickled
    tracking_uri: str
    run_id: str
    run_model_uri: str  # runs:/<run_id>/model
    logged_model_uri: str  # models:/<model_id>, MLflow 3's logged model
    logged_dir: (
        Path  # the logged model's directory inside the file store (its MLmodel names the run)
    )


def write_models(out: Path) -> MlflowModels:
    with warnings.catch_warnings():
        # MLflow warns about its own internals as it imports them (agent type hints)
        warnings.simplefilter("ignore")
        return _write_models(out)


def _write_models(out: Path) -> MlflowModels:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    custom = make_pipeline(Doubler(), LogisticRegression()).fit(x, y)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", n) for n in FEATURES]),
        outputs=Schema([ColSpec("string")]),
    )
    save = mlflow.sklearn.save_model
    save(pipeline, out / "cloudpickle", signature=signature, serialization_format="cloudpickle")
    save(pipeline, out / "skops", signature=signature, serialization_format="skops")
    save(custom, out / "custom", signature=signature, serialization_format="cloudpickle")
    tracking_uri = (out / "mlruns").as_uri()
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.91)
        mlflow.log_metric("f1", 0.88)
        mlflow.log_param("C", 1.0)
        mlflow.log_param("solver", "lbfgs")
        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, serialization_format="cloudpickle"
        )
    logged = next((out / "mlruns").glob(f"*/models/{info.model_id}/artifacts"))
    return MlflowModels(
        rows=x[:5],
        pipeline=pipeline,
        cloudpickle_dir=out / "cloudpickle",
        skops_dir=out / "skops",
        custom_dir=out / "custom",
        tracking_uri=tracking_uri,
        run_id=run.info.run_id,
        run_model_uri=f"runs:/{run.info.run_id}/model",
        logged_model_uri=info.model_uri,
        logged_dir=logged,
    )


def copy_model(source: Path, target: Path, **sklearn_flavor: Any) -> Path:
    """A copy of an MLflow model directory, its sklearn flavor's fields changed."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    meta = yaml.safe_load((target / "MLmodel").read_text())
    meta["flavors"]["sklearn"].update(sklearn_flavor)
    (target / "MLmodel").write_text(yaml.safe_dump(meta))
    return target


def with_pickle(source: Path, target: Path, payload: object) -> Path:
    """A copy of a cloudpickle model directory whose model.pkl is ``payload`` pickled."""
    copy_model(source, target)
    (target / "model.pkl").write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return target
