"""`predictd models import-mlflow` through Typer's runner, against SQLite and PostgreSQL: models
MLflow itself wrote are registered as skops and served; what is not trusted is refused with
nothing registered and nothing executed."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictd.cli import app
from predictd.errors import ArtifactError
from predictd.registry.mlflow_import import prepare_import
from predictd.registry.mlflow_tracking import download
from predictd.settings import InferenceSettings
from tests.registry.mlflow_models import (
    DOUBLER,
    FEATURES,
    CallsAnything,
    MlflowModels,
    Payload,
    copy_model,
    with_pickle,
)
from tests.support.app import make_settings, running_app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICTD_AUTO_MIGRATE", "true")
    monkeypatch.setenv("PREDICTD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREDICTD_TRUSTED_TYPES", raising=False)
    monkeypatch.chdir(tmp_path)
    return db_url


def invoke(*args: str, code: int = 0) -> str:
    """What a command printed on stdout when it succeeded, on stderr when it failed."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.stdout if code == 0 else result.stderr


def refused(*args: str) -> str:
    """A refused import: exit 1, one error line, and nothing registered."""
    err = invoke("models", "import-mlflow", *args, code=1)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert invoke("models", "list") == ""
    return lines[0]


def shown(name: str, version: int = 1) -> dict[str, object]:
    found: dict[str, object] = json.loads(invoke("models", "show", name, str(version)))
    return found


@pytest.mark.parametrize("fmt", ["cloudpickle", "skops"])
async def test_an_imported_pipeline_serves_the_original_predictions(
    env: str, mlflow_models: MlflowModels, tmp_path: Path, fmt: str
) -> None:
    source = mlflow_models.cloudpickle_dir if fmt == "cloudpickle" else mlflow_models.skops_dir
    args = ("models", "import-mlflow", str(source), "--name", "iris", "--stage", "production")
    out = await asyncio.to_thread(invoke, *args)  # the CLI runs its own event loop
    assert f"registered iris v1 (production) from MLflow ({fmt}" in out
    version = await asyncio.to_thread(shown, "iris")
    assert version["flavor"] == "sklearn"
    assert str(version["artifact_uri"]).endswith(".skops")
    # The pipeline was fitted on an array: the signature's columns name its features.
    assert version["feature_names"] == list(FEATURES)
    assert version["classes"] == ["no", "yes"]
    assert version["algorithm"] == "LogisticRegression"
    tags = version["tags"]
    assert isinstance(tags, dict)
    assert set(tags) == {"mlflow.serialization_format", "mlflow.version", "mlflow.model_id"}
    assert tags["mlflow.serialization_format"] == fmt

    settings = make_settings(tmp_path, env, model_name="iris")
    original = mlflow_models.pipeline
    async with running_app(settings) as (_, client):
        for row in mlflow_models.rows:
            features = dict(zip(FEATURES, (float(v) for v in row), strict=True))
            answer = await client.post("/predict", json={"features": features})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model_version"] == 1
            assert body["prediction"] == original.predict([row])[0]
            expected = dict(zip(original.classes_, original.predict_proba([row])[0], strict=True))
            assert body["probabilities"] == pytest.approx(expected, abs=1e-9)


def test_a_run_s_metrics_and_params_become_the_version_s(
    env: str, mlflow_models: MlflowModels
) -> None:
    uri = mlflow_models.run_model_uri
    out = invoke(
        "models", "import-mlflow", uri, "--name", "iris", "--tracking-uri",
        mlflow_models.tracking_uri, "--tag", "team=search",
    )  # fmt: skip
    assert f"run {mlflow_models.run_id}: 2 metrics, 2 params" in out
    version = shown("iris")
    assert version["metrics"] == {"accuracy": 0.91, "f1": 0.88}
    assert version["hyperparameters"] == {"C": "1.0", "solver": "lbfgs"}
    tags = version["tags"]
    assert isinstance(tags, dict)
    assert tags["mlflow.run_id"] == mlflow_models.run_id
    assert tags["mlflow.source"] == uri
    assert tags["team"] == "search"
    assert version["description"] == f"imported from MLflow: {uri}"
    assert version["feature_names"] == list(FEATURES)


def test_a_models_uri_reads_the_run_its_mlmodel_names(
    env: str, mlflow_models: MlflowModels
) -> None:
    uri = mlflow_models.logged_model_uri
    assert uri.startswith("models:/")
    invoke(
        "models",
        "import-mlflow",
        uri,
        "--name",
        "iris",
        "--tracking-uri",
        mlflow_models.tracking_uri,
    )
    version = shown("iris")
    assert version["metrics"] == {"accuracy": 0.91, "f1": 0.88}
    tags = version["tags"]
    assert isinstance(tags, dict)
    assert tags["mlflow.run_id"] == mlflow_models.run_id
    assert tags["mlflow.source"] == uri


def test_a_directory_naming_its_run_reads_the_run_from_the_tracking_store(
    env: str, mlflow_models: MlflowModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = str(mlflow_models.logged_dir)
    result = runner.invoke(app, ["models", "import-mlflow", logged, "--name", "iris"])
    assert result.exit_code == 0, result.output
    assert f"names run {mlflow_models.run_id}: give --tracking-uri" in result.stderr
    assert shown("iris")["metrics"] == {}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_models.tracking_uri)
    invoke("models", "import-mlflow", logged, "--name", "iris")
    assert shown("iris", 2)["metrics"] == {"accuracy": 0.91, "f1": 0.88}
    assert shown("iris", 2)["hyperparameters"] == {"C": "1.0", "solver": "lbfgs"}


