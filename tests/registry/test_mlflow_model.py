"""An MLmodel directory read as untrusted input, and its signature mapped onto predictd's
input schema, without MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from predictd.errors import ArtifactError
from predictd.inference.runtime import Schema
from predictd.registry.mlflow_model import (
    MAX_MLMODEL_BYTES,
    Signature,
    feature_names,
    read_mlflow_model,
    read_signature,
)
from tests.registry.mlflow_models import MlflowModels, copy_model

MiB = 1024 * 1024


def tabular(*names: str, positional: bool = False) -> Schema:
    return Schema("tabular", "classification", names, ("a", "b"), "LR", positional=positional)


TEXT = Schema("text", "classification", (), ("a", "b"), "LR")


def columns(*specs: tuple[str | None, str]) -> Signature | None:
    raw = [{"type": t, **({"name": n} if n else {})} for n, t in specs]
    return read_signature({"inputs": json.dumps(raw)})


def tensor(dtype: str, shape: list[int]) -> Signature | None:
    spec = [{"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}}]
    return read_signature({"inputs": json.dumps(spec)})


def test_mlflow_s_own_directories_are_read(mlflow_models: MlflowModels) -> None:
    model = read_mlflow_model(mlflow_models.cloudpickle_dir, MiB)
    assert model.serialization_format == "cloudpickle"
    assert model.model_file == mlflow_models.cloudpickle_dir / "model.pkl"
    assert model.signature == columns(("sepal", "double"), ("petal", "double"), ("stem", "double"))
    assert read_mlflow_model(mlflow_models.skops_dir, MiB).serialization_format == "skops"
    assert read_mlflow_model(mlflow_models.logged_dir, MiB).run_id == mlflow_models.run_id


def test_numeric_columns_name_a_positional_model_s_features() -> None:
    signature = columns(("a", "double"), ("b", "long"), ("c", "boolean"))
    assert feature_names(signature, tabular("x0", "x1", "x2", positional=True)) == ("a", "b", "c")
    # a model fitted on a DataFrame keeps its own names (and order)
    assert feature_names(signature, tabular("c", "a", "b")) is None
    with pytest.raises(ArtifactError, match=r"missing \['d'\], not in the model \['c'\]"):
        feature_names(signature, tabular("a", "b", "d"))
    with pytest.raises(ArtifactError, match="has 3 columns; the model takes 2 features"):
        feature_names(signature, tabular("x0", "x1", positional=True))
    unnamed = columns((None, "double"), (None, "double"))
    assert feature_names(unnamed, tabular("x0", "x1", positional=True)) is None


def test_columns_predictd_cannot_take_are_refused_by_name() -> None:
    signature = columns(("age", "double"), ("city", "string"), ("photo", "binary"))
    with pytest.raises(ArtifactError, match=r"city \(string\), photo \(binary\) are not numeric"):
        feature_names(signature, tabular("x0", "x1", "x2", positional=True))
    with pytest.raises(ArtifactError, match="must be unique"):
        feature_names(
            columns(("a", "double"), ("a", "double")), tabular("x0", "x1", positional=True)
        )


def test_text_models_take_one_string_column() -> None:
    assert feature_names(columns(("review", "string")), TEXT) is None
    assert feature_names(tensor("str", [-1]), TEXT) is None
    with pytest.raises(ArtifactError, match="must be one string column"):
        feature_names(columns(("review", "string"), ("stars", "double")), TEXT)


def test_a_tensor_signature_is_one_numeric_matrix() -> None:
    assert feature_names(tensor("float64", [-1, 2]), tabular("x0", "x1", positional=True)) is None
    assert feature_names(tensor("float32", [-1, -1]), tabular("x0", "x1", positional=True)) is None
    with pytest.raises(ArtifactError, match="tensor has 3 columns; the model takes 2"):
        feature_names(tensor("float64", [-1, 3]), tabular("x0", "x1", positional=True))
    with pytest.raises(ArtifactError, match=r"shape \[-1, 2, 2\]"):
        feature_names(tensor("float64", [-1, 2, 2]), tabular("x0", "x1", positional=True))
    with pytest.raises(ArtifactError, match="predictd takes one tensor"):
        read_signature({"inputs": json.dumps([{"type": "tensor", "tensor-spec": {}}] * 2)})


def test_no_signature_keeps_the_model_s_schema() -> None:
    assert read_signature(None) is None
    assert read_signature({"inputs": None}) is None
    assert feature_names(None, tabular("x0", positional=True)) is None
    with pytest.raises(ArtifactError, match="not a list of column specs"):
        read_signature({"inputs": "{not json"})


def test_mlmodel_is_yaml_that_builds_no_objects(
    mlflow_models: MlflowModels, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model")
    (model / "MLmodel").write_text(f"flavors: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ArtifactError, match="MLmodel is not valid YAML"):
        read_mlflow_model(model, MiB)
    assert not marker.exists()
    (model / "MLmodel").write_text("- a list\n")
    with pytest.raises(ArtifactError, match="not a YAML mapping"):
        read_mlflow_model(model, MiB)
    (model / "MLmodel").write_text("x: " + "a" * MAX_MLMODEL_BYTES)
    with pytest.raises(ArtifactError, match="bytes \\(at most"):
        read_mlflow_model(model, MiB)


@pytest.mark.parametrize(
    ("flavor", "message"),
    [
        ({"pickled_model": None}, "names no pickled_model file"),
        ({"serialization_format": "dill"}, "serialization_format 'dill' is not one of"),
        ({"pickled_model": "missing.pkl"}, "'missing.pkl' named by MLmodel is not in"),
        ({"pickled_model": "."}, "must be relative"),
        ({"pickled_model": "C:/model.pkl"}, "must be relative"),
    ],
)
def test_the_sklearn_flavor_must_name_its_file_plainly(
    mlflow_models: MlflowModels, tmp_path: Path, flavor: dict[str, object], message: str
) -> None:
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model", **flavor)
    with pytest.raises(ArtifactError, match=message):
        read_mlflow_model(model, MiB)


def test_limits_and_ids(mlflow_models: MlflowModels, tmp_path: Path) -> None:
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model")
    with pytest.raises(ArtifactError, match=r"'model.pkl' is \d+ bytes \(at most 100\)"):
        read_mlflow_model(model, 100)
    (model / "model.pkl").unlink()
    (model / "model.pkl").mkdir()
    with pytest.raises(ArtifactError, match="is not a regular file"):
        read_mlflow_model(model, MiB)
    (model / "model.pkl").rmdir()
    (model / "model.pkl").write_bytes(b"")
    meta = yaml.safe_load((model / "MLmodel").read_text())
    meta["run_id"] = "../../etc"
    (model / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(ArtifactError, match=r"run_id '\.\./\.\./etc' is not an MLflow id"):
        read_mlflow_model(model, MiB)


BOMB = (  # YAML aliases: a few hundred bytes that print as 9**8 items
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
)


@pytest.mark.parametrize(
    ("place", "message"),
    [
        ("  sklearn:\n    pickled_model: model.pkl\n    serialization_format: *h\n",
         "serialization_format a list is not one of"),
        ("  sklearn:\n    pickled_model: model.pkl\nrun_id: *h\n", r"run_id \(a list\) is not"),
        ("  sklearn:\n    pickled_model: model.pkl\nmlflow_version: *h\n", None),
    ],
)  # fmt: skip
def test_aliased_yaml_values_are_never_printed(
    mlflow_models: MlflowModels, tmp_path: Path, place: str, message: str | None
) -> None:
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model")
    (model / "MLmodel").write_text(BOMB + "flavors:\n" + place)
    if message is None:  # not a string: left out, not shown
        assert read_mlflow_model(model, MiB).mlflow_version is None
        return
    with pytest.raises(ArtifactError, match=message):
        read_mlflow_model(model, MiB)