def test_runs_uris_need_a_tracking_store_and_an_existing_run(
    env: str, mlflow_models: MlflowModels
) -> None:
    line = refused(mlflow_models.run_model_uri, "--name", "iris")
    assert "needs a tracking store: --tracking-uri or MLFLOW_TRACKING_URI" in line
    missing = "runs:/0123456789abcdef0123456789abcdef/model"
    line = refused(missing, "--name", "iris", "--tracking-uri", mlflow_models.tracking_uri)
    assert "could not download runs:/0123456789abcdef0123456789abcdef/model" in line


@pytest.mark.parametrize("payload", [Payload, CallsAnything])
def test_a_hostile_pickle_is_refused_by_name_without_running(
    env: str, mlflow_models: MlflowModels, tmp_path: Path, payload: type
) -> None:
    marker = tmp_path / "marker"
    hostile = with_pickle(mlflow_models.cloudpickle_dir, tmp_path / "hostile", payload(marker))
    line = refused(str(hostile), "--name", "evil")
    named = "posix.system" if payload is Payload else "builtins.exec"
    assert f"model.pkl refers to types predictd does not trust: {named}" in line
    assert not marker.exists()
    store = tmp_path / "artifacts"
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*.skops"))


def test_a_custom_class_is_refused_unless_trusted(
    env: str, mlflow_models: MlflowModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = refused(str(mlflow_models.custom_dir), "--name", "custom")
    assert f"does not trust: {DOUBLER}" in line
    assert "PREDICTD_TRUSTED_TYPES" in line

    monkeypatch.setenv("PREDICTD_TRUSTED_TYPES", json.dumps([DOUBLER]))
    invoke("models", "import-mlflow", str(mlflow_models.custom_dir), "--name", "custom")
    assert shown("custom")["feature_names"] == list(FEATURES)


@pytest.mark.parametrize(
    "name", ["../outside.pkl", "/etc/passwd", "sub/../../model.pkl", "..\\model.pkl"]
)
def test_a_model_file_outside_the_directory_is_refused(
    env: str, mlflow_models: MlflowModels, tmp_path: Path, name: str
) -> None:
    shutil.copyfile(mlflow_models.cloudpickle_dir / "model.pkl", tmp_path / "outside.pkl")
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model", pickled_model=name)
    line = refused(str(model), "--name", "iris")
    assert "must be relative, inside the model directory" in line


def test_a_linked_model_file_is_refused(
    env: str, mlflow_models: MlflowModels, tmp_path: Path
) -> None:
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model")
    (model / "model.pkl").unlink()
    (model / "model.pkl").symlink_to(mlflow_models.cloudpickle_dir / "model.pkl")
    assert "is a symbolic link" in refused(str(model), "--name", "iris")


def test_other_flavors_and_unreadable_directories_are_refused(
    env: str, mlflow_models: MlflowModels, tmp_path: Path
) -> None:
    model = copy_model(mlflow_models.cloudpickle_dir, tmp_path / "model")
    (model / "MLmodel").write_text(
        "flavors:\n  python_function: {loader_module: mypkg.loader}\n  pytorch: {}\n"
    )
    line = refused(str(model), "--name", "torch")
    assert "has the flavors python_function, pytorch; predictd imports MLflow's sklearn" in line
    assert "not a directory with an MLmodel file" not in line
    assert "is neither an MLflow model directory" in refused(
        str(tmp_path / "nowhere"), "--name", "x"
    )


def test_an_archive_of_a_model_directory_is_imported(
    env: str, mlflow_models: MlflowModels, tmp_path: Path
) -> None:
    archive = shutil.make_archive(
        str(tmp_path / "model"), "gztar", mlflow_models.cloudpickle_dir.parent, "cloudpickle"
    )
    assert "registered iris v1 (none) from MLflow (cloudpickle" in invoke(
        "models", "import-mlflow", archive, "--name", "iris"
    )
    assert shown("iris")["feature_names"] == list(FEATURES)


def test_a_file_system_error_is_named_as_one_not_as_the_database(
    mlflow_models: MlflowModels, tmp_path: Path
) -> None:
    archive = shutil.make_archive(
        str(tmp_path / "model"), "gztar", mlflow_models.cloudpickle_dir.parent, "cloudpickle"
    )
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ArtifactError, match=f"could not read {archive} .*a-file"):
        prepare_import(
            archive, tmp_path / "a-file" / "work", InferenceSettings(), tracking_uri=None,
            max_bytes=2**20,
        )  # fmt: skip


@pytest.mark.parametrize("which", ["run", "logged"])
def test_a_store_directory_over_the_size_limit_is_refused_before_download(
    env: str, mlflow_models: MlflowModels, tmp_path: Path, which: str
) -> None:
    """The store's listing is summed before a byte is fetched, so nothing is downloaded; a
    limit the directory fits in downloads it."""
    uri = mlflow_models.run_model_uri if which == "run" else mlflow_models.logged_model_uri
    dst = tmp_path / "download"
    with pytest.raises(ArtifactError, match="holds more than 100 bytes; refused"):
        download(uri, mlflow_models.tracking_uri, dst, max_bytes=100)
    assert [p for p in dst.rglob("*") if p.is_file()] == []
    root = download(uri, mlflow_models.tracking_uri, dst, max_bytes=10 * 1024 * 1024)
    assert (root / "MLmodel").is_file()
